"""GPU health through the Backend: lost GPUs, ECC errors, pending row remaps / retired pages, persistence mode,
active throttling, lowered power limits, count."""

from __future__ import annotations

import math
from collections.abc import Iterable

from coldaisle.preflight.context import Context
from coldaisle.preflight.gpus import frame_for
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note
from coldaisle.telemetry.frame import DeviceInfo, Frame
from coldaisle.telemetry.frame import ThrottleReason as T

BAD_THROTTLE = T.HW_SLOWDOWN | T.HW_THERMAL_SLOWDOWN | T.SW_THERMAL_SLOWDOWN | T.HW_POWER_BRAKE_SLOWDOWN


class GpuHealth(Check):
    """What makes a GPU a bad place to start a multi-day job, read from one Frame."""

    id = "gpu.health"
    title = "GPU health: lost, ECC, throttling, power limit, count"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """One finding per device and problem, and one for a count that differs from --expect-gpus."""
        devices, frame = frame_for(ctx)
        expected = ctx.options.expected_gpus
        if expected is not None and len(devices) != expected:
            yield self.finding(CheckSeverity.FAIL, f"{len(devices)} GPUs visible, {expected} expected", "GPU count",
                               "find the missing GPU (nvidia-smi -L, dmesg for Xid 79) or drain the node")
        for i, dev in enumerate(devices):
            yield from self._device(i, dev, frame)

    def _memory_repair(self, i: int, subject: str, f: Frame) -> Iterable[Finding]:
        """Row remapping (Ampere and newer) and page retirement (older): both need a reset to take effect."""
        if f.remapped_rows_failure[i] > 0:
            yield self.finding(CheckSeverity.FAIL, "a row remapping has failed: the GPU cannot repair its memory any "
                               "more", subject, "drain the node and have the GPU serviced (RMA)")
        if f.remapped_rows_pending[i] > 0 or f.retired_pages_pending[i] > 0:
            what = "row remapping" if f.remapped_rows_pending[i] > 0 else "page retirement"
            yield self.finding(CheckSeverity.FAIL, f"a {what} is pending: it takes effect only after a GPU reset, and "
                               "until then the faulty memory can fail the job", subject,
                               f"drain the node, then nvidia-smi -r -i {f.devices[i].index} (or reboot) before "
                               "the next job")

    def _device(self, i: int, d: DeviceInfo, f: Frame) -> Iterable[Finding]:
        subject = f"{d.node} GPU {d.index} ({d.uuid})"
        if f.lost[i]:
            yield self.finding(CheckSeverity.FAIL, "the GPU is lost (fell off the bus or stopped answering)", subject,
                               "drain the node and reset or replace the GPU")
            return
        unc, cor = float(f.ecc_uncorrected_total[i]), float(f.ecc_corrected_total[i])
        if math.isfinite(unc) and unc > 0:
            yield self.finding(CheckSeverity.FAIL, f"{unc:.0f} uncorrected ECC errors since the driver loaded", subject,
                               "drain the node; reset the GPU and check for pending row remaps / retired pages")
        elif math.isfinite(cor) and cor > 0:
            yield self.finding(CheckSeverity.INFO, f"{cor:.0f} corrected ECC errors since the driver loaded", subject,
                               "watch the trend; a growing count precedes row remapping")
        yield from self._memory_repair(i, subject, f)
        if d.persistence_mode is False:
            yield self.finding(CheckSeverity.WARN, "persistence mode is off: the driver may unload between jobs and "
                               "every job start pays for initialising the GPU (and loses its settings)", subject,
                               "run nvidia-persistenced (or nvidia-smi -pm 1 on older drivers)")
        reasons = T(int(f.throttle_reasons[i]) & int(BAD_THROTTLE))
        if reasons:
            names = ", ".join(r.name.lower() for r in T if r and r in reasons and r.name)
            yield self.finding(CheckSeverity.FAIL, f"clocks are being throttled now ({names})", subject,
                               "find the cause (temperature, power brake, PSU) before loading the GPU")
        limit, default = float(f.power_limit_w[i]), d.power_default_limit_w
        if math.isfinite(limit) and math.isfinite(default) and limit < default - 1:
            yield self.finding(CheckSeverity.WARN, f"power limit {limit:.0f} W is below the default {default:.0f} W "
                               "(a cap left in place?)", subject,
                               f"nvidia-smi -i {d.index} -pl {default:.0f} if the cap is not deliberate")
