"""A hang verdict, judged: dump every rank while it is stuck, name the straggler, tell a pause from a hang.

Any watch may say "no progress" (heartbeats, the GPU spin signature, unchanging stacks). Before the job is
stopped, the judge dumps every process, places each rank (in a collective, in I/O, loading a batch, evaluating,
elsewhere) and names the rank the others wait for.

A suspicion from the job's learned rhythm (the heartbeat watch's `adaptive` verdict) is a known pause, not a
hang, while a rank is visibly busy: reading or writing (a checkpoint), waiting on its data loader, inside an
evaluation pass, or computing outside any collective. The judge then looks again every `recheck_s` and says so
once; the heartbeat watch's `--hang-timeout` stays the upper bound. Ranks in I/O with nobody stuck elsewhere are
a slow checkpoint or NFS whichever watch spoke: the verdict waits up to `io_timeout_s`, then is an I/O stall.
In a job on several nodes the hang is agreed with the other nodes' supervisors first (guard.peers): a node
still making progress holds it back, and the straggler is named from every node's ranks together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from coldaisle.guard import flight
from coldaisle.guard.peers import Peers
from coldaisle.guard.ranks import Placement, RankView, analyse, rank_views
from coldaisle.guard.rhythm import RankActivity
from coldaisle.guard.stacks import StackCache
from coldaisle.guard.stackscan import Activity
from coldaisle.guard.watch import Look, Verdict, VerdictKind
from coldaisle.telemetry.clock import Clock

BUSY_CORES = 0.3  # a rank using this much CPU outside a collective is computing
IO_BYTES_PER_S = 64 * 1024  # a rank's main thread reading or writing this fast is doing I/O


def known_pause(views: Sequence[RankView], activity: RankActivity | None) -> str | None:
    """Why the silence is a pause rather than a hang (None: nothing says so). Ranks in a collective never count."""
    free = [v for v in views if v.activity not in (Activity.COLLECTIVE, Activity.UNKNOWN)]
    if activity is not None:
        io = [(v, rate) for v in free if (rate := activity.io_rate(v.rank)) >= IO_BYTES_PER_S]
        if io:
            return "; ".join(f"rank {v.rank} reading/writing {rate / 2**20:.1f} MiB/s ({v.where()})" for v, rate in io)
    for kind, what in ((Activity.LOADING, "waiting for its data loader"), (Activity.EVALUATION, "evaluating")):
        hits = [v for v in free if v.activity == kind]
        if hits:
            return "; ".join(f"rank {v.rank} {what} ({v.where()})" for v in hits)
    if activity is not None:
        busy = [(v, cores) for v in free if (cores := activity.cpu_share(v.rank)) >= BUSY_CORES]
        if busy:
            return "; ".join(f"rank {v.rank} computing ({c:.1f} cores) in {v.where()}" for v, c in busy)
    # on the CPU when dumped, too soon for its CPU time to show it (a batch that just came after a loader stall)
    running = [v for v in free if v.stack.main is not None and v.stack.main.status == "active"]
    if running:
        return "; ".join(f"rank {v.rank} computing (on a CPU when dumped) in {v.where()}" for v in running)
    return None


class HangJudge:
    """Turns a watch's HANG into a named hang, an I/O stall, or (while a pause may still end) nothing yet."""

    def __init__(self, *, hang_timeout_s: float, io_timeout_s: float, stacks: StackCache, clock: Clock,
                 say: Callable[[str], None], flight_dir: Callable[[], Path | None] = lambda: None,
                 activity: RankActivity | None = None, recheck_s: float = 5.0,
                 peers: Callable[[], Peers | None] = lambda: None,
                 place: Callable[[RankView], Placement] = lambda v: v.placement()) -> None:
        self.hang_timeout_s, self.io_timeout_s = hang_timeout_s, io_timeout_s
        self.stacks, self.clock, self.say, self.flight_dir = stacks, clock, say, flight_dir
        self.activity, self.recheck_s, self.peers, self.place = activity, recheck_s, peers, place
        self.pauses: list[dict[str, Any]] = []  # the pauses recognised this run (for the bundle)
        self._io_since: float | None = None
        self._paused: str | None = None
        self._next_look = 0.0

    def notes(self) -> dict[str, Any]:
        """The pauses told apart from hangs this run (the last five), for the bundle."""
        return {"pauses": self.pauses[-5:]} if self.pauses else {}

    def progressing(self) -> None:
        """No watch sees a hang: an I/O wait or a pause, if there was one, is over."""
        self._io_since, self._paused, self._next_look = None, None, 0.0

    def judge(self, verdict: Verdict, job: Look) -> Verdict | None:
        """The verdict to act on now, or None while a pause or a rank's I/O may still finish."""
        if job.now < self._next_look:
            return None
        t0 = self.clock.monotonic()
        members = job.members()
        views = rank_views(members, self.stacks.dump(p.pid for p in members), job.heartbeats)
        if verdict.evidence.get("adaptive"):
            pause = known_pause(views, self.activity)
            if pause is not None:
                return self._pause(verdict, pause)
        where = self.flight_dir()
        dumps = flight.request_dumps(where) if where else {}
        traces = flight.behind([t for name, data in dumps.items() if (t := flight.read_trace(name, data)) is not None])
        analysis = analyse(views)
        now = self.clock.monotonic()
        evidence = {**verdict.evidence, **analysis.evidence(), **traces, "analysis_s": round(now - t0, 3)}
        if self.pauses:
            evidence["pauses"] = self.pauses[-5:]
        if not analysis.io_stall:
            self._io_since = None
            peers = self.peers()
            if peers is not None:
                if verdict.evidence.get("adaptive") and (going := peers.others_progressing()):
                    return self._pause(verdict, f"node(s) {', '.join(map(str, going))} of the job still progress",
                                       recheck_s=1.0)
                agreed = peers.agree([self.place(v) for v in views])
                analysis = agreed.analysis
                evidence |= {**agreed.evidence(), "node": peers.job.node,
                             "straggler_here": peers.job.node in agreed.straggler_nodes,
                             "analysis_s": round(self.clock.monotonic() - t0, 3)}
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

    def _pause(self, verdict: Verdict, pause: str, recheck_s: float | None = None) -> None:
        """A suspicion the ranks' activity explains: say it once per pause, look again soon."""
        every = recheck_s or self.recheck_s
        self._next_look = self.clock.monotonic() + every
        age = float(verdict.evidence.get("freshest_age_s", math.nan))
        if self._paused is None:
            self.say(f"no progress for {age:.0f} s, but not a hang: {pause}; looking again every {every:g} s, up "
                     f"to --hang-timeout ({self.hang_timeout_s:g} s)")
            self.pauses.append({"after_s": round(age, 1), "why": pause})
        self._paused = pause
