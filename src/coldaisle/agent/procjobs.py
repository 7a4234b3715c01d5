"""Job attribution on a real node: each GPU process's Slurm job (or pod) from /proc, as the engine's Jobs.

A job launched by `coldaisle run` also carries its heartbeat directory in its environment; the agent reads
it too, so `job_progress_age_s`, the serving latency percentiles and the ranks' straggler scores (which the
supervisor publishes beside the heartbeats) become rule inputs and metrics.
"""

from __future__ import annotations

import math

import numpy as np

from coldaisle.agent.jobs import JobRef, JobResolver
from coldaisle.guard.heartbeat import HeartbeatReader
from coldaisle.guard.straggler import RankScore, read_scores
from coldaisle.policy.context import Jobs
from coldaisle.telemetry.frame import Frame


class ProcJobs:
    """PID -> cgroup -> Slurm job id or pod uid; a device belongs to the job of its first process."""

    def __init__(self, proc: str = "/proc") -> None:
        self.resolver = JobResolver(proc)
        self._readers: dict[str, HeartbeatReader] = {}
        self.last_refs: dict[int, JobRef] = {}  # pid -> job of the latest Frame, for the exporter's labels
        self.last_ranks: dict[str, list[RankScore]] = {}  # job label -> its ranks' straggler scores

    def jobs(self, frame: Frame) -> Jobs:
        """Attribution for this Frame (cached per pid and start time by the resolver)."""
        pids = [int(p) for p in frame.processes.pid]
        refs = self.last_refs = self.resolver.resolve_all(pids)
        labels = [(_label(refs.get(p))) for p in pids]
        names = sorted({x for x in labels if x})
        index = {n: i for i, n in enumerate(names)}
        of_process = np.array([index.get(x, -1) if x else -1 for x in labels], dtype=np.intp)
        of_device = np.full(len(frame), -1, dtype=np.intp)
        for row in range(len(pids) - 1, -1, -1):  # first process on a device wins
            of_device[int(frame.processes.device[row])] = of_process[row]
        return Jobs(names, of_device, of_process, self._progress(names, pids, refs, labels))

    def _progress(self, names: list[str], pids: list[int], refs: dict[int, JobRef],
                  labels: list[str | None]) -> dict[str, np.ndarray]:
        """Per job: seconds since its freshest rank progressed, and its ranks' worst latency p50/p99 (NaN: none)."""
        dirs: dict[str, set[str]] = {}
        for pid, label in zip(pids, labels, strict=True):
            ref = refs.get(pid)
            if label and ref is not None and ref.heartbeat:
                dirs.setdefault(label, set()).add(ref.heartbeat)
        for stale in self._readers.keys() - set().union(*dirs.values()):
            del self._readers[stale]  # the job ended: forget its reader
        out = {k: np.full(len(names), math.nan) for k in ("job_progress_age_s", "job_latency_p50_s",
                                                          "job_latency_p99_s", "job_straggler_score")}
        self.last_ranks = {}
        for i, name in enumerate(names):
            ranks = [r for d in sorted(dirs.get(name, ())) for r in self._reader(d).read().ranks]
            if ranks:
                out["job_progress_age_s"][i] = min(r.age_s for r in ranks)
                out["job_latency_p50_s"][i] = _worst([r.latency_p50_s for r in ranks])
                out["job_latency_p99_s"][i] = _worst([r.latency_p99_s for r in ranks])
            scores = [s for d in sorted(dirs.get(name, ())) for s in read_scores(d)]
            if scores:
                self.last_ranks[name] = scores
                out["job_straggler_score"][i] = max(s.score for s in scores)
        return out

    def _reader(self, path: str) -> HeartbeatReader:
        if path not in self._readers:
            self._readers[path] = HeartbeatReader(path)
        return self._readers[path]


def _worst(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return max(known) if known else math.nan


def _label(ref: object) -> str | None:
    if ref is None:
        return None
    job = getattr(ref, "slurm_job", None)
    pod = getattr(ref, "pod_uid", None)
    return f"slurm:{job}" if job else (f"pod:{pod}" if pod else None)
