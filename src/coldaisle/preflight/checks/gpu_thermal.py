"""Temperature headroom to the slowdown threshold, before a job adds hundreds of watts per GPU."""

from __future__ import annotations

import math
from collections.abc import Iterable

from coldaisle.preflight.context import Context
from coldaisle.preflight.gpus import frame_for
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note


class ThermalHeadroom(Check):
    """Nobody checked GPU temperature before the incident's launch; a hot GPU only gets hotter under load."""

    id = "gpu.thermal"
    title = "GPU temperature headroom to slowdown"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Fail under --min-headroom kelvin to slowdown, warn under --warn-headroom."""
        devices, frame = frame_for(ctx)
        fail_k, warn_k = ctx.options.min_headroom_c, ctx.options.warn_headroom_c
        for i, dev in enumerate(devices):
            temp, slow = float(frame.temperature_c[i]), dev.slowdown_temperature_c
            if frame.lost[i] or not math.isfinite(temp) or not math.isfinite(slow):
                continue  # a lost GPU is gpu.health's finding; an unknown threshold cannot be judged
            headroom = slow - temp
            subject = f"{dev.node} GPU {dev.index} ({dev.name}, {dev.uuid})"
            if headroom < warn_k:
                sev = CheckSeverity.FAIL if headroom < fail_k else CheckSeverity.WARN
                yield self.finding(sev, f"{temp:.0f} C, {headroom:.0f} K below its {slow:.0f} C slowdown "
                                   f"threshold (needs {fail_k:g} K to pass, {warn_k:g} K to be clean)", subject,
                                   "check airflow, fans and inlet temperature before starting the job",
                                   temperature_c=temp, slowdown_c=slow, headroom_k=headroom)
