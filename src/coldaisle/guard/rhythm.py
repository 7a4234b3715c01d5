"""The job's own rhythm, learned while it runs: silence is judged against the job's step time, not a fixed timeout.

Every look reads each rank's heartbeat. The moment of the freshest progress moves forward at every step; the
gap between two such moments, divided by the steps it covers, is one beat. A gap far longer than the job's usual
beat (`pause_ratio` times the median), or one during which a rank declared a phase (`coldaisle.phase(...)`),
is a pause (a checkpoint, an evaluation), kept apart so one checkpoint does not teach the job that silence is
normal. Once `min_beats` beats are known, silence longer than `factor` times the 90th percentile beat (never
less than `floor_s`) makes a hang suspect; the judge (guard.judge) then looks at what the ranks are doing
before anything is stopped, and `--hang-timeout` stays the upper bound.

`RankActivity` keeps each rank's CPU time and its main thread's read/write bytes from /proc over the last
minute: a rank that computes or writes is alive whatever its heartbeat says, and CPU time per step is what the
straggler score (guard.straggler) compares between ranks.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from coldaisle.guard.heartbeat import HeartbeatSnapshot
from coldaisle.telemetry.procfs import cpu_seconds, io_bytes


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; NaN for none."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Rhythm:
    """The job's beat, learned from the freshest rank's progress; `threshold_s()` says when silence is suspect."""

    floor_s: float = 8.0  # never suspect a hang sooner than this after the last progress
    factor: float = 1.5  # times the 90th percentile beat
    min_beats: int = 3  # beats needed before the rhythm is trusted (until then: only the upper bound)
    pause_ratio: float = 4.0  # a gap this many times the median beat is a pause, not a beat
    keep: int = 512

    def __post_init__(self) -> None:
        self.beats: deque[float] = deque(maxlen=self.keep)
        self.pauses: deque[tuple[float, str]] = deque(maxlen=32)  # (seconds, what it was), newest last
        self._t: float | None = None  # monotonic time of the freshest progress seen
        self._step = 0
        self._phase = ""  # a phase declared since the last beat
        self._sorted: list[float] | None = None
        self.boot_s: float | None = None  # per-step time from the records alone (first report to last), until learned

    @property
    def learned(self) -> bool:
        """Enough beats to judge silence by."""
        return len(self.beats) >= self.min_beats

    def observe(self, now: float, snapshot: HeartbeatSnapshot) -> None:
        """One look at the heartbeats (`now`: the reader's monotonic clock)."""
        ranks = snapshot.ranks
        if not ranks:
            return
        t = now - min(r.age_s for r in ranks)
        step = max(r.step for r in ranks)
        lead = max(ranks, key=lambda r: r.step)
        if lead.step >= self.min_beats and lead.started_age_s > lead.age_s:  # steps seen faster than our looks
            self.boot_s = (lead.started_age_s - lead.age_s) / lead.step
        in_phase = [r for r in ranks if r.phase]
        phase = in_phase[0].phase if in_phase else ""
        began = now - max(r.phase_age_s for r in in_phase) if in_phase else math.inf
        if self._t is None or step < self._step:  # the first report, or a restarted job counting again
            self._t, self._step, self._phase = t, step, phase
            return
        if t <= self._t + 1e-6:
            self._phase = self._phase or phase
            return
        steps = max(1, step - self._step)
        gap = t - self._t
        per = gap / steps
        why = self._phase or (phase if began < t else "")  # a phase begun after this progress is the next gap's
        if not why and self.learned and per > self.pause_ratio * self.median_s():
            why = "a long step"
        if why:
            self.pauses.append((round(gap, 3), why))
        else:
            self.beats.extend([per] * min(steps, 32))
            self._sorted = None
        self._t, self._step, self._phase = t, step, phase

    def median_s(self) -> float:
        """The median beat (NaN until there is one)."""
        return self._quantile(0.5)

    def p90_s(self) -> float:
        """The 90th percentile beat."""
        return self._quantile(0.9)

    def threshold_s(self) -> float | None:
        """Silence after which a hang is suspect, or None while nothing is known of the job's rhythm. Before
        `min_beats` beats are seen, the records' own average (first report to last, over their steps) stands in,
        doubled: a job that hangs within its first few steps is still caught in seconds."""
        if not self.learned:
            return None if self.boot_s is None else max(self.floor_s, 2 * self.factor * self.boot_s)
        return max(self.floor_s, self.factor * self.p90_s())

    def evidence(self) -> dict[str, float | int | list[list[float | str]] | None]:
        """What was learned, for the verdict."""
        return {"beats": len(self.beats), "step_from_records_s": None if self.boot_s is None else round(self.boot_s, 4),
                "step_median_s": round(self.median_s(), 3),
                "step_p90_s": round(self.p90_s(), 3), "pauses_seen": [[s, w] for s, w in list(self.pauses)[-5:]]}

    def _quantile(self, q: float) -> float:
        if self._sorted is None:
            self._sorted = sorted(self.beats)
        return quantile(self._sorted, q)


@dataclass(frozen=True, slots=True)
class RankSample:
    """One reading of a rank's process: when, its CPU seconds, its main thread's read+write bytes, its step."""

    t: float
    cpu_s: float
    io_bytes: float
    step: int


class RankActivity:
    """Each rank's CPU time and main-thread I/O over the last `keep_s`, read from /proc at every look."""

    def __init__(self, keep_s: float = 120.0, *, cpu: Callable[[int], float | None] = cpu_seconds,
                 io: Callable[[int], int | None] = lambda pid: io_bytes(pid, main_thread=True)) -> None:
        self.keep_s, self._cpu, self._io = keep_s, cpu, io
        self.samples: dict[int, deque[RankSample]] = {}  # rank -> samples, oldest first
        self.pids: dict[int, int] = {}  # rank -> its process

    def observe(self, now: float, snapshot: HeartbeatSnapshot) -> None:
        """Read every reporting rank's process once."""
        seen = set()
        for r in snapshot.ranks:
            key = r.rank if r.rank >= 0 else -r.pid
            seen.add(key)
            if self.pids.get(key) != r.pid:  # a new process for this rank (a restart): start over
                self.pids[key], self.samples[key] = r.pid, deque()
            cpu, io = self._cpu(r.pid), self._io(r.pid)
            if cpu is None:
                continue
            q = self.samples[key]
            q.append(RankSample(now, cpu, math.nan if io is None else float(io), r.step))
            while q and now - q[0].t > self.keep_s:
                q.popleft()
        for gone in set(self.samples) - seen:
            del self.samples[gone], self.pids[gone]

    def window(self, rank: int, seconds: float) -> tuple[RankSample, RankSample] | None:
        """The oldest sample within `seconds` of the newest, and the newest (None without two samples)."""
        q = self.samples.get(rank)
        if not q or len(q) < 2:
            return None
        last = q[-1]
        first = next((s for s in q if last.t - s.t <= seconds), q[-2])
        if first is last:
            first = q[-2]
        return first, last

    def cpu_share(self, rank: int, seconds: float = 3.0) -> float:
        """CPU cores the rank's process used over the last `seconds` (NaN: unknown)."""
        w = self.window(rank, seconds)
        if w is None or w[1].t <= w[0].t:
            return math.nan
        return (w[1].cpu_s - w[0].cpu_s) / (w[1].t - w[0].t)

    def io_rate(self, rank: int, seconds: float = 3.0) -> float:
        """Bytes per second the rank's main thread read or wrote over the last `seconds` (NaN: unknown)."""
        w = self.window(rank, seconds)
        if w is None or w[1].t <= w[0].t:
            return math.nan
        return (w[1].io_bytes - w[0].io_bytes) / (w[1].t - w[0].t)

    def ranks(self) -> list[int]:
        """The ranks being followed."""
        return sorted(self.samples)
