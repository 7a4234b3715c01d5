"""Power, thermal and room physics for every GPU at once, one vectorised step at a time.

GPU: a thermal mass C heated by its power P and cooled toward its inlet air through a
fan-dependent resistance R, integrated exactly (T -> T_inlet + P*R with time constant R*C),
so any step length is stable. Rack inlet: its row's cold aisle plus a recirculation rise
per kW of rack load. Row air: a thermal mass heated by what the GPUs and hosts shed,
cooled by CRAC capacity (a controller toward the setpoint, capped at capacity) and mixed
with the other rows, integrated explicitly in sub-steps within its stability limit, so the
twin's long quiet steps (sim.stepper) stay stable too. Every joule is booked: drawn =
removed by cooling + stored.
"""

from __future__ import annotations

import math

import numpy as np

from coldaisle.sim.resolve import Plan
from coldaisle.sim.state import State, Work

_SPIN = int(Work.SPIN)


class Physics:
    """Steps a State forward; holds the constants and a running energy ledger."""

    def __init__(self, plan: Plan) -> None:
        lay, card, fac = plan.layout, plan.card, plan.scenario.facility
        phys = card.physics
        self.plan = plan
        self.idx = np.arange(lay.n_gpus)
        self._work: np.ndarray | None = None
        self._demand_version = -1
        self._demand = np.zeros(lay.n_gpus)
        self._spinning: np.ndarray | None = None  # 1.0 where a GPU spins in a collective (None: none does)
        self.gpu_rack, self.gpu_row, self.rack_row = lay.gpu_rack, lay.gpu_row, lay.rack_row
        self.gpu_node = lay.gpu_node
        self.node_rack, self.node_row = lay.node_rack, lay.node_row
        self.n_racks, self.n_rows = lay.n_racks, lay.n_rows
        self.C = phys.thermal_mass
        self.g_full = 1.0 / phys.resistance_full_fan
        self.g_still = 1.0 / phys.resistance_still_air
        self.fan_min = phys.fan_min_pct / 100.0
        self.fan_lo, self.fan_span = phys.fan_ramp_from, max(phys.fan_full_at - phys.fan_ramp_from, 1e-6)
        self.fan_tau = phys.fan_time_constant
        self.slowdown, self.shutdown = card.slowdown_c, card.shutdown_c
        self.slope, self.floor = phys.throttle_slope, phys.throttle_floor
        self.host_w = plan.scenario.topology.host_power
        self.setpoint, self.c_air = fac.setpoint, fac.air_thermal_mass
        self.mixing, self.recirc = fac.row_mixing, fac.recirculation
        self.ctrl_tau = fac.control_time_constant
        self.pue_normal, self.pue_sat, self.pue_design = fac.pue_normal, fac.pue_saturated, fac.pue_design_load
        self.it_j = self.cooling_j = self.facility_j = self.spin_j = 0.0
        self.pue = fac.pue_normal
        self.host_power_w = 0.0
        self.room_limit_s = min(self.ctrl_tau, self.c_air / max(self.mixing, 1e-9)) / 4  # resolve's bound on `step`
        self.track = False  # measure how far things moved in each step (the adaptive stepper asks)
        # the largest change in the last step, when tracked, of: a GPU's temperature, an aisle's, a fan's speed
        # (0..1) and a GPU's thermal throttling (share of power kept)
        self.moved_c = self.moved_air_c = self.moved_fan = self.moved_throttle = 0.0
        self._host_key = -1
        self._host_rack = np.zeros(self.n_racks)
        self._host_row = np.zeros(self.n_rows)
        # per-GPU scratch: a step's temporaries live here, not in fresh arrays (16,384 float64 are 128 KiB, which
        # glibc serves with mmap and returns with munmap: at fleet size the page faults cost more than the math)
        self._scratch = tuple(np.zeros(lay.n_gpus) for _ in range(4))

    def stored_j(self, s: State) -> float:
        """Heat held in GPU and air thermal masses, relative to 0 C (for the energy ledger)."""
        return float(self.C * s.temp_c.sum() + self.c_air * s.aisle_c.sum())

    def step(self, s: State, dt: float) -> None:
        """Advance power, fans, GPU temperatures and room air by `dt` seconds."""
        self._power(s)
        host_row = self._host_by_row(s)
        inlet = self._inlet(s)
        q_row = self._gpus(s, inlet, dt) + host_row
        self._room(s, q_row, dt)
        it = float(s.power_w.sum()) + self.host_power_w
        s.energy_j += np.multiply(s.power_w, dt, out=self._scratch[0])
        self.it_j += it * dt
        self.facility_j += it * self.pue * dt
        if self._spinning is not None:  # a float mask: np.dot over a bool one takes numpy's slow generic loop
            self.spin_j += float(np.dot(s.power_w, self._spinning)) * dt
        np.maximum(s.peak_c, s.temp_c, out=s.peak_c)

    def _power(self, s: State) -> None:
        if self._work is None or not np.array_equal(s.work, self._work) or s.demand_version != self._demand_version:
            self._work, self._demand_version = s.work.copy(), s.demand_version
            self._demand = s.demand[s.work, self.idx]  # a 2-D gather: redone only when a GPU changes state
            spinning = s.work == _SPIN
            self._spinning = spinning.astype(float) if spinning.any() else None
        demand = self._demand
        t = s.throttle
        before = t.copy() if self.track and float(s.temp_c.max()) > self.slowdown - 1.0 else None
        np.subtract(s.temp_c, self.slowdown, out=t)
        t *= -self.slope
        t += 1.0
        np.minimum(t, 1.0, out=t)
        np.maximum(t, self.floor, out=t)
        np.minimum(demand, s.limit_w, out=s.power_w)
        s.power_w *= t
        if self.track:
            self.moved_throttle = 0.0 if before is None else float(np.abs(t - before).max())

    def _host_by_row(self, s: State) -> np.ndarray:
        key = s.nodes_version
        if key != self._host_key:
            up = s.node_up.astype(float) * self.host_w
            self.host_power_w = float(up.sum())
            self._host_rack = np.bincount(self.node_rack, weights=up, minlength=self.n_racks)
            self._host_row = np.bincount(self.node_row, weights=up, minlength=self.n_rows)
            self._host_key = key
        return self._host_row

    def _inlet(self, s: State) -> np.ndarray:
        rack_w = np.bincount(self.gpu_rack, weights=s.power_w, minlength=self.n_racks)
        rack_w += self._host_rack
        np.multiply(rack_w, 1e-3, out=s.rack_kw)
        rack_inlet = s.aisle_c[self.rack_row] + self.recirc * s.rack_kw
        return np.take(rack_inlet, self.gpu_rack, out=self._scratch[3])

    def _gpus(self, s: State, inlet: np.ndarray, dt: float) -> np.ndarray:
        """Fans toward their curve, then each GPU's exact exponential over `dt`; the heat each row's air gets.
        (`inlet` is scratch[3]; the other three scratch arrays hold, in turn, the values named below.)"""
        a, b, c, _ = self._scratch
        target = np.subtract(s.temp_c, self.fan_lo, out=a)
        target *= 1.0 / self.fan_span
        np.minimum(target, 1.0, out=target)
        np.maximum(target, self.fan_min, out=target)
        if s.any_fan_failed:
            target[s.fan_failed] = 0.0
        target -= s.fan
        target *= 1.0 - math.exp(-dt / self.fan_tau)
        if self.track:
            self.moved_fan = float(np.abs(target, out=b).max())
        s.fan += target
        g = np.multiply(s.fan, self.g_full - self.g_still, out=a)
        g += self.g_still
        if s.any_degraded:
            g *= s.heat_path
        t_ss = np.divide(s.power_w, g, out=b)
        t_ss += inlet
        decay = np.exp(np.multiply(g, -dt / self.C, out=c), out=c)
        new = np.subtract(s.temp_c, t_ss, out=a)
        new *= decay
        new += t_ss
        rise = np.subtract(new, s.temp_c, out=c)
        if self.track:
            self.moved_c = float(np.abs(rise, out=b).max())
        heat_out = np.subtract(s.power_w, np.multiply(rise, self.C / dt, out=b), out=b)
        s.temp_c[:] = new
        return np.bincount(self.gpu_row, weights=heat_out, minlength=self.n_rows)

    def _room(self, s: State, q_row: np.ndarray, dt: float) -> None:
        # a step longer than the air's stability limit (a long quiet step) holds the GPUs' heat: the air is solved
        # exactly while no row's cooling saturates, and sub-stepped within its stability limit otherwise
        before = s.aisle_c.copy() if self.track else None
        if dt <= self.room_limit_s + 1e-9:
            self._air(s, q_row, dt)
        elif not self._air_exact(s, q_row, dt):
            n = math.ceil(dt / self.room_limit_s - 1e-9)
            for _ in range(n):
                self._air(s, q_row, dt / n)
        if before is not None:
            self.moved_air_c = float(np.abs(s.aisle_c - before).max())

    def _air_exact(self, s: State, q_row: np.ndarray, dt: float) -> bool:
        """The air's exact solution over `dt` when every row's CRAC stays between idle and its capacity: the rows'
        mean relaxes to the setpoint with the control time constant, their differences also mix away. False
        (nothing changed) when a row saturates at either end."""
        k = self.c_air / self.ctrl_tau
        mean0 = float(np.add.reduce(s.aisle_c)) / s.aisle_c.size
        decay = math.exp(-dt / self.ctrl_tau)
        after = self.setpoint + (mean0 - self.setpoint) * decay + (s.aisle_c - mean0) * math.exp(
            -dt * (1.0 / self.ctrl_tau + self.mixing / self.c_air))
        for aisle in (s.aisle_c, after):
            wanted = q_row + (aisle - self.setpoint) * k
            if float(wanted.min()) < 0.0 or bool((wanted > s.capacity_w).any()):
                return False
        s.aisle_c[:] = after
        self.cooling_j += float(np.add.reduce(q_row)) * dt + k * s.aisle_c.size * (mean0 - self.setpoint) * \
            self.ctrl_tau * (1.0 - decay)
        self._pue(q_row, s)
        return True

    def _air(self, s: State, q_row: np.ndarray, dt: float) -> None:
        wanted = q_row + (s.aisle_c - self.setpoint) * (self.c_air / self.ctrl_tau)
        cooled = np.minimum(np.maximum(wanted, 0.0), s.capacity_w)
        mix = (float(np.add.reduce(s.aisle_c)) / s.aisle_c.size - s.aisle_c) * self.mixing  # ndarray.mean: 5x slower
        s.aisle_c += (q_row - cooled + mix) * (dt / self.c_air)
        self.cooling_j += float(cooled.sum()) * dt
        self._pue(q_row, s)

    def _pue(self, q_row: np.ndarray, s: State) -> None:
        """PUE rises from normal to saturated as the load passes the design share of cooling capacity."""
        load = float(np.add.reduce(q_row)) / max(float(np.add.reduce(s.capacity_w)), 1.0)
        rise = min(max((load - self.pue_design) / (1.0 - self.pue_design), 0.0), 1.0)
        self.pue = self.pue_normal + (self.pue_sat - self.pue_normal) * rise
