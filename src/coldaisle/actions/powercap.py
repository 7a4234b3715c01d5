"""Power cap: lower a GPU's power limit through the Backend seam, and put the old limit back on clear.

The same class drives NVML on a real node and the twin in the simulator: the Backend is the seam,
so there is no separate simulated executor to drift from the real one.
"""

from __future__ import annotations

import logging
import math

from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status
from coldaisle.telemetry.backend import Backend
from coldaisle.telemetry.clock import Clock, RealClock
from coldaisle.telemetry.frame import DeviceInfo, Frame

log = logging.getLogger(__name__)


class PowerCapper:
    """Applies `params["watts"]` to `target.device` (a Frame column of the backend); restores on clear."""

    kind = ActionKind.POWER_CAP

    def __init__(self, backend: Backend, *, clock: Clock | None = None) -> None:
        self.backend = backend
        self.clock = clock or RealClock()
        self.saved: dict[int, float] = {}  # device -> the limit before our first cap
        self.caps: dict[int, dict[str, float]] = {}  # device -> rule -> watts; the lowest one is enforced
        self._latest: dict[int, float] = {}
        self._frame: Frame | None = None

    def observe(self, frame: Frame) -> None:
        """Remember the latest Frame: its enforced limits are what a first cap will later restore.

        O(1) on the sampling path; the limit of one device is read only when that device is capped."""
        self._frame = frame

    def _observed(self, i: int) -> float | None:
        f = self._frame
        if f is None or i >= len(f):
            return None
        watts = float(f.power_limit_w[i])
        return watts if math.isfinite(watts) else None

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Cap, or with `decision.restore` uncap, one device; never raises."""
        try:
            dev = self._device(decision)
            if isinstance(dev, str):
                status, detail = Status.FAILED, dev
            elif decision.restore:
                status, detail = self._restore(decision, dev, dry_run)
            else:
                status, detail = self._cap(decision, dev, dry_run)
        except Exception as exc:  # PowerLimitError, a driver error: an Outcome, not a crash
            log.warning("power cap %s failed: %s", decision.target.label(), exc)
            status, detail = Status.FAILED, f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
        return Outcome(decision, status, detail, self.clock.time())

    def _device(self, decision: Decision) -> tuple[int, DeviceInfo] | str:
        """(column, DeviceInfo) of the target, or why the target does not name one of this backend's GPUs."""
        t, devices = decision.target, self.backend.devices()
        if t.device is None or not 0 <= t.device < len(devices):
            return f"{t.label()}: no such device on this backend ({len(devices)} devices)"
        info = devices[t.device]
        if info.node != t.node or (t.uuid is not None and info.uuid != t.uuid):
            return f"{t.label()}: device {t.device} of this backend is {info.node}/{info.uuid}"
        return t.device, info

    def _cap(self, decision: Decision, dev: tuple[int, DeviceInfo], dry_run: bool) -> tuple[Status, str]:
        i, info = dev
        where = f"{info.node}/gpu{info.index}"
        if decision.params.get("watts") is None:
            return Status.FAILED, f"{where}: the decision names no watts"
        asked = float(decision.params["watts"])
        before = self.saved.get(i, self._latest.get(i, self._observed(i) or info.power_default_limit_w))
        others = [w for rule, w in self.caps.get(i, {}).items() if rule != decision.rule]
        watts = min([asked, *others])  # several rules may cap one GPU: the lowest cap holds
        if dry_run:
            return Status.DRY_RUN, f"would have capped {where} from {before:g} W to {watts:g} W"
        self.backend.set_power_limit(i, watts)
        self.saved.setdefault(i, before)
        self.caps.setdefault(i, {})[decision.rule] = asked
        self._latest[i] = watts
        held = f"; {watts:g} W held by another rule" if watts < asked else ""
        return Status.DONE, f"capped {where} to {asked:g} W (was {before:g} W; restored when the rule clears){held}"

    def _restore(self, decision: Decision, dev: tuple[int, DeviceInfo], dry_run: bool) -> tuple[Status, str]:
        i, info = dev
        where = f"{info.node}/gpu{info.index}"
        if i not in self.saved:
            return Status.DONE, f"{where}: no cap of ours to restore; limit left as it is"
        caps = {r: w for r, w in self.caps.get(i, {}).items() if r != decision.rule}
        if caps:  # another rule still holds a cap: keep the lowest of those
            watts = min(caps.values())
            if dry_run:
                return Status.DRY_RUN, f"would have lifted {decision.rule}'s cap on {where}, keeping {watts:g} W"
            self.backend.set_power_limit(i, watts)
            self.caps[i] = caps
            self._latest[i] = watts
            holder = min(caps, key=lambda r: caps[r])
            return Status.DONE, f"lifted {decision.rule}'s cap on {where}; {watts:g} W still held by {holder}"
        before = self.saved[i]
        if dry_run:
            return Status.DRY_RUN, f"would have restored {where} to {before:g} W"
        self.backend.set_power_limit(i, before)
        del self.saved[i]
        self.caps.pop(i, None)
        self._latest[i] = before
        return Status.DONE, f"restored {where} to {before:g} W"
