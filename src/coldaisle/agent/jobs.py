"""Attribute a GPU process to its job: PID -> cgroup -> Slurm job or Kubernetes pod.

The cgroup path names the job in both schedulers (Slurm's cgroup plugin, v1 and v2; the kubelet's cgroupfs
and systemd drivers); `SLURM_JOB_ID` in the process environment is the fallback for a Slurm without the
cgroup plugin. Parsing is pure (`parse_cgroup` here; environ and stat in `telemetry.procfs`); `JobResolver` does
the /proc reads, caches by (pid, start time) so a recycled pid is never given a dead process's job, and forgets
pids that ended.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from coldaisle.telemetry.procfs import parse_environ, starttime

# Slurm cgroup v1: /slurm/uid_1000/job_4242/step_0/task_0 (or slurm_<node>/...); v2:
# /system.slice/slurmstepd.scope/job_4242/step_0/user/task_0.
_SLURM = re.compile(r"/job_(\d+)(?:/|$)")
# kubelet systemd driver: kubepods-burstable-pod<uid with _>.slice; cgroupfs driver: /kubepods/burstable/pod<uid>/.
_POD_SYSTEMD = re.compile(r"kubepods(?:-[a-z]+)?-pod([0-9a-fA-F_]{36})\.slice")
_POD_CGROUPFS = re.compile(r"/kubepods(?:/[a-z]+)?/pod([0-9a-fA-F-]{36})(?:/|$)")


@dataclass(frozen=True, slots=True)
class JobRef:
    """Who a process works for: Slurm job id, Kubernetes pod UID (either may be None) and its cgroup path."""

    slurm_job: str | None
    pod_uid: str | None
    cgroup: str
    heartbeat: str | None = None  # COLDAISLE_HEARTBEAT: where `coldaisle run` reads its ranks' progress

    @property
    def job_label(self) -> str:
        """The `job` label value ("" when the process belongs to no Slurm job)."""
        return self.slurm_job or ""

    @property
    def pod_label(self) -> str:
        """The `pod` label value, the pod UID ("" outside Kubernetes)."""
        return self.pod_uid or ""


NO_JOB = JobRef(None, None, "")


def _cgroup_paths(text: str) -> list[str]:
    """The paths of /proc/PID/cgroup (`hierarchy-id:controllers:path`), the v2 unified one (`0::`) first."""
    paths: list[str] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            paths.insert(0, parts[2])
        elif parts[2] not in paths:
            paths.append(parts[2])
    return paths


def parse_cgroup(text: str) -> JobRef:
    """Slurm job id and pod UID named by the cgroup paths in /proc/PID/cgroup text (v1 or v2)."""
    paths = _cgroup_paths(text)
    job = pod = None
    chosen = paths[0] if paths else ""
    for path in paths:
        if job is None and "slurm" in path and (m := _SLURM.search(path)):
            job, chosen = m.group(1), path
        if pod is None and (m := _POD_SYSTEMD.search(path) or _POD_CGROUPFS.search(path)):
            pod, chosen = m.group(1).replace("_", "-").lower(), path
    return JobRef(job, pod, chosen)


class JobResolver:
    """pid -> JobRef through /proc, cached by (pid, start time); ended pids are evicted."""

    def __init__(self, proc: str | os.PathLike[str] = "/proc") -> None:
        self.proc = Path(proc)
        self._cache: dict[int, tuple[int | None, JobRef]] = {}

    def resolve(self, pid: int) -> JobRef | None:
        """The job of `pid`, or None when the process is gone (its cache entry is dropped)."""
        base = self.proc / str(pid)
        try:
            start = starttime((base / "stat").read_text(errors="replace"))
        except OSError:
            self._cache.pop(pid, None)
            return None
        hit = self._cache.get(pid)
        if hit is not None and hit[0] == start:
            return hit[1]
        ref = self._read(base)
        self._cache[pid] = (start, ref)
        return ref

    def resolve_all(self, pids: Iterable[int]) -> dict[int, JobRef]:
        """Jobs of `pids` (pids that are gone are left out); forgets every cached pid not among them."""
        wanted = {int(p) for p in pids}
        for stale in self._cache.keys() - wanted:
            del self._cache[stale]
        out = {}
        for pid in wanted:
            ref = self.resolve(pid)
            if ref is not None:
                out[pid] = ref
        return out

    def cached_pids(self) -> frozenset[int]:
        """Pids currently cached (for tests and debugging)."""
        return frozenset(self._cache)

    def _read(self, base: Path) -> JobRef:
        try:
            ref = parse_cgroup((base / "cgroup").read_text(errors="replace"))
        except OSError:
            ref = NO_JOB
        try:
            env = parse_environ((base / "environ").read_bytes())
        except OSError:  # gone, or not ours to read (environ needs ptrace access)
            env = {}
        return JobRef(ref.slurm_job or env.get("SLURM_JOB_ID") or None, ref.pod_uid, ref.cgroup,
                      env.get("COLDAISLE_HEARTBEAT") or None)
