"""One step of a chunk as the agent sees a sample: a Frame over the fleet's GPUs, its Nodes and its Jobs."""

from __future__ import annotations

import numpy as np

from coldaisle.backtest.chunk import Chunk
from coldaisle.backtest.fleet import Fleet
from coldaisle.policy.context import Jobs, Nodes
from coldaisle.telemetry.frame import METRIC_NAMES, DeviceEvent, Frame, ProcessRows


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class FrameMaker:
    """Builds Frames, Nodes and Jobs for steps of a chunk; what history does not hold is NaN, as on a card
    that does not support it (read-only and shared, so the policy's caches know it never changes)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        n = len(fleet.devices)
        self.nan = _frozen(np.full(n, np.nan))
        self.no_reasons = _frozen(np.zeros(n, np.uint64))
        total = np.array([d.memory_total_bytes for d in fleet.devices], dtype=float)
        self.memory_total = _frozen(np.where(total > 0, total, np.nan))
        self.processes = ProcessRows.empty()

    def frame(self, chunk: Chunk, k: int) -> Frame:
        """Step `k` of `chunk` as a Frame (wall and monotonic time are the step's unix time)."""
        kw: dict[str, object] = dict.fromkeys(METRIC_NAMES, self.nan)
        for name, arr in chunk.columns.items():
            kw[name] = arr[k]
        if "memory_total_bytes" not in chunk.columns:
            kw["memory_total_bytes"] = self.memory_total
        age = chunk.age[k]
        kw["sample_age_s"] = np.where(np.isinf(age), np.nan, age)
        t = float(chunk.times[k])
        xid = chunk.xid[k]
        hits = np.flatnonzero(~np.isnan(xid))
        events = tuple(DeviceEvent(int(d), "xid", t, xid=int(xid[d])) for d in hits.tolist())
        return Frame(wall_time=t, monotonic=t, devices=self.fleet.devices,
                     throttle_reasons=self.no_reasons if chunk.throttle is None else chunk.throttle[k],
                     lost=chunk.lost[k], processes=self.processes, events=events, **kw)  # type: ignore[arg-type]

    def nodes(self, chunk: Chunk, k: int) -> Nodes:
        """Every node of the fleet, with the node-level values history holds for it."""
        return Nodes(self.fleet.node_names, self.fleet.node_of, {n: v[k] for n, v in chunk.node_values.items()})

    def jobs(self, chunk: Chunk, k: int) -> Jobs:
        """The jobs that have a GPU at this step (as a node lists only jobs with processes), in name order."""
        of = chunk.job_of[k]
        present = np.unique(of[of >= 0])
        remap = np.full(len(chunk.jobs) + 1, -1, dtype=np.intp)
        remap[present] = np.arange(present.size)
        values = {name: v[k, present] for name, v in chunk.job_values.items()}
        return Jobs([chunk.jobs[j] for j in present.tolist()], remap[of], np.zeros(0, np.intp), values)
