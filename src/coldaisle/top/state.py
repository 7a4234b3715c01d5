"""What `coldaisle top` shows, as plain data: the agent's tick fills a Snapshot, the renderer only reads it.

Keeping the screen's content apart from its drawing lets tests check what a person would see (a rule
pending with 4 s to go, then firing) without a terminal, and lets the renderer stay a pure function.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from coldaisle.actions.interface import Outcome
from coldaisle.policy.context import Jobs, Nodes
from coldaisle.policy.engine import RuleView
from coldaisle.policy.loader import CompiledRule
from coldaisle.telemetry.frame import DeviceInfo, Frame


@dataclass(frozen=True, slots=True)
class GpuRow:
    """One GPU now, with its recent history (oldest first) for the sparklines."""

    info: DeviceInfo
    temperature_c: float
    power_w: float
    power_limit_w: float
    memory_used_bytes: float
    utilization_gpu: float
    lost: bool
    temperature_history: np.ndarray
    power_history: np.ndarray
    memory_history: np.ndarray


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One GPU process: which GPU, what it is, whose job, how much device memory."""

    pid: int
    gpu: int
    name: str
    job: str
    memory_bytes: float


@dataclass(frozen=True, slots=True)
class RuleRow:
    """One rule of the policy and where it stands on this node."""

    name: str
    severity: str
    scope: str
    for_s: float
    pending: int
    firing: int
    fires_in_s: float | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one screen of `coldaisle top` shows."""

    node: str
    source: str  # "NVML" or "sim prometheus-unbound x10"
    mode: str  # "ENFORCING" or "dry-run"
    policy: str
    time: float  # UTC epoch of the sample (simulated time on the twin)
    samples: int
    gpus: tuple[GpuRow, ...]
    processes: tuple[ProcessRow, ...]
    rules: tuple[RuleRow, ...]
    actions: tuple[Outcome, ...]  # newest last
    node_values: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class ScreenRecorder:
    """Keeps a ring of recent readings per GPU and turns each tick into a Snapshot."""

    def __init__(self, devices: Sequence[DeviceInfo], *, node: str, source: str, mode: str, policy: str,
                 rules: Sequence[CompiledRule], history: int = 60,
                 process_name: Callable[[int], str] = lambda _pid: "") -> None:
        self.devices, self.node, self.source, self.mode, self.policy = tuple(devices), node, source, mode, policy
        self.rules = {cr.rule.name: cr.rule for cr in rules}
        self.process_name = process_name
        n = len(self.devices)
        self._rings = {k: np.full((n, history), np.nan) for k in ("temperature_c", "power_w", "memory_used_bytes")}
        self._filled = 0
        self.notes: deque[str] = deque(maxlen=3)
        self.samples = 0
        self.last: Snapshot | None = None

    def observe(self, frame: Frame, nodes: Nodes, jobs: Jobs, views: Iterable[RuleView],
                actions: Iterable[Outcome]) -> Snapshot:
        """Record `frame` and build the screen for it."""
        for name, ring in self._rings.items():
            ring[:, :-1] = ring[:, 1:]
            ring[:, -1] = frame.column(name)
        self._filled = min(self._filled + 1, next(iter(self._rings.values())).shape[1])
        self.samples += 1
        self.last = Snapshot(self.node, self.source, self.mode, self.policy, frame.wall_time, self.samples,
                             self._gpus(frame), self._processes(frame, jobs), self._rules(views),
                             tuple(actions), _node_values(nodes), tuple(self.notes))
        return self.last

    def _gpus(self, f: Frame) -> tuple[GpuRow, ...]:
        keep = slice(-self._filled, None)
        t, p, m = (self._rings[k][:, keep] for k in ("temperature_c", "power_w", "memory_used_bytes"))
        return tuple(GpuRow(d, float(f.temperature_c[i]), float(f.power_w[i]), float(f.power_limit_w[i]),
                            float(f.memory_used_bytes[i]), float(f.utilization_gpu[i]), bool(f.lost[i]),
                            t[i].copy(), p[i].copy(), m[i].copy())
                     for i, d in enumerate(f.devices))

    def _processes(self, f: Frame, jobs: Jobs) -> tuple[ProcessRow, ...]:
        rows = f.processes
        of_process = jobs.of_process if jobs.of_process is not None else np.full(len(rows), -1)
        out = []
        for k, (dev, pid, used) in enumerate(zip(rows.device.tolist(), rows.pid.tolist(),
                                                 rows.used_memory_bytes.tolist(), strict=True)):
            j = int(of_process[k]) if k < len(of_process) else -1
            job = jobs.names[j] if 0 <= j < len(jobs.names) else ""
            gpu = f.devices[dev].index if 0 <= dev < len(f.devices) else dev
            out.append(ProcessRow(int(pid), int(gpu), self.process_name(int(pid)), job, float(used)))
        return tuple(sorted(out, key=lambda r: (r.gpu, r.pid)))

    def _rules(self, views: Iterable[RuleView]) -> tuple[RuleRow, ...]:
        out = []
        for v in views:
            r = self.rules.get(v.name)
            if r is not None:
                out.append(RuleRow(v.name, str(r.severity), str(r.scope), float(r.for_), v.pending, v.firing,
                                   v.next_fire_in_s))
        return tuple(out)


def _node_values(nodes: Nodes) -> dict[str, float]:
    """The first node's host signals (inlet air on the twin, PSI and swap on a real host), finite ones only."""
    out = {}
    for name, arr in nodes.values.items():
        if len(arr) and math.isfinite(float(arr[0])):
            out[name] = float(arr[0])
    return out
