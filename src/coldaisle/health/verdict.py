"""Judge the agent's last state the way Slurm and Nagios read it: OK 0, WARNING 1, CRITICAL 2, UNKNOWN 3.

CRITICAL means the node must take no new job (a GPU lost or not answering, an Xid NVIDIA's catalog says
needs a drain, the kernel reporting GPU errors, fewer GPUs than expected); it is what `coldaisle health`
drains for. WARNING is reported and never drained for (hot GPUs, D-state processes, firing policy
rules: the policy's own ladder drains when its author said so). UNKNOWN is a missing or stale state: we
cannot tell, so we do not act.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from coldaisle.agent.state import AgentState


class NagiosStatus(IntEnum):
    """Nagios plugin return codes (what monitoring systems and health-check wrappers read)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True, slots=True)
class Limits:
    """Thresholds of the judgement (the command's flags)."""

    max_age_s: float = 30.0  # state older than this: the agent is dead or wedged -> UNKNOWN
    hung_after_s: float = 30.0  # a GPU whose reading is older than this is not answering -> CRITICAL
    warn_headroom_c: float = 5.0  # a GPU this close to its slowdown temperature -> WARNING
    expect_gpus: int | None = None  # fewer GPUs than this -> CRITICAL (a GPU the driver no longer lists)


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason for the status, in words fit for a Slurm drain reason."""

    status: NagiosStatus
    text: str


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    """The status and every problem behind it, worst first."""

    status: NagiosStatus
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        """The first line of Nagios plugin output: `CRITICAL: gpu1 lost; ...`."""
        worst = [p.text for p in self.problems if p.status == self.status] or ["all GPUs healthy"]
        return f"{self.status.name}: {'; '.join(worst)}"

    @property
    def drain(self) -> bool:
        """CRITICAL, and only CRITICAL, takes the node out of service."""
        return self.status == NagiosStatus.CRITICAL


def unknown(why: str) -> HealthVerdict:
    """The verdict when there is no usable state."""
    return HealthVerdict(NagiosStatus.UNKNOWN, (Problem(NagiosStatus.UNKNOWN, why),))


def judge(state: AgentState, now: float, xid_severity: Mapping[int, str],
          limits: Limits | None = None) -> HealthVerdict:
    """The verdict for `state` at real time `now`; `xid_severity` maps Xid codes to critical/error/warning."""
    lim = limits or Limits()
    age = now - state.written_at
    if age > lim.max_age_s:
        return unknown(f"agent state is {age:.0f} s old (limit {lim.max_age_s:g} s): the agent is stopped or wedged")
    if state.samples == 0:
        return unknown("the agent has not sampled yet")
    problems = [*_gpu_problems(state, lim), *_xid_problems(state, xid_severity), *_host_problems(state),
                *_rule_problems(state), *_history_problems(state)]
    problems.sort(key=lambda p: -int(p.status))
    status = problems[0].status if problems else NagiosStatus.OK
    return HealthVerdict(status, tuple(problems))


def _gpu_problems(state: AgentState, lim: Limits) -> list[Problem]:
    out = []
    if lim.expect_gpus is not None and len(state.gpus) < lim.expect_gpus:
        out.append(Problem(NagiosStatus.CRITICAL, f"{len(state.gpus)} of {lim.expect_gpus} GPUs visible"))
    for g in state.gpus:
        if g.lost:
            out.append(Problem(NagiosStatus.CRITICAL, f"gpu{g.index} lost (fell off the bus or stopped answering)"))
        elif math.isfinite(g.sample_age_s) and g.sample_age_s > lim.hung_after_s:
            out.append(Problem(NagiosStatus.CRITICAL, f"gpu{g.index} has not answered for {g.sample_age_s:.0f} s"))
        elif math.isfinite(g.temperature_c) and math.isfinite(g.slowdown_c) \
                and g.slowdown_c - g.temperature_c < lim.warn_headroom_c:
            out.append(Problem(NagiosStatus.WARNING, f"gpu{g.index} at {g.temperature_c:.0f} C, slowdown at "
                                               f"{g.slowdown_c:.0f} C"))
    return out


def _xid_problems(state: AgentState, xid_severity: Mapping[int, str]) -> list[Problem]:
    out = []
    for x in state.xids:
        sev = xid_severity.get(x.xid, "error")
        status = NagiosStatus.CRITICAL if sev == "critical" else NagiosStatus.WARNING
        out.append(Problem(status, f"gpu{x.device} Xid {x.xid} {x.age_s:.0f} s ago"))
    return out


def _history_problems(state: AgentState) -> list[Problem]:
    """A lemon node (drained too often in its window) is a WARNING: in service, but due for inspection."""
    if not state.lemon:
        return []
    drains = max((n for k, n in state.history.items() if k.startswith("drain:")), default=0)
    return [Problem(NagiosStatus.WARNING, f"lemon node: drained {drains} times within 30 days (node history)")]


def _host_problems(state: AgentState) -> list[Problem]:
    out = []
    kernel = state.host.get("kernel_gpu_errors", math.nan)
    if math.isfinite(kernel) and kernel > 0:
        out.append(Problem(NagiosStatus.CRITICAL, f"kernel log reported {kernel:.0f} GPU errors recently"))
    d_state = state.host.get("d_state_processes", math.nan)
    if math.isfinite(d_state) and d_state > 0:
        out.append(Problem(NagiosStatus.WARNING, f"{d_state:.0f} processes in D state"))
    return out


def _rule_problems(state: AgentState) -> list[Problem]:
    return [Problem(NagiosStatus.WARNING, f"rule {r.name} ({r.severity}) firing on {r.firing}")
            for r in state.rules if r.firing]
