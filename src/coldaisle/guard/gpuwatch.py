"""`coldaisle run`'s view of the job's GPUs through the Backend: the collective-spin signature and device memory.

A rank spinning in a deadlocked NCCL collective keeps its SMs busy (utilisation pegged) while the memory
controller and the links carry nothing: the report's 512 cards at full power doing no work. That holds for
a job that never calls `coldaisle.progress()`, so it is a hang signal on its own. Device memory that grows
toward the card's capacity is projected the same way as host RSS (MemoryWatch) and stops the job before
the allocator spills to host memory.

The job's GPUs are the devices its processes hold (NVML's process list), else those named by
CUDA_VISIBLE_DEVICES (indices or UUIDs), else every GPU of the node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from coldaisle.guard.policywatch import PolicyWatch
from coldaisle.guard.watch import Look, MemoryWatch, Verdict, VerdictKind
from coldaisle.telemetry.backend import Backend
from coldaisle.telemetry.frame import Frame


@dataclass(frozen=True, slots=True)
class SpinSignature:
    """Thresholds of "busy doing nothing"; defaults match the agent's collective-hang rule."""

    util_gpu_min: float = 90.0  # %
    util_memory_max: float = 10.0  # %
    link_bytes_per_s_max: float = 1e9  # NVLink + PCIe, rx + tx


def job_devices(frame: Frame, pids: set[int], env: Mapping[str, str]) -> np.ndarray:
    """Frame positions of the job's GPUs: by its processes, else CUDA_VISIBLE_DEVICES, else all."""
    p = frame.processes
    held = np.unique(p.device[np.isin(p.pid, list(pids))]) if len(p) and pids else np.zeros(0, int)
    if held.size:
        return held.astype(np.intp)
    visible = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        want = [v.strip() for v in visible.split(",") if v.strip()]
        out = [i for i, d in enumerate(frame.devices) if str(d.index) in want or d.uuid in want]
        return np.array(out, dtype=np.intp)
    return np.arange(len(frame), dtype=np.intp)


class SpinWatch:
    """Hang: every GPU of the job shows the spin signature, continuously, for `timeout_s`."""

    def __init__(self, timeout_s: float, sig: SpinSignature | None = None) -> None:
        self.timeout_s, self.sig = timeout_s, sig or SpinSignature()
        self.since: float | None = None

    def add(self, t: float, frame: Frame, devices: np.ndarray) -> Verdict | None:
        """Feed one Frame; a verdict once the signature has held for the timeout."""
        if not devices.size:
            self.since = None
            return None
        util, mem = frame.utilization_gpu[devices], frame.utilization_memory[devices]
        links = (frame.nvlink_rx_bytes_per_s + frame.nvlink_tx_bytes_per_s + frame.pcie_rx_bytes_per_s
                 + frame.pcie_tx_bytes_per_s)[devices]
        spinning = (util >= self.sig.util_gpu_min) & (mem <= self.sig.util_memory_max) & ~(
            links > self.sig.link_bytes_per_s_max)  # NaN throughput (not supported) does not veto
        if not spinning.all():
            self.since = None
            return None
        self.since = t if self.since is None else self.since
        if t - self.since < self.timeout_s:
            return None
        names = [f"{frame.devices[i].node}/gpu{frame.devices[i].index}" for i in devices]
        return Verdict(VerdictKind.HANG, f"collective spin on every GPU of the job for {t - self.since:.1f} s "
                                  f"(utilisation >= {self.sig.util_gpu_min:g}%, memory controller <= "
                                  f"{self.sig.util_memory_max:g}%, links idle)",
                       {"signal": "gpu_spin", "gpus": names, "spin_s": round(t - self.since, 2),
                        "utilization_gpu": util.round(1).tolist(), "utilization_memory": mem.round(1).tolist(),
                        "power_w": frame.power_w[devices].round(0).tolist()})


class GpuWatch:
    """Samples the Backend for the supervisor: spin signature and device-memory runaway over the job's GPUs."""

    def __init__(self, backend: Backend, *, hang_timeout_s: float, lead_s: float, env: Mapping[str, str],
                 before_sample: Callable[[], None] | None = None, policy: PolicyWatch | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.backend, self.env, self.lead_s = backend, env, lead_s
        self.spin = SpinWatch(hang_timeout_s)
        self.before_sample = before_sample  # the simulator: move the twin to "now"
        self.memory: dict[int, MemoryWatch] = {}
        self.policy = policy  # the agent's rules for this job (thermal, memory), when given
        self.last: Frame | None = None
        self.last_devices = np.zeros(0, dtype=np.intp)  # the job's GPUs in `last`
        self.say, self.failed = say, False

    def look(self, job: Look) -> Verdict | None:
        """The Backend's view; a failing read is reported once and the other watches go on."""
        try:
            return self.check(job.now, job.pids, job.progress_age_s)
        except Exception as exc:
            if not self.failed:
                self.say(f"GPU telemetry failed ({type(exc).__name__}: {exc}); the other watches go on")
            self.failed = True
            return None

    def check(self, t: float, pids: set[int], progress_age_s: float = math.nan) -> Verdict | None:
        """One sample; a hang, runaway-memory or policy (thermal ...) verdict, or None."""
        if self.before_sample is not None:
            self.before_sample()
        frame = self.last = self.backend.sample()
        devices = self.last_devices = job_devices(frame, pids, self.env)
        verdict = self.spin.add(t, frame, devices)
        if verdict is None and self.policy is not None:
            verdict = self.policy.check(frame, devices, pids, progress_age_s)
        for i in devices.tolist():
            if verdict is not None:
                break
            total, used = float(frame.memory_total_bytes[i]), float(frame.memory_used_bytes[i])
            if not (np.isfinite(total) and np.isfinite(used)):
                continue
            watch = self.memory.setdefault(i, MemoryWatch(total, self.lead_s))
            v = watch.add(t, used)
            if v is not None:
                dev = frame.devices[i]
                verdict = Verdict(VerdictKind.RUNAWAY_MEMORY, f"{dev.node}/gpu{dev.index}: {v.reason}",
                                  {**v.evidence, "source": f"device memory of {dev.node}/gpu{dev.index} "
                                                           f"({dev.uuid})"})
        return verdict
