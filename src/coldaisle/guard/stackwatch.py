"""Hang from stacks alone: for a job that neither calls `coldaisle.progress()` nor runs on a watched GPU.

Every `timeout/5` seconds (at least 2 s) each rank's process is dumped; when, across the whole timeout and
at least three dumps, some rank sits in a collective and no rank's Python stack has changed by a single
frame or line, the job is not moving. A healthy loop moves between its forward pass, data loading and
its collectives, so its stacks do not repeat exactly sample after sample.
"""

from __future__ import annotations

from coldaisle.guard.ranks import RankView
from coldaisle.guard.stackscan import Activity
from coldaisle.guard.watch import Kind, Verdict


class StackWatch:
    """Feeds on periodic rank placements; a hang verdict when they stay identical for the timeout."""

    def __init__(self, timeout_s: float, samples: int = 5, min_samples: int = 3) -> None:
        self.timeout_s, self.min_samples = timeout_s, min_samples
        self.every_s = max(timeout_s / samples, 2.0)
        self._next = 0.0
        self._sig: tuple[object, ...] | None = None
        self._since = 0.0
        self._n = 0

    def due(self, now: float) -> bool:
        """Whether a new round of dumps is wanted now."""
        return now >= self._next

    def add(self, now: float, views: list[RankView]) -> Verdict | None:
        """One round of placements (one per rank)."""
        self._next = now + self.every_s
        stuck = any(v.activity == Activity.COLLECTIVE for v in views)
        sig = tuple((v.rank, _python_frames(v)) for v in views)
        if not stuck or sig != self._sig:
            self._sig, self._since, self._n = (sig if stuck else None), now, (1 if stuck else 0)
            return None
        self._n += 1
        if now - self._since < self.timeout_s or self._n < self.min_samples:
            return None
        return Verdict(Kind.HANG, f"no rank's stack moved for {now - self._since:.1f} s ({self._n} dumps, timeout "
                                  f"{self.timeout_s:g} s) while rank(s) waited in a collective",
                       {"signal": "stacks", "unchanged_s": round(now - self._since, 2), "dumps": self._n,
                        "timeout_s": self.timeout_s})


def _python_frames(v: RankView) -> tuple[str, ...]:
    """The main thread's Python frames: native addresses inside a blocked call are not part of the identity."""
    lead = v.stack.main or (v.stack.threads[0] if v.stack.threads else None)
    if lead is None:
        return ()
    return tuple(str(f) for f in lead.frames if f.python)
