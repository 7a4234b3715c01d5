"""Power, thermal and room physics for every GPU at once, one vectorised step at a time.

GPU: a thermal mass C heated by its power P and cooled toward its inlet air through a
fan-dependent resistance R, integrated exactly (T -> T_inlet + P*R with time constant R*C),
so any step length is stable. Rack inlet: its row's cold aisle plus a recirculation rise
per kW of rack load. Row air: a thermal mass heated by what the GPUs and hosts shed,
cooled by CRAC capacity (a controller toward the setpoint, capped at capacity) and mixed
with the other rows, integrated explicitly in sub-steps within its stability limit, so the
twin's long quiet steps (sim.stepper) stay stable too. Every joule is booked: drawn =
removed by cooling + stored.

A step of the scenario's `step` is computed as fixed steps always computed it, to the bit. A longer one (the
adaptive stepper's) is corrected to second order, toward what fixed steps give (`_corrected`), and its error
estimated; with a tolerance it is taken again shorter where the estimate passes it. A long step from rest
(nothing moved in the last one, nothing changed since) only books its energy.
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
        self._host_key = -1
        self._host_rack = np.zeros(self.n_racks)
        self._host_row = np.zeros(self.n_rows)
        # per-GPU scratch: a step's temporaries live here, not in fresh arrays (16,384 float64 are 128 KiB, which
        # glibc serves with mmap and returns with munmap: at fleet size the page faults cost more than the math)
        self._scratch = tuple(np.zeros(lay.n_gpus) for _ in range(8))
        # racks and rows hold consecutive GPUs, as many each (sim.topology): a rack's value reaches its GPUs as a
        # broadcast copy, and a long step sums per rack and row pairwise by segment (np.add.reduceat), 10x faster
        # than np.bincount, which fine steps keep so that they give fixed steps' sums to the bit
        n = lay.n_gpus
        self._per_rack = n // self.n_racks if n % self.n_racks == 0 and np.array_equal(
            self.gpu_rack, np.arange(n) // max(n // self.n_racks, 1)) else 0
        self._per_row = n // self.n_rows if n % self.n_rows == 0 and np.array_equal(
            self.gpu_row, np.arange(n) // max(n // self.n_rows, 1)) else 0
        self._rack_starts = np.arange(0, n, self._per_rack) if self._per_rack else None
        self._row_starts = np.arange(0, n, self._per_row) if self._per_row else None
        self._init_adaptive(plan)

    def _init_adaptive(self, plan: Plan) -> None:
        """What the adaptive stepper's long steps keep between steps."""
        n = plan.layout.n_gpus
        self.fine_s = plan.scenario.step
        self.track = False  # adaptive steps: correct long steps and estimate their error (the stepper asks)
        # when tracked: the most a GPU's temperature rose (C) and an aisle's moved in the last step
        self.rise_max = self.moved_air_c = 0.0
        self.rise = np.zeros(n)  # each GPU's temperature change over the last step
        self.t0_max = self.t_max = -math.inf  # the hottest GPU at the last step's start and end
        self.it_w = 0.0  # IT power (GPUs and hosts) over the last step
        self._unthrottled = False  # s.throttle is 1 everywhere
        # a corrected (long) step's error estimate: the most a GPU's temperature (C) and a fan's speed (0..1) of
        # the plain first-order step differ from the corrected one (0 after a fine step: fixed steps' own)
        self.err_c = self.err_fan = 0.0
        self.corrected = False  # the last step was corrected
        self.rejected = 0  # corrected steps taken again shorter
        self._throttled = False  # the last corrected step's power was averaged over throttling
        self._rack_kw = np.zeros(self.n_racks)  # ... and its racks' load, kW
        self._fan_kept = False  # the last corrected step left every fan where it was
        self._rest = False  # the twin is at rest (`_come_to_rest`)
        self.rest_steps = 0  # long steps taken at rest
        self._rest_inputs: tuple[object, ...] = ()
        self._rest_temp, self._rest_fan = np.zeros(n), np.zeros(n)
        self._rest_cooling_w = self._rest_spin_w = 0.0

    def stored_j(self, s: State) -> float:
        """Heat held in GPU and air thermal masses, relative to 0 C (for the energy ledger)."""
        return float(self.C * s.temp_c.sum() + self.c_air * s.aisle_c.sum())

    def step(self, s: State, dt: float, tolerance: tuple[float, float] | None = None) -> float:
        """Advance power, fans, GPU temperatures and room air by `dt` seconds; returns the step taken. With a
        `tolerance` (a GPU's temperature, C; a fan's speed), a corrected long step whose error estimate passes it
        is taken again shorter (a whole number of fine steps), as an adaptive integrator rejects a step; and a
        long step from rest (below) only books its energy."""
        long = self.track and dt > self.fine_s + 1e-9
        if long and tolerance is not None and self._resting(s):
            return self._rest_step(s, dt)
        self._rest = False
        self._power(s)
        host_row = self._host_by_row(s)
        inlet = self._inlet(s, long)
        if long:
            dt = self._long(s, inlet, dt, tolerance)
        if long and dt > self.fine_s + 1e-9:
            q_row = self._commit(s, dt)
        else:
            if long:  # taken again as a fine step: as fixed steps take it
                inlet = self._inlet(s)
            q_row = self._gpus(s, inlet, dt)
        q_row += host_row
        held = self._room(s, q_row, dt)
        it = self.it_w = float(s.power_w.sum()) + self.host_power_w
        s.energy_j += np.multiply(s.power_w, dt, out=self._scratch[0])
        self.it_j += it * dt
        self.facility_j += it * self.pue * dt
        spin = 0.0
        if self._spinning is not None:  # a float mask: np.dot over a bool one takes numpy's slow generic loop
            if self.track:  # adaptive steps: numpy's own sum, not BLAS's (OpenBLAS splits a dot of more than 10,000
                # across threads, and waking them costs hundreds of microseconds on a busy machine)
                spin = float(np.add.reduce(np.multiply(s.power_w, self._spinning, out=self._scratch[0])))
            else:  # fixed steps: as they always summed it, to the bit
                spin = float(np.dot(s.power_w, self._spinning))
            self.spin_j += spin * dt
        np.maximum(s.peak_c, s.temp_c, out=s.peak_c)
        if long and self.corrected and held and self._unthrottled and self._fan_kept and self.rise_max == 0.0 \
                and float(self.rise.min()) == 0.0:
            self._come_to_rest(s, q_row, spin)
        return dt

    # -- rest: a long step that moved nothing, from inputs that have not changed since, moves nothing either --------
    def _come_to_rest(self, s: State, q_row: np.ndarray, spin_w: float) -> None:
        """The last long step left every GPU's temperature and fan, and every aisle (at the setpoint), exactly as
        it found them, with no GPU throttling: the twin is at rest. Remember what it was given and drew."""
        self._rest = True
        self._rest_inputs = self._inputs(s)
        self._rest_temp[:] = s.temp_c
        self._rest_fan[:] = s.fan
        self._rest_cooling_w = float(np.add.reduce(q_row))
        self._rest_spin_w = spin_w

    def _inputs(self, s: State) -> tuple[object, ...]:
        """The counters that move with what the physics is given: demand, limits, hosts up, fans and heat paths
        (a fault or a spare), cooling capacity (a fault, in a fine step, which ends any rest)."""
        return (s.demand_version, s.versions.get("limit_w", 0), s.nodes_version, s.any_fan_failed, s.any_degraded)

    def _resting(self, s: State) -> bool:
        """At rest, and given what it was given then: every GPU's work, temperature and fan as rest left them."""
        return self._rest and self._inputs(s) == self._rest_inputs and bool((s.work == self._work).all()) and bool(
            (s.temp_c == self._rest_temp).all()) and bool((s.fan == self._rest_fan).all())

    def _rest_step(self, s: State, dt: float) -> float:
        """A long step at rest: what a corrected one gives there (every temperature, fan, aisle, power and the
        errors as they are), without computing it: only the energy books move."""
        self.rest_steps += 1
        s.energy_j += np.multiply(s.power_w, dt, out=self._scratch[0])
        self.it_j += self.it_w * dt
        self.facility_j += self.it_w * self.pue * dt
        self.cooling_j += self._rest_cooling_w * dt
        if self._spinning is not None:
            self.spin_j += self._rest_spin_w * dt
        self.corrected, self.err_c, self.err_fan, self.rise_max, self.moved_air_c = True, 0.0, 0.0, 0.0, 0.0
        self.t0_max = self.t_max
        return dt

    @property
    def work_seen(self) -> np.ndarray | None:
        """What each GPU was doing when the power was last computed (None: not yet)."""
        return self._work

    def _power(self, s: State) -> None:
        if self._work is None or s.demand_version != self._demand_version or not (s.work == self._work).all():
            self._work, self._demand_version = s.work.copy(), s.demand_version
            self._demand = s.demand[s.work, self.idx]  # a 2-D gather: redone only when a GPU changes state
            spinning = s.work == _SPIN
            self._spinning = spinning.astype(float) if spinning.any() else None
        demand = self._demand
        t = s.throttle
        self.t0_max = float(s.temp_c.max())
        if self.t0_max <= self.slowdown:  # no GPU throttles: the share kept is exactly 1 everywhere
            if not self._unthrottled:
                t.fill(1.0)
                self._unthrottled = True
            np.minimum(demand, s.limit_w, out=s.power_w)
            return
        self._unthrottled = False
        np.subtract(s.temp_c, self.slowdown, out=t)
        t *= -self.slope
        t += 1.0
        np.minimum(t, 1.0, out=t)
        np.maximum(t, self.floor, out=t)
        np.minimum(demand, s.limit_w, out=s.power_w)
        s.power_w *= t

    def _host_by_row(self, s: State) -> np.ndarray:
        key = s.nodes_version
        if key != self._host_key:
            up = s.node_up.astype(float) * self.host_w
            self.host_power_w = float(up.sum())
            self._host_rack = np.bincount(self.node_rack, weights=up, minlength=self.n_racks)
            self._host_row = np.bincount(self.node_row, weights=up, minlength=self.n_rows)
            self._host_key = key
        return self._host_row

    def _inlet(self, s: State, long: bool = False) -> np.ndarray:
        rack_w = self._by_rack(s.power_w, long)
        rack_w += self._host_rack
        np.multiply(rack_w, 1e-3, out=s.rack_kw)
        return self._to_gpus(s.aisle_c[self.rack_row] + self.recirc * s.rack_kw, self._scratch[3])

    def _by_rack(self, w: np.ndarray, long: bool) -> np.ndarray:
        """Per-rack sums of `w` (pairwise in a long step, in GPU order otherwise)."""
        if long and self._per_rack:
            return np.add.reduceat(w, self._rack_starts)
        return np.bincount(self.gpu_rack, weights=w, minlength=self.n_racks)

    def _by_row(self, w: np.ndarray, long: bool) -> np.ndarray:
        """Per-row sums of `w` (pairwise in a long step, in GPU order otherwise)."""
        if long and self._per_row:
            return np.add.reduceat(w, self._row_starts)
        return np.bincount(self.gpu_row, weights=w, minlength=self.n_rows)

    def _to_gpus(self, rack_values: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Each GPU's rack's value, into `out`."""
        if self._per_rack:
            out.reshape(self.n_racks, self._per_rack)[:] = rack_values[:, None]
            return out
        return np.take(rack_values, self.gpu_rack, out=out)

    def _target(self, s: State, temp: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Each fan's curve target at GPU temperatures `temp` (a failed fan's: 0)."""
        target = np.subtract(temp, self.fan_lo, out=out)
        target *= 1.0 / self.fan_span
        np.minimum(target, 1.0, out=target)
        np.maximum(target, self.fan_min, out=target)
        if s.any_fan_failed:
            target[s.fan_failed] = 0.0
        return target

    def _conductance(self, s: State, fan: np.ndarray, out: np.ndarray) -> np.ndarray:
        g = np.multiply(fan, self.g_full - self.g_still, out=out)
        g += self.g_still
        if s.any_degraded:
            g *= s.heat_path
        return g

    def _relax(self, temp: np.ndarray, power: np.ndarray, inlet: np.ndarray, g: np.ndarray, dt: float,
               out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
        """Each GPU's exact exponential from `temp` over `dt` at conductance `g`, `power` and `inlet` held (into
        `out`; `g` is overwritten)."""
        t_ss = np.divide(power, g, out=tmp)
        t_ss += inlet
        decay = np.exp(np.multiply(g, -dt / self.C, out=g), out=g)
        new = np.subtract(temp, t_ss, out=out)
        new *= decay
        new += t_ss
        return new

    def _gpus(self, s: State, inlet: np.ndarray, dt: float) -> np.ndarray:
        """Fans toward their curve, then each GPU's exact exponential over `dt`; the heat each row's air gets.
        (`inlet` is scratch[3]; the other scratch arrays hold, in turn, the values named below.)"""
        a, b, c = self._scratch[:3]
        target = self._target(s, s.temp_c, out=a)
        target -= s.fan
        target *= 1.0 - math.exp(-dt / self.fan_tau)
        if self.track:
            self.corrected, self.err_c, self.err_fan = False, 0.0, 0.0
        s.fan += target
        g = self._conductance(s, s.fan, out=a)
        new = self._relax(s.temp_c, s.power_w, inlet, g, dt, out=c, tmp=b)
        return self._settle_step(s, new, dt, b)

    def _long(self, s: State, inlet: np.ndarray, dt: float, tolerance: tuple[float, float] | None) -> float:
        """Try a corrected step of `dt`, shorter while its error estimate passes `tolerance`; the step it took
        (a fine one: the caller takes it plainly)."""
        while True:
            self._corrected(s, inlet, dt)
            if tolerance is None:
                return dt
            err = max(self.err_c / tolerance[0], self.err_fan / tolerance[1])
            if err <= 1.0:
                return dt
            self.rejected += 1
            shorter = dt * max(0.2, 0.9 / math.sqrt(err))
            dt = max(math.floor(shorter / self.fine_s + 1e-9), 1) * self.fine_s
            if dt <= self.fine_s + 1e-9:
                return dt

    def _corrected(self, s: State, inlet: np.ndarray, dt: float) -> None:
        """A long step, into scratch (`_commit` applies it). The plain step (each fan to its end value toward the
        start's target, then each GPU relaxing at that end fan) predicts each temperature; the corrector then
        solves each fan exactly for a target moving linearly from the start's to the predicted end's, and relaxes
        each GPU at its conductance averaged over the step (throttling: at its power averaged too). What it
        solves is what fixed fine steps follow to second order in the fine step `fine_s` (their modified
        equation): within a fine step a fan moves toward the target of the step's start, and its GPU then relaxes
        at the fan of the step's end, so a fan's target lags its GPU by half a fine step and a GPU's conductance
        (and its power, held at the start's throttling) leads or lags by as much; the corrector keeps those
        half-step shifts, and so stays with fixed steps instead of drifting from them by the fine step's own
        error. The predictor's distance from the corrected values is the error estimate (err_c, err_fan).
        Scratch: d the new temperatures, c the new fans, e the step's power."""
        a, b, c, _, d, e, f, g = self._scratch
        decay_f = math.exp(-dt / self.fan_tau)
        k = 1.0 - decay_f
        r = self.fan_tau / dt
        sh = self.fine_s / (2.0 * dt)  # half a fine step, as a share of this step
        tgt0 = self._target(s, s.temp_c, out=d)
        f0m = np.subtract(s.fan, tgt0, out=b)  # the fan's distance from its target at the start
        f1p = np.multiply(f0m, decay_f, out=c)
        f1p += tgt0
        t1p = self._relax(s.temp_c, s.power_w, inlet, self._conductance(s, f1p, out=a), dt, out=f, tmp=e)
        # the fan toward a target moving by `dtg` over the step, from half a fine step before its start: its end
        # value f1p + (1 - (r + sh) k) dtg; the fan its GPU sees, shifted half a fine step the other way,
        # averaged over the step: tgt0 + (r - sh) k f0m + (1/2 - r + (r^2 - sh^2) k) dtg
        dtg = self._target(s, t1p, out=a)
        dtg -= tgt0
        self.err_fan = abs(1.0 - (r + sh) * k) * max(float(dtg.max()), -float(dtg.min()))
        f0m *= (r - sh) * k
        f0m += tgt0
        f0m += np.multiply(dtg, 0.5 - r + (r * r - sh * sh) * k, out=e)
        fan_seen = f0m
        dtg *= 1.0 - (r + sh) * k
        f1p += dtg  # c: the fan at the step's end
        power, self._throttled = s.power_w, max(self.t0_max, float(t1p.max())) > self.slowdown
        if self._throttled:  # the power at the step's ends, averaged half a fine step early
            thr1 = np.subtract(t1p, self.slowdown, out=a)
            thr1 *= -self.slope
            thr1 += 1.0
            np.minimum(thr1, 1.0, out=thr1)
            np.maximum(thr1, self.floor, out=thr1)
            power = np.minimum(self._demand, s.limit_w, out=e)
            thr1 *= 0.5 - sh
            power *= thr1
            power += np.multiply(s.power_w, 0.5 + sh, out=a)
            rack_kw = self._by_rack(power, True)
            rack_kw += self._host_rack
            rack_kw *= 1e-3
            inlet = self._to_gpus(s.aisle_c[self.rack_row] + self.recirc * rack_kw, a)
            self._rack_kw = rack_kw
        new = self._relax(s.temp_c, power, inlet, self._conductance(s, fan_seen, out=b), dt, out=d, tmp=g)
        diff = np.subtract(new, t1p, out=b)
        self.err_c = max(float(diff.max()), -float(diff.min()))
        self.corrected = True

    def _commit(self, s: State, dt: float) -> np.ndarray:
        """Apply the corrected step `_corrected` left in scratch."""
        _, b, c, _, d, e, _, _ = self._scratch
        self._fan_kept = bool((c == s.fan).all())
        s.fan[:] = c
        if self._throttled:
            self._unthrottled = False
            s.power_w[:] = e
            s.rack_kw[:] = self._rack_kw
            np.divide(e, np.minimum(self._demand, s.limit_w, out=b), out=s.throttle, where=e > 0.0)
        return self._settle_step(s, d, dt, b)

    def _settle_step(self, s: State, new: np.ndarray, dt: float, tmp: np.ndarray) -> np.ndarray:
        """The GPUs reach `new`; the heat each row's air got over the step (drawn less stored)."""
        rise = np.subtract(new, s.temp_c, out=self.rise)
        if self.track:
            self.rise_max = float(rise.max())
        heat_out = np.subtract(s.power_w, np.multiply(rise, self.C / dt, out=tmp), out=tmp)
        s.temp_c[:] = new
        self.t_max = float(new.max())
        return self._by_row(heat_out, self.corrected)

    def _room(self, s: State, q_row: np.ndarray, dt: float) -> bool:
        """The room's air over `dt`; True where every aisle stayed at the setpoint (`_air_held`)."""
        # a step longer than the air's stability limit (a long quiet step) holds the GPUs' heat: the air is solved
        # exactly while no row's cooling saturates, and sub-stepped within its stability limit otherwise
        if self.track and dt > self.room_limit_s + 1e-9 and self._air_held(s, q_row, dt):
            self.moved_air_c = 0.0
            return True
        before = s.aisle_c.copy() if self.track else None
        if dt <= self.room_limit_s + 1e-9:
            self._air(s, q_row, dt)
        elif not self._air_exact(s, q_row, dt):
            n = math.ceil(dt / self.room_limit_s - 1e-9)
            for _ in range(n):
                self._air(s, q_row, dt / n)
        if before is not None:
            self.moved_air_c = float(np.abs(s.aisle_c - before).max())
        return False

    def _air_held(self, s: State, q_row: np.ndarray, dt: float) -> bool:
        """`_air_exact` where every row is at the setpoint (a room whose cooling keeps up): the rows stay there,
        as long as no row's cooling would go below idle or past its capacity. False (nothing changed) otherwise."""
        a = s.aisle_c
        if float(a.min()) != self.setpoint or float(a.max()) != self.setpoint:
            return False
        if float(q_row.min()) < 0.0 or bool((q_row > s.capacity_w).any()):
            return False
        self.cooling_j += float(np.add.reduce(q_row)) * dt
        self._pue(q_row, s)
        return True

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
