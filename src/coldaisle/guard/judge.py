"""A hang verdict, judged: dump every rank while it is stuck, name the straggler, tell a slow checkpoint from a hang.

Any watch may say "no progress" (heartbeats, the GPU spin signature, unchanging stacks). Before the job is
stopped, the judge asks each rank's Flight Recorder for its collectives, dumps every process, places each
rank (in a collective, in I/O, elsewhere) and names the rank the others wait for. Ranks in I/O with nobody
stuck elsewhere are a slow checkpoint or NFS, not a hang: the verdict waits (looking again every quarter of
the hang timeout, at least 5 s) up to `io_timeout_s`, then is given as an I/O stall.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from coldaisle.guard import flight
from coldaisle.guard.ranks import analyse, rank_views
from coldaisle.guard.stacks import StackCache
from coldaisle.guard.watch import Look, Verdict, VerdictKind
from coldaisle.telemetry.clock import Clock


class HangJudge:
    """Turns a watch's HANG into a named hang, an I/O stall, or (while the I/O may still finish) nothing yet."""

    def __init__(self, *, hang_timeout_s: float, io_timeout_s: float, stacks: StackCache, clock: Clock,
                 say: Callable[[str], None], flight_dir: Callable[[], Path | None] = lambda: None) -> None:
        self.hang_timeout_s, self.io_timeout_s = hang_timeout_s, io_timeout_s
        self.stacks, self.clock, self.say, self.flight_dir = stacks, clock, say, flight_dir
        self._io_since: float | None = None
        self._next_look = 0.0

    def progressing(self) -> None:
        """No watch sees a hang: an I/O wait, if there was one, is over."""
        self._io_since, self._next_look = None, 0.0

    def judge(self, verdict: Verdict, job: Look) -> Verdict | None:
        """The verdict to act on now, or None while a rank's I/O may still finish."""
        if job.now < self._next_look:
            return None
        t0 = self.clock.monotonic()
        where = self.flight_dir()
        dumps = flight.request_dumps(where) if where else {}
        traces = flight.behind([t for name, data in dumps.items() if (t := flight.read_trace(name, data)) is not None])
        members = job.members()
        analysis = analyse(rank_views(members, self.stacks.dump(p.pid for p in members), job.heartbeats))
        now = self.clock.monotonic()
        evidence = {**verdict.evidence, **analysis.evidence(), **traces, "analysis_s": round(now - t0, 3)}
        if not analysis.io_stall:
            self._io_since = None
            reason = f"{verdict.reason}; {analysis.summary()}"
            if traces.get("flight_recorder_behind"):
                reason += f"; Flight Recorder: rank(s) {', '.join(traces['flight_recorder_behind'])} behind on " \
                          "collectives"
            return Verdict(VerdictKind.HANG, reason, evidence)
        if self._io_since is None:
            self._io_since = now
            self.say(f"no progress, but not a collective hang: {analysis.summary()}; waiting up to "
                     f"{self.io_timeout_s:g} s for the I/O to finish")
        if now - self._io_since < self.io_timeout_s:
            self._next_look = now + max(5.0, self.hang_timeout_s / 4)
            return None
        return Verdict(VerdictKind.IO_STALL, f"stalled in I/O for {now - self._io_since:.0f} s (not a collective "
                                             f"hang): {analysis.summary()}", evidence)
