"""Hang from stacks alone: for a job that neither calls `coldaisle.progress()` nor runs on a watched GPU.

Every `timeout/5` seconds (at least 2 s) each rank's process is dumped; when, across the whole timeout and
at least three dumps, some rank sits in a collective and no rank's Python stack has changed by a single
frame or line, the job is not moving. A healthy loop moves between its forward pass, data loading and
its collectives, so its stacks do not repeat exactly sample after sample.
"""

from __future__ import annotations

from coldaisle.guard.ranks import RankView, rank_views
from coldaisle.guard.stacks import StackCache
from coldaisle.guard.stackscan import Activity
from coldaisle.guard.watch import Look, Verdict, VerdictKind

MODES = ("auto", "on", "off")


class StackWatch:
    """Feeds on periodic rank placements; a hang verdict when they stay identical for the timeout.

    `mode`: "on", "off", or "auto": only while no rank reports progress and no GPU is watched (the other
    hang signals are cheaper than attaching py-spy to every rank)."""

    def __init__(self, timeout_s: float, samples: int = 5, min_samples: int = 3, *, mode: str = "on",
                 stacks: StackCache | None = None, gpu_watched: bool = False) -> None:
        self.mode, self.stacks, self.gpu_watched = mode, stacks or StackCache(), gpu_watched
        self.timeout_s, self.min_samples = timeout_s, min_samples
        self.every_s = max(timeout_s / samples, 2.0)
        self._next = 0.0
        self._sig: tuple[object, ...] | None = None
        self._since = 0.0
        self._n = 0

    def due(self, now: float) -> bool:
        """Whether a new round of dumps is wanted now."""
        return now >= self._next

    def on(self, job: Look) -> bool:
        """Whether this watch looks at all, given its mode and the other signals this job offers."""
        if self.mode == "auto":
            return not self.gpu_watched and not job.heartbeats.ranks
        return self.mode == "on"

    def look(self, job: Look) -> Verdict | None:
        """Dump every rank when due and compare with the dumps before."""
        if not self.on(job) or not self.due(job.now):
            return None
        members = job.members()
        stacks = self.stacks.dump(p.pid for p in members)
        return self.add(job.now, rank_views(members, stacks, job.heartbeats))

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
        return Verdict(VerdictKind.HANG, f"no rank's stack moved for {now - self._since:.1f} s ({self._n} dumps, "
                                         f"timeout {self.timeout_s:g} s) while rank(s) waited in a collective",
                       {"signal": "stacks", "unchanged_s": round(now - self._since, 2), "dumps": self._n,
                        "timeout_s": self.timeout_s})


def _python_frames(v: RankView) -> tuple[str, ...]:
    """The main thread's Python frames: native addresses inside a blocked call are not part of the identity."""
    lead = v.stack.main or (v.stack.threads[0] if v.stack.threads else None)
    if lead is None:
        return ()
    return tuple(str(f) for f in lead.frames if f.python)
