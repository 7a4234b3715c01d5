"""History of a run at a fixed interval, preallocated so a 72-hour run never reallocates."""

from __future__ import annotations

import numpy as np

from coldaisle.sim.resolve import Plan
from coldaisle.sim.state import State


class Recorder:
    """Per-GPU temperature, power and memory plus room, rack and sensor series, every `record_every`."""

    def __init__(self, plan: Plan) -> None:
        sc, lay = plan.scenario, plan.layout
        self.plan = plan
        self.every = sc.record_every
        n = int(np.floor(plan.duration_s / self.every)) + 2
        self.n = 0
        self.t = np.zeros(n)
        self.gpu_temp_c = np.zeros((n, lay.n_gpus), np.float32)
        self.gpu_power_w = np.zeros((n, lay.n_gpus), np.float32)
        self.gpu_memory_bytes = np.zeros((n, lay.n_gpus), np.float32)
        self.aisle_c = np.zeros((n, lay.n_rows))
        self.rack_inlet_c = np.zeros((n, lay.n_racks))
        self.rack_kw = np.zeros((n, lay.n_racks))
        self.sensor_c = np.zeros((n, len(plan.sensors)))
        self.it_kw = np.zeros(n)
        self.facility_kw = np.zeros(n)
        self.pue = np.zeros(n)
        self.next_t = 0.0

    def maybe_record(self, t: float, s: State, it_w: float, pue: float) -> None:
        """Record if `t` has reached the next recording time."""
        if t + 1e-9 < self.next_t or self.n >= self.t.shape[0]:
            return
        i = self.n
        self.t[i] = t
        self.gpu_temp_c[i] = s.temp_c
        self.gpu_power_w[i] = s.power_w
        self.gpu_memory_bytes[i] = s.memory_bytes
        self.aisle_c[i] = s.aisle_c
        self.rack_inlet_c[i] = self.rack_inlet(s)
        self.rack_kw[i] = s.rack_kw
        self.sensor_c[i] = self.sensors(s)
        self.it_kw[i], self.pue[i], self.facility_kw[i] = it_w / 1e3, pue, it_w * pue / 1e3
        self.n += 1
        self.next_t = round((t + self.every) / self.every) * self.every

    def rack_inlet(self, s: State) -> np.ndarray:
        """Each rack's inlet air: its row's cold aisle plus recirculation."""
        fac = self.plan.scenario.facility
        return s.aisle_c[self.plan.layout.rack_row] + fac.recirculation * s.rack_kw

    def sensors(self, s: State) -> np.ndarray:
        """Current value of every named sensor."""
        out = np.empty(len(self.plan.sensors))
        inlet = self.rack_inlet(s)
        for k, sp in enumerate(self.plan.sensors):
            if sp.kind == "aisle":
                out[k] = s.aisle_c[sp.row]
            elif sp.kind == "inlet":
                out[k] = inlet[sp.rack]
            elif sp.kind == "gpu_mean":
                out[k] = s.temp_c[sp.gpus].mean()
            else:
                out[k] = s.temp_c[sp.gpus].max()
        return out

    def view(self, name: str) -> np.ndarray:
        """A recorded series trimmed to what has been recorded."""
        return getattr(self, name)[: self.n]
