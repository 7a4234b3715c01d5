"""Where the agent's node and job views come from when it watches the twin (the real node uses /proc)."""

from __future__ import annotations

from typing import Any

import numpy as np

from coldaisle.policy.context import FaultCounts, Jobs, Nodes
from coldaisle.sim.backend import SimBackend
from coldaisle.telemetry.frame import Frame


class SimNodes:
    """Each device's node, and per node the inlet temperature its BMC would report."""

    def __init__(self, backend: SimBackend, history: FaultCounts | None = None) -> None:
        self.backend, self.twin, self.history = backend, backend.twin, history
        lay = self.twin.plan.layout
        node_of = lay.gpu_node[backend.gpus]
        self.node_ids, self.of_device = np.unique(node_of, return_inverse=True)
        self.names = [lay.node_names[int(n)] for n in self.node_ids]
        self._rack = lay.node_rack[self.node_ids]
        self._down: tuple[int, np.ndarray] = (-1, np.zeros(0, bool))

    def nodes(self, frame: Frame) -> Nodes:
        """Node membership plus `inlet_c` (rack inlet air) per node; a node that is off reports nothing."""
        s = self.twin.state
        inlet = self.twin.recorder.rack_inlet(s)[self._rack]
        if self._down[0] != s.nodes_version:
            self._down = (s.nodes_version, ~s.node_up[self.node_ids])
        if np.count_nonzero(self._down[1]):
            inlet[self._down[1]] = np.nan
        return Nodes(self.names, self.of_device, {"inlet_c": inlet}, self.history)


class SimJobs:
    """Running jobs: the job of each device and process, and seconds since each job progressed.

    Like a real node, which only sees jobs that have processes, jobs that have not started or have
    ended are not listed."""

    def __init__(self, backend: SimBackend) -> None:
        self.backend, self.twin = backend, backend.twin
        self.names = [jp.spec.name for jp in self.twin.plan.jobs]
        self._groups_seen = -1
        self._groups_indexed = 0
        self._cached: tuple[int, list[str], np.ndarray, np.ndarray, list[int]] | None = None
        self._groups_of: dict[int, list[Any]] = {}
        self._group_job = np.array([-1], dtype=np.intp)

    def jobs(self, frame: Frame) -> Jobs:
        """Attribution for this Frame."""
        wl = self.twin.workload
        if self._cached is not None and self._cached[0] == wl.version:
            _, names, of_device, of_process, running = self._cached
            return Jobs(names, of_device, of_process, {"job_progress_age_s": self._age(running)})
        group = wl.group_of[self.backend.gpus]
        if len(wl.groups) != self._groups_seen:  # communicators only ever get appended
            self._group_job = np.array([g.job for g in wl.groups] + [-1], dtype=np.intp)
            self._groups_seen = len(wl.groups)
        group_job = self._group_job
        running = [j for j, status in enumerate(wl.job_status) if status == "running"]
        remap = np.full(len(self.names) + 1, -1, dtype=np.intp)  # last slot: "no job" stays -1
        remap[running] = np.arange(len(running))
        of_device = remap[group_job[np.where(group >= 0, group, -1)]]
        of_process = of_device[frame.processes.device] if len(frame.processes) else np.zeros(0, np.intp)
        names = [self.names[j] for j in running]
        self._cached = (wl.version, names, of_device, of_process, running)
        return Jobs(names, of_device, of_process, {"job_progress_age_s": self._age(running)})

    def _age(self, running: list[int]) -> np.ndarray:
        wl, now = self.twin.workload, self.twin.t
        for g in wl.groups[self._groups_indexed:]:  # communicators are only ever appended
            self._groups_of.setdefault(g.job, []).append(g)
        self._groups_indexed = len(wl.groups)
        age = np.full(len(running), np.nan)
        for k, j in enumerate(running):
            mine = self._groups_of.get(j, [])
            if mine:
                age[k] = 0.0 if any(g.status == "running" for g in mine) else now - max(g.since for g in mine)
        return age
