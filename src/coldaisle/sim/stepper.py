"""How long the twin's next step is: the scenario's fine step around changes, long exact steps while quiet.

Physics integrates each GPU exactly over any step *given* its power, fan and inlet air; a long step holds
those at their start values, so its error comes from how far they move within it. Every change (a fault, a
timer, a job starting, an action on the twin) brings fine steps back for `FINE_AFTER_CHANGE_S`; after that
the step doubles while the last step moved every GPU's temperature, fan and throttling and every aisle well
under its tolerance, and halves when one moved more. A step never passes the fine step in which the next
fault or timer falls (so each lands at the very instant fixed stepping would apply it), the next recording,
or the scenario's `max_step`. On every shipped scenario this stays within 0.1 C of fixed 1 s steps, with
the same events in the same order (tests/sim/test_stepper.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coldaisle.sim.twin import Twin

FINE_AFTER_CHANGE_S = 10.0  # fine steps after any change, while the transient is steepest
#: the most each may move in one long step: a GPU's temperature (C; it decides when a GPU crosses slowdown, so
#: the order of events), a fan's speed (0..1), an aisle (C), a GPU's throttling (share of power kept)
TOLERANCE = {"gpu_c": 0.2, "fan": 0.003, "air_c": 0.03, "throttle": 0.001}
GROW = 2.0  # how fast a quiet step lengthens


class Stepper:
    """Chooses step lengths for one twin; fixed fine steps when the scenario's `max_step` equals its `step`."""

    def __init__(self, twin: Twin) -> None:
        sc = twin.plan.scenario
        self.twin, self.dt = twin, sc.step
        self.max_step = max(sc.max_step, sc.step)
        self.enabled = self.max_step > self.dt
        self.h = self.dt  # the current quiet step, grown while nothing moves
        self.fine_until = 0.0
        self.last_change = 0.0  # when something outside physics last changed the twin
        self.steps = 0  # steps taken, for benchmarks and tests
        self._signature: tuple[float, ...] = ()
        twin.physics.track = self.enabled

    def changed(self, t: float) -> None:
        """Something changed at `t`: fine steps again for a while."""
        self.last_change = t
        self.fine_until = t + FINE_AFTER_CHANGE_S
        self.h = self.dt

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
        horizon = min(until, t + self.h, self._before_next_event(), self.twin.recorder.next_t)
        return max(math.floor((horizon - t) / self.dt + 1e-9), 1) * self.dt

    def _before_next_event(self) -> float:
        """The start of the fine step in which the next fault or timer is applied (fixed steps' instant)."""
        nxt = self.twin.next_event_s()
        if math.isinf(nxt):
            return nxt
        return math.ceil((nxt - 1e-9) / self.dt) * self.dt - self.dt

    def observed(self) -> None:
        """After a step: lengthen the quiet step while temperatures barely move, shorten it when they do."""
        if not self.enabled:
            return
        ph = self.twin.physics
        moved = max(ph.moved_c / TOLERANCE["gpu_c"], ph.moved_fan / TOLERANCE["fan"],
                    ph.moved_air_c / TOLERANCE["air_c"], ph.moved_throttle / TOLERANCE["throttle"])
        if moved > 1.0:
            self.h = max(self.dt, self.h / GROW)
        elif moved < 1.0 / GROW:
            self.h = min(self.h * GROW, self.max_step)
