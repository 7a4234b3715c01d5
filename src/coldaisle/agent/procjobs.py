"""Job attribution on a real node: each GPU process's Slurm job (or pod) from /proc, as the engine's Jobs."""

from __future__ import annotations

import numpy as np

from coldaisle.agent.jobs import JobResolver
from coldaisle.policy.context import Jobs
from coldaisle.telemetry.frame import Frame


class ProcJobs:
    """PID -> cgroup -> Slurm job id or pod uid; a device belongs to the job of its first process."""

    def __init__(self, proc: str = "/proc") -> None:
        self.resolver = JobResolver(proc)

    def jobs(self, frame: Frame) -> Jobs:
        """Attribution for this Frame (cached per pid and start time by the resolver)."""
        pids = [int(p) for p in frame.processes.pid]
        refs = self.resolver.resolve_all(pids)
        labels = [(_label(refs.get(p))) for p in pids]
        names = sorted({x for x in labels if x})
        index = {n: i for i, n in enumerate(names)}
        of_process = np.array([index.get(x, -1) if x else -1 for x in labels], dtype=np.intp)
        of_device = np.full(len(frame), -1, dtype=np.intp)
        for row in range(len(pids) - 1, -1, -1):  # first process on a device wins
            of_device[int(frame.processes.device[row])] = of_process[row]
        return Jobs(names, of_device, of_process, {})


def _label(ref: object) -> str | None:
    if ref is None:
        return None
    job = getattr(ref, "slurm_job", None)
    pod = getattr(ref, "pod_uid", None)
    return f"slurm:{job}" if job else (f"pod:{pod}" if pod else None)
