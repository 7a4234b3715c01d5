"""The verdicts `coldaisle run` acts on, their exit codes, the `Watch` protocol, and the two basic watches.

Every watch has one method, `look(job) -> Verdict | None`, over one `Look` at the job (the moment, its
heartbeats, its processes read once on first use); the supervisor is a loop over its watches. The heartbeat
and host-memory watches here are pure over what they are fed, so thresholds are tested without processes.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Protocol

from coldaisle.guard.heartbeat import HeartbeatSnapshot
from coldaisle.guard.procs import total_rss_bytes
from coldaisle.guard.rhythm import RankActivity, Rhythm
from coldaisle.telemetry.procfs import ProcessInfo


class ExitCode(IntEnum):
    """What `coldaisle run` exits with when it, not the job, decided the ending (docs/run.md)."""

    OK = 0
    HANG = 70
    RUNAWAY_MEMORY = 71
    THERMAL = 72  # a policy rule with `verdict: thermal` ordered the job stopped
    JOB_FAILED = 73  # the job died of a signal nobody here sent (segfault, the kernel's OOM killer)
    DOES_NOT_FIT = 74  # refused before starting: the job's plan does not fit (coldaisle plan)
    IO_STALL = 75  # no progress for --io-timeout while a rank sat in I/O (D state, a checkpoint write)
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127


class VerdictKind(StrEnum):
    """Why a run ended badly."""

    HANG = "hang"
    RUNAWAY_MEMORY = "runaway_memory"
    THERMAL = "thermal"
    JOB_FAILED = "job_failed"
    IO_STALL = "io_stall"
    STRAGGLER = "straggler"  # the job ran to its end with a rank named slow (the exit code stays the job's)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision and the numbers that led to it: what the bundle's verdict.json and summary.md say."""

    kind: VerdictKind
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


class Look:
    """One look at the job, shared by every watch: the moment, its heartbeats, its processes (read on first use)."""

    def __init__(self, now: float, wall: float, heartbeats: HeartbeatSnapshot,
                 members: Callable[[], list[ProcessInfo]]) -> None:
        self.now, self.wall, self.heartbeats = now, wall, heartbeats
        self._read_members, self._members = members, None

    def members(self) -> list[ProcessInfo]:
        """Every live process of the job (a /proc scan, done once per look)."""
        if self._members is None:
            self._members = self._read_members()
        return self._members

    @property
    def pids(self) -> set[int]:
        """The job's process ids."""
        return {p.pid for p in self.members()}

    @property
    def progress_age_s(self) -> float:
        """Seconds since the freshest rank's last progress (NaN: no rank reports)."""
        return min((r.age_s for r in self.heartbeats.ranks), default=math.nan)


class Watch(Protocol):
    """Something that looks at the job every tick and may decide how its run ends."""

    def look(self, job: Look) -> Verdict | None:
        """A verdict, or None to let the job go on."""
        ...


