"""How long the twin's next step is: the scenario's fine step around changes, long steps sized by their error.

Physics integrates each GPU exactly over any step *given* its power, fan and inlet air. A step longer than
the fine one is corrected to second order (sim.physics): the fans, the GPUs' conductance and any throttled
power are taken at their averages over the step instead of held, with the half-fine-step shifts fixed steps
make, so a long step gives what fixed steps give; the plain step's distance from the corrected one is the
step's error estimate. The stepper sizes the next step from it as an embedded Runge-Kutta pair does:
h * SAFETY * sqrt(tolerance / error) (the estimate grows as the square of the step), at most GROW times the
step it wanted before, never past `max_step`; physics takes a step whose estimate passes the tolerance again
shorter. The aisles, whose solution holds the GPUs' heat over a step, keep a limit on how far they may move
in one. So a thermal transient (a job stopping or starting on every GPU) takes tens of steps, not one per
tolerance's worth of movement.

A change the physics sees (a fault; a timer or an action that moves the twin's counters or any GPU's work)
starts again from the fine step, with fine steps for `FINE_AFTER_CHANGE_S`; a timer that changes nothing
physical (a launcher's teardown finding its job gone, a restart that only schedules the next) leaves the step
as it was. A step never passes the fine step in which the next fault or timer falls (so each lands at the very
instant fixed stepping would apply it), the next recording, the scenario's `max_step`, nor half the time in
which, at its present rate, a GPU would reach its slowdown temperature (one not yet latched) or its shutdown
temperature: so the GPU crosses it in a fine step, at the instant fixed steps see it. On every shipped
scenario this stays within 0.1 C of fixed 1 s steps (in practice 0.03 C), with the same events in the same
order (tests/sim/test_stepper.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from coldaisle.sim.state import Work

if TYPE_CHECKING:
    from coldaisle.sim.twin import Twin

#: fine steps after any change, while the transient is steepest: without them GPUs hovering at slowdown cross it
#: at other instants than fixed steps' (7.5 of 13,835 GPU-minutes above slowdown on the incident), with 5 s the
#: same; 10 s gives the same at 12 % more steps at fleet scale
FINE_AFTER_CHANGE_S = 5.0
#: the error a long step may make, as the corrected step's distance from the plain one: a GPU's temperature
#: (C; it decides when a GPU crosses slowdown, so the order of events) and a fan's speed (0..1); and the most an
#: aisle may move in one long step (C)
TOLERANCE = {"gpu_c": 0.05, "fan": 0.01, "air_c": 0.03}
SAFETY = 0.9  # of the step the error estimate allows
GROW = 2.0  # the most a step lengthens from one to the next


class Stepper:
    """Chooses step lengths for one twin; fixed fine steps when the scenario's `max_step` equals its `step`."""

    def __init__(self, twin: Twin) -> None:
        sc = twin.plan.scenario
        self.twin, self.dt = twin, sc.step
        self.max_step = max(sc.max_step, sc.step)
        self.enabled = self.max_step > self.dt
        self.h = self.dt  # the step the error control wants next
        self.fine_until = 0.0
        self.last_change = 0.0  # when something outside physics last changed the twin
        self.steps = 0  # steps taken, for benchmarks and tests
        self._signature: tuple[float, ...] = ()
        self._cross_s = math.inf  # the longest step before a GPU could reach a limit (inf: none near)
        self._rejected = 0  # physics' count of long steps taken again shorter, when last looked at
        self._rising: np.ndarray | None = None
        self._to_limit: np.ndarray | None = None
        card = twin.plan.card
        self._slowdown, self._shutdown = card.slowdown_c, card.shutdown_c
        twin.physics.track = self.enabled
        #: what a corrected long step's error estimate may reach before physics takes it again shorter
        self.tolerance = (TOLERANCE["gpu_c"], TOLERANCE["fan"]) if self.enabled else None

    def changed(self, t: float, fault: bool = False) -> None:
        """A fault, a timer or an action at `t`: the step starts again from the fine one if it changed what the
        physics is given (a fault always may; a timer or action, if it moved the twin's counters or any GPU's
        work), and the step is left as it was after one that changed nothing physical (a timer that finds its
        job already gone, one that only schedules the next)."""
        self.last_change = t
        signature = self.twin.signature()
        work = self.twin.physics.work_seen
        if fault or signature != self._signature or work is None or not np.array_equal(self.twin.state.work, work):
            self.fine_until = t + FINE_AFTER_CHANGE_S
            self.h = self.dt
        self._signature = signature

    def length(self, t: float, until: float) -> float:
        """The next step from `t`, ending at or before `until` (always at least one fine step)."""
        self.steps += 1
        if not self.enabled:
            return self.dt
        signature = self.twin.signature()
        if signature != self._signature:  # an action between steps (a cap, a signal, a power cycle)
            self._signature = signature
            self.changed(t)
        if t < self.fine_until - 1e-9 or self.twin.kv.active:
            return self.dt
        horizon = min(until, t + self.h, t + self._cross_s, self._before_next_event(), self.twin.recorder.next_t)
        return max(math.floor((horizon - t) / self.dt + 1e-9), 1) * self.dt

    def _before_next_event(self) -> float:
        """The start of the fine step in which the next fault or timer is applied (fixed steps' instant)."""
        nxt = self.twin.next_event_s()
        if math.isinf(nxt):
            return nxt
        return math.ceil((nxt - 1e-9) / self.dt) * self.dt - self.dt

    def observed(self, h: float) -> None:
        """After a step of `h`: size the next from the step's error estimate, and keep clear of the limits."""
        if not self.enabled:
            return
        ph = self.twin.physics
        rejected, self._rejected = ph.rejected != self._rejected, ph.rejected
        if ph.corrected:
            err = max(ph.err_c / TOLERANCE["gpu_c"], ph.err_fan / TOLERANCE["fan"])
            grow = SAFETY / math.sqrt(err) if err > 0.0 else math.inf
            if ph.moved_air_c > 0.0:  # the air's error grows with the step itself
                grow = min(grow, SAFETY * TOLERANCE["air_c"] / ph.moved_air_c)
            self.h = max(self.dt, min(h * grow, self.h * GROW, self.max_step))
        else:  # a fine step (fixed steps' own) tells nothing: the wanted step stays, but at least the next one up
            self.h = min(max(h if rejected else self.h, self.dt * GROW), self.max_step)
        self._cross_s = self._to_limits(h)

    def _to_limits(self, h: float) -> float:
        """Half the time in which, at the rate of the last step `h`, the first GPU would reach its slowdown
        temperature (not yet latched) or its shutdown temperature (inf when none could within two steps)."""
        s, ph = self.twin.state, self.twin.physics
        rate = max(ph.rise_max, 0.0) / h  # the fastest any GPU's temperature rose
        if ph.t_max + 2.0 * rate * max(self.h, h) + 1.0 < self._slowdown:
            return math.inf
        if self._rising is None:  # per-GPU scratch, as physics keeps its own
            self._rising, self._to_limit = np.empty(s.temp_c.size), np.empty(s.temp_c.size)
        rising = np.maximum(ph.rise, 0.0, out=self._rising)
        rising /= h
        near = math.inf
        for limit, watched in ((self._slowdown, ~s.slowdown_latched), (self._shutdown, s.work != Work.OFF)):
            to_limit = np.subtract(limit, s.temp_c, out=self._to_limit)
            with np.errstate(divide="ignore", invalid="ignore"):
                to_limit /= rising
            below = np.logical_and(watched, s.temp_c < limit, out=watched)
            near = min(near, float(np.min(to_limit, where=below, initial=math.inf)))
        return max(near / 2.0, self.dt)
