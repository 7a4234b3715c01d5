"""Deep CPU idle states: their exit latency shows up as PCIe and collective latency spikes."""

from __future__ import annotations

from collections.abc import Iterable

from coldaisle.preflight import host
from coldaisle.preflight.context import Context
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note, Skip

MAX_EXIT_LATENCY_US = 10


class CpuIdle(Check):
    """The incident's team disabled C-states on every CPU to stop PCIe latency spikes; this finds them on."""

    id = "host.cpuidle"
    title = "CPU idle states (C-states)"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Warn when an enabled idle state's exit latency exceeds 10 us."""
        states = host.idle_states(ctx.host)
        if not states:
            raise Skip("no cpuidle information in /sys/devices/system/cpu/cpu0/cpuidle")
        deep = [s for s in states if not s.disabled and s.latency_us > MAX_EXIT_LATENCY_US]
        if deep:
            names = ", ".join(f"{s.name} ({s.latency_us} us)" for s in deep)
            yield self.finding(CheckSeverity.WARN, f"deep idle states are enabled: {names}", "cpuidle",
                               "disable them (cpupower idle-set -D 10, or intel_idle.max_cstate=1 on the kernel "
                               "command line)", states=[s.name for s in deep])