class HangWatch:
    """Hang: ranks have reported, and none progressed for the job's learned rhythm or, at the latest, `timeout_s`.

    With a `Rhythm`, silence longer than its threshold (a few of the job's own steps, never under its floor)
    is a suspected hang: the judge looks at what the ranks are doing before anything is stopped. While a rank
    declares a phase (`coldaisle.phase("checkpoint")`), only `timeout_s` counts. A job that never reports is
    left to the other watches; ranks that reported once and went silent count with their last report's age.
    """

    def __init__(self, timeout_s: float, rhythm: Rhythm | None = None, activity: RankActivity | None = None) -> None:
        self.timeout_s, self.rhythm, self.activity = timeout_s, rhythm, activity

    def look(self, job: Look) -> Verdict | None:
        """Learn from this look, then the heartbeat verdict for it."""
        if self.rhythm is not None:
            self.rhythm.observe(job.now, job.heartbeats)
        if self.activity is not None:
            self.activity.observe(job.now, job.heartbeats)
        return self.check(job.heartbeats)

    def check(self, snapshot: HeartbeatSnapshot) -> Verdict | None:
        """A hang verdict when the freshest rank's last progress is older than the threshold or the timeout."""
        if not snapshot.ranks:
            return None
        freshest = min(r.age_s for r in snapshot.ranks)
        phases = {str(r.rank): [r.phase, round(r.phase_age_s, 1)] for r in snapshot.ranks if r.phase}
        learned = self.rhythm.threshold_s() if self.rhythm is not None and not phases else None
        adaptive = learned is not None and learned < self.timeout_s
        limit = learned if adaptive and learned is not None else self.timeout_s
        if freshest < limit:
            return None
        ranks = {str(r.rank if r.rank >= 0 else r.pid): {"step": r.step, "age_s": round(r.age_s, 3), "pid": r.pid}
                 for r in snapshot.ranks}
        evidence: dict[str, Any] = {"signal": "heartbeat", "adaptive": adaptive, "timeout_s": self.timeout_s,
                                    "freshest_age_s": round(freshest, 3), "ranks": ranks}
        if phases:
            evidence["phases"] = phases
        if adaptive and self.rhythm is not None:
            evidence |= {"threshold_s": round(limit, 3), **self.rhythm.evidence()}
            beat = self.rhythm.median_s() if self.rhythm.learned else self.rhythm.boot_s or math.nan
            why = (f"no rank made progress for {freshest:.1f} s, {freshest / beat:.0f}x its usual step of {beat:.2f} s "
                   f"(suspect after {limit:.1f} s; timeout {self.timeout_s:g} s)")
        else:
            why = f"no rank made progress for {freshest:.1f} s (timeout {self.timeout_s:g} s)"
            if phases:
                why += "; in phase " + ", ".join(sorted({p for p, _ in phases.values()}))
        return Verdict(VerdictKind.HANG, why, evidence)


class MemoryWatch:
    """Runaway memory: project the job's memory growth linearly and stop it while there is time to checkpoint.

    The verdict comes when the projected time to `limit_bytes` is shorter than `lead_s` (the grace period the
    job gets after SIGTERM, plus a margin), or when the limit is already reached.
    """

    def __init__(self, limit_bytes: float, lead_s: float, window_s: float = 10.0, min_samples: int = 3) -> None:
        self.limit_bytes, self.lead_s = limit_bytes, lead_s
        self.window_s, self.min_samples = window_s, min_samples
        self._samples: deque[tuple[float, float]] = deque()

    def look(self, job: Look) -> Verdict | None:
        """The job's host memory now: every process's RSS."""
        return self.add(job.now, total_rss_bytes(job.members()))

    def add(self, t: float, used_bytes: float) -> Verdict | None:
        """Feed one sample (monotonic seconds, bytes); a verdict when exhaustion is nearer than `lead_s`."""
        self._samples.append((t, used_bytes))
        while self._samples and t - self._samples[0][0] > self.window_s:
            self._samples.popleft()
        slope = self.slope()
        eta_s = (self.limit_bytes - used_bytes) / slope if slope > 0 else math.inf
        if used_bytes < self.limit_bytes and (len(self._samples) < self.min_samples or eta_s > self.lead_s):
            return None
        return Verdict(VerdictKind.RUNAWAY_MEMORY,
                       f"memory {used_bytes / 2**20:.0f} MiB growing {slope / 2**20:.1f} MiB/s reaches the limit "
                       f"{self.limit_bytes / 2**20:.0f} MiB in {max(eta_s, 0):.1f} s",
                       {"used_bytes": int(used_bytes), "limit_bytes": int(self.limit_bytes),
                        "growth_bytes_per_s": round(slope, 1), "time_to_limit_s": round(max(eta_s, 0), 2),
                        "lead_s": self.lead_s, "source": "host RSS of every process of the job"})

    def slope(self) -> float:
        """Least-squares growth in bytes per second over the window (0 with fewer than two samples)."""
        n = len(self._samples)
        if n < 2:
            return 0.0
        mt = sum(t for t, _ in self._samples) / n
        mu = sum(u for _, u in self._samples) / n
        var = sum((t - mt) ** 2 for t, _ in self._samples)
        return sum((t - mt) * (u - mu) for t, u in self._samples) / var if var > 0 else 0.0
