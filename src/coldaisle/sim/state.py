"""The twin's state: one numpy array per quantity over every GPU, row and rack of the cluster."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from coldaisle.sim.resolve import Plan

F64 = NDArray[np.float64]
BOOL = NDArray[np.bool_]


class Work(IntEnum):
    """What a GPU is doing; indexes the per-state tables (power, utilisation...)."""

    OFF = 0  # no power (node down, thermal shutdown, emergency power off)
    IDLE = 1  # powered, no kernel running
    COMPUTE = 2  # running the job's kernels
    SPIN = 3  # busy-waiting inside a collective whose peer never arrives
    STALLED = 4  # the rank that stopped progressing (stuck on PCIe, spilling to host, D state)


#: utilisation.gpu, utilisation.memory (percent), PCIe and NVLink bytes/s per Work state. A collective
#: spin pegs the SMs while the memory controller and the links sit idle: the hang signature.
UTILIZATION_GPU = np.array([0.0, 0.0, 95.0, 100.0, 2.0])
UTILIZATION_MEMORY = np.array([0.0, 0.0, 55.0, 0.0, 1.0])
PCIE_BYTES_PER_S = np.array([0.0, 1e5, 4e9, 2e5, 5e8])
NVLINK_BYTES_PER_S = np.array([0.0, 0.0, 80e9, 0.0, 0.0])
SM_CLOCK_MHZ = np.array([0.0, 345.0, 1755.0, 1755.0, 1755.0])
MEMORY_CLOCK_MHZ = np.array([0.0, 1593.0, 1593.0, 1593.0, 1593.0])


@dataclass
class State:
    """Everything that changes as the twin steps. Arrays are indexed by global GPU / row / rack / node."""

    n_gpus: int
    n_rows: int
    n_racks: int
    n_nodes: int
    temp_c: F64 = field(init=False)
    fan: F64 = field(init=False)
    fan_failed: BOOL = field(init=False)
    work: NDArray[np.int8] = field(init=False)
    power_w: F64 = field(init=False)
    limit_w: F64 = field(init=False)
    demand: F64 = field(init=False)  # (len(Work), n_gpus) power each GPU draws in each state
    throttle: F64 = field(init=False)  # share of demand kept by thermal throttling (1 = none)
    lost: BOOL = field(init=False)
    memory_bytes: F64 = field(init=False)
    energy_j: F64 = field(init=False)
    pcie_replay: F64 = field(init=False)
    remap_pending: F64 = field(init=False)  # a row remapping waits for a GPU reset (1.0) or not (0.0)
    remap_failed: F64 = field(init=False)  # a row remapping failed (1.0): the card needs service
    peak_c: F64 = field(init=False)
    above_slowdown_s: F64 = field(init=False)
    slowdown_latched: BOOL = field(init=False)
    aisle_c: F64 = field(init=False)
    capacity_w: F64 = field(init=False)
    rack_kw: F64 = field(init=False)
    node_up: BOOL = field(init=False)
    node_drained: BOOL = field(init=False)
    link_down: BOOL = field(init=False)  # the node's fabric link is down (NIC, cable or switch)
    demand_version: int = 0  # bumped whenever `demand` is rewritten (physics caches each GPU's demand)
    nodes_version: int = 0  # bumped whenever node_up changes (physics caches host power per row)
    versions: dict[str, int] = field(default_factory=dict)  # per slowly changing array: bumped by `touch`
    any_fan_failed: bool = False
    heat_path: F64 = field(init=False)  # share of each GPU's normal conductance to the air (1 = healthy)
    any_degraded: bool = False  # some GPU's heat path is degraded (a dried-out thermal interface)

    def touch(self, *names: str) -> None:
        """Say that these slowly changing arrays (lost, memory_bytes, pcie_replay, limit_w, remap_pending,
        remap_failed) were written: views of the twin copy them again, and reuse them while untouched."""
        for name in names:
            self.versions[name] = self.versions.get(name, 0) + 1

    def __post_init__(self) -> None:
        g = self.n_gpus
        self.temp_c, self.fan, self.power_w = np.zeros(g), np.zeros(g), np.zeros(g)
        self.limit_w, self.throttle = np.zeros(g), np.ones(g)
        self.fan_failed, self.lost = np.zeros(g, bool), np.zeros(g, bool)
        self.work = np.full(g, Work.IDLE, np.int8)
        self.demand = np.zeros((len(Work), g))
        self.memory_bytes, self.energy_j = np.zeros(g), np.zeros(g)
        self.pcie_replay, self.peak_c, self.above_slowdown_s = np.zeros(g), np.zeros(g), np.zeros(g)
        self.remap_pending, self.remap_failed = np.zeros(g), np.zeros(g)
        self.heat_path = np.ones(g)
        self.slowdown_latched = np.zeros(g, bool)
        self.aisle_c, self.capacity_w = np.zeros(self.n_rows), np.zeros(self.n_rows)
        self.rack_kw = np.zeros(self.n_racks)
        self.node_up, self.node_drained = np.ones(self.n_nodes, bool), np.zeros(self.n_nodes, bool)
        self.link_down = np.zeros(self.n_nodes, bool)

    @classmethod
    def initial(cls, plan: Plan) -> State:
        """Idle cluster in thermal equilibrium with its cold aisle at the setpoint."""
        lay, card, fac = plan.layout, plan.card, plan.scenario.facility
        s = cls(lay.n_gpus, lay.n_rows, lay.n_racks, lay.n_nodes)
        s.limit_w[:] = card.tdp_w
        s.demand[Work.IDLE] = card.idle_w
        s.demand[Work.STALLED] = card.idle_w
        s.aisle_c[:] = fac.setpoint
        s.capacity_w[:] = fac.row_cooling
        s.fan[:] = card.physics.fan_min_pct / 100.0
        return s
