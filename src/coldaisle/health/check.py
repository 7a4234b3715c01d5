"""`coldaisle health`: the agent's last state -> a Nagios verdict -> (as Slurm's HealthCheckProgram) a drain.

Reads one small file under a timeout and makes a few short `scontrol` calls, so it answers in about a second
whatever the GPUs are doing (Slurm kills a health check after 60 s). A drain goes past the agent's fleet
breaker (the share and window its policy set, from the state file): health checks run on every node at
once, and a fault that looks the same everywhere must not drain the fleet; a drain waits 2 s and re-reads
the fleet before it stands.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from coldaisle.actions.drain import SlurmDrain
from coldaisle.actions.fleet import FleetBreaker
from coldaisle.actions.interface import Status
from coldaisle.agent.state import StateUnreadable, read_state
from coldaisle.health.slurm import NodeAction, drain_for_health, node_name, resume_if_ours
from coldaisle.health.verdict import HealthVerdict, Limits, judge, unknown
from coldaisle.telemetry.clock import RealClock

DEFAULT_STATE = Path("/var/lib/coldaisle/state.json")


@dataclass
class HealthOptions:
    """Everything `coldaisle health` takes."""

    state: Path = DEFAULT_STATE
    limits: Limits = field(default_factory=Limits)
    slurm: bool = False  # drain on CRITICAL, resume our own drain on OK
    node: str | None = None
    dry_run: bool = False
    scontrol: str = "scontrol"
    read_timeout_s: float = 5.0
    settle_s: float = 2.0  # the fleet breaker's wait for health checks draining at the same moment on other nodes


@dataclass(frozen=True, slots=True)
class HealthResult:
    """The verdict and what was done to the node about it."""

    verdict: HealthVerdict
    node: str | None = None
    action: NodeAction | None = None

    history: Mapping[str, int] = field(default_factory=dict)  # the node's fault history counts, from the state

    def lines(self) -> list[str]:
        """Nagios plugin output: the summary line, one line per problem, the node's history, the node action."""
        out = [self.verdict.summary()]
        out += [f"{p.status.name}: {p.text}" for p in self.verdict.problems[1:]]
        if self.history:
            out.append("history: " + ", ".join(f"{k}={n}" for k, n in sorted(self.history.items())))
        if self.action is not None:
            out.append(f"slurm {self.node}: {self.action.status}: {self.action.detail}")
        return out


def xid_severities() -> dict[int, str]:
    """Xid code -> critical/error/warning from the triage catalog (NVIDIA's Xid catalog, cited there)."""
    from coldaisle.triage.catalog import load_catalog

    return {code: spec.severity for code, spec in load_catalog().xids.items()}


def run_health(o: HealthOptions, *, now: Callable[[], float] = time.time,
               drain: SlurmDrain | None = None) -> HealthResult:
    """Judge the state and, with `slurm`, drain on CRITICAL or resume our own drain on OK."""
    history: Mapping[str, int] = {}
    state = None
    try:
        state = read_state(o.state, o.read_timeout_s)
        verdict, history = judge(state, now(), xid_severities(), o.limits), state.history
    except StateUnreadable as exc:
        verdict = unknown(exc.message)
    if not o.slurm:
        return HealthResult(verdict, history=history)
    node = node_name(o.node)
    drain = drain or SlurmDrain(o.scontrol)
    action: NodeAction | None = None
    if verdict.drain:
        reason = "; ".join(p.text for p in verdict.problems if p.status == verdict.status)
        if state is not None and state.breaker_open:
            action = NodeAction(Status.REFUSED, f"{node} not drained: the agent's fleet breaker is open "
                                                "(`coldaisle agent reset --breaker` closes it)")
        else:
            breaker = FleetBreaker(drain, state.drain_max_share, state.drain_window_s, RealClock(),
                                   settle_s=o.settle_s) if state is not None else None
            action = drain_for_health(drain, node, reason, dry_run=o.dry_run, breaker=breaker)
    elif verdict.status.value <= 1:  # OK or WARNING: the problem we drained for is gone
        action = resume_if_ours(drain, node, dry_run=o.dry_run)
    return HealthResult(verdict, node, action, history)
