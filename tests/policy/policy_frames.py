"""Hand-built Frames and evaluation contexts for policy tests: a tiny cluster whose every value is chosen.

`Cluster` is a few nodes of a few GPUs each (H100 SXM limits: 200..700 W, slowdown 87 C). `frame()` fills
the columns a test names and leaves the rest NaN, exactly as a backend that could not read them would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from coldaisle.policy.context import EvalContext, Jobs, Nodes
from coldaisle.policy.history import History
from coldaisle.telemetry.frame import DeviceEvent, DeviceInfo, Frame, ProcessRows

WALL0 = 1_717_400_000.0  # 2024-06-03T07:33:20Z
SLOWDOWN_C, SHUTDOWN_C = 87.0, 92.0
DEFAULT_W, MIN_W, MAX_W = 700.0, 200.0, 700.0
MEMORY_TOTAL = 80 * 2**30


def device_infos(nodes: Sequence[str], gpus_per_node: int) -> tuple[DeviceInfo, ...]:
    """`gpus_per_node` GPUs on each node, indexed 0.. on their node, with distinct uuids."""
    return tuple(
        DeviceInfo(node=node, index=i, uuid=f"GPU-test-{node}-{i}", name="NVIDIA H100 80GB HBM3",
                   memory_total_bytes=MEMORY_TOTAL, power_default_limit_w=DEFAULT_W, power_max_limit_w=MAX_W,
                   power_min_limit_w=MIN_W, slowdown_temperature_c=SLOWDOWN_C, shutdown_temperature_c=SHUTDOWN_C)
        for node in nodes for i in range(gpus_per_node))


@dataclass
class Procs:
    """Process rows: device index, pid and used memory per row."""

    device: Sequence[int] = ()
    pid: Sequence[int] = ()
    memory: Sequence[float] = ()

    def rows(self) -> ProcessRows:
        """As the Frame's columnar ProcessRows."""
        mem = list(self.memory) or [0.0] * len(self.pid)
        return ProcessRows(np.asarray(self.device, np.int32), np.asarray(self.pid, np.int64),
                           np.asarray(mem, np.float64))


@dataclass
class Cluster:
    """Nodes of GPUs, optionally jobs over some of them, and the history the windowed functions read."""

    nodes: Sequence[str] = ("n1", "n2")
    gpus_per_node: int = 2
    job_names: Sequence[str] = ()
    job_of_device: Sequence[int] | None = None  # -1: no job
    history: History = field(default_factory=lambda: History({}))

    def __post_init__(self) -> None:
        self.devices = device_infos(self.nodes, self.gpus_per_node)
        self.node_of = np.repeat(np.arange(len(self.nodes)), self.gpus_per_node).astype(np.intp)

    @property
    def n(self) -> int:
        """Number of GPUs."""
        return len(self.devices)

    def frame(self, t: float = 0.0, *, procs: Procs | None = None, events: Sequence[DeviceEvent] = (),
              **columns: float | Sequence[float]) -> Frame:
        """A Frame at monotonic `t`; each named column is a scalar for every GPU or one value per GPU."""
        kw = Frame.blank(self.devices, WALL0 + t, t)
        for name, value in columns.items():
            if name == "lost":
                kw["lost"] = np.broadcast_to(np.asarray(value, bool), (self.n,)).copy()
            elif name == "throttle_reasons":
                kw["throttle_reasons"] = np.broadcast_to(np.asarray(value, np.uint64), (self.n,)).copy()
            else:
                kw[name] = np.broadcast_to(np.asarray(value, float), (self.n,)).copy()
        kw["processes"] = (procs or Procs()).rows()
        kw["events"] = tuple(events)
        return Frame(**kw)  # type: ignore[arg-type]

    def context(self, frame: Frame, *, node_values: Mapping[str, Sequence[float]] | None = None,
                job_values: Mapping[str, Sequence[float]] | None = None,
                job_of_process: Sequence[int] | None = None, xid: Sequence[float] | None = None,
                d_state: Sequence[float] | None = None, history: History | None = None) -> EvalContext:
        """What the rules see for `frame`; the history is appended first, as the agent does."""
        nodes = Nodes(list(self.nodes), self.node_of,
                      {k: np.asarray(v, float) for k, v in (node_values or {}).items()})
        jod = None if self.job_of_device is None else np.asarray(self.job_of_device, np.intp)
        if job_of_process is None and jod is not None:
            jop = jod[frame.processes.device.astype(np.intp)] if len(frame.processes) else np.zeros(0, np.intp)
        else:
            jop = None if job_of_process is None else np.asarray(job_of_process, np.intp)
        jobs = Jobs(list(self.job_names), jod, jop, {k: np.asarray(v, float) for k, v in (job_values or {}).items()})
        hist = history if history is not None else self.history
        ctx = EvalContext(frame, nodes, jobs, hist,
                          xid_last=None if xid is None else np.asarray(xid, float),
                          process_d_state=None if d_state is None else np.asarray(d_state, float))
        hist.append(frame, {c: ctx.column(c, "device") for c in hist.columns})
        return ctx
