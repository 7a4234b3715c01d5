"""Guarded replay: the very agent loop, policy engine and (simulated) executors, run against the twin.

`coldaisle sim run SCENARIO --policy default` and the protected half of `coldaisle demo` both come
through here. Signals and drains act on the twin through its actuators; power caps go through the
real `PowerCapper` over the `SimBackend`, exactly as they would through NVML on a node.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coldaisle.actions.audit import AuditLog
from coldaisle.actions.interface import ActionKind
from coldaisle.actions.notify import LogNotifier
from coldaisle.actions.powercap import PowerCapper
from coldaisle.actions.runner import ActionRunner
from coldaisle.actions.safety import CircuitBreaker
from coldaisle.actions.sim import SimDrain, SimSignaller
from coldaisle.agent.loop import Agent
from coldaisle.policy.loader import LoadedPolicy, load_policy
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.resolve import Plan
from coldaisle.sim.sources import SimJobs, SimNodes
from coldaisle.sim.twin import Twin

_quiet = logging.getLogger("coldaisle.sim.notify")
_quiet.propagate = False
_quiet.addHandler(logging.NullHandler())


@dataclass
class Guarded:
    """A protected run: the twin, the agent that watched it, its runner and where it audited."""

    twin: Twin
    agent: Agent
    runner: ActionRunner
    audit_path: Path
    policy: LoadedPolicy


def protect(plan: Plan, policy: str | LoadedPolicy = "default", *, audit_path: Path | None = None,
            interval_s: float = 1.0) -> Guarded:
    """A twin with an enforcing agent attached (cluster-wide view), ready to run."""
    twin = Twin(plan)
    backend = SimBackend(twin)
    lp = policy if isinstance(policy, LoadedPolicy) else load_policy(policy)
    path = audit_path or Path(tempfile.mkdtemp(prefix="coldaisle-sim-")) / "audit.jsonl"
    audit = AuditLog(path, clock=twin.clock, durable=False)  # simulated time: a lost line is a rerun away
    capper = PowerCapper(backend, clock=twin.clock)
    signaller = SimSignaller(twin)
    executors = {ActionKind.NOTIFY: LogNotifier(_quiet, clock=twin.clock), ActionKind.POWER_CAP: capper,
                 ActionKind.SIGTERM: signaller, ActionKind.SIGKILL: signaller, ActionKind.DRAIN: SimDrain(twin)}
    breaker = CircuitBreaker(lp.policy.drain_max_share, lp.policy.drain_window, plan.layout.n_nodes, twin.clock)
    runner = ActionRunner(executors, audit, dry_run=False, breaker=breaker, clock=twin.clock, asynchronous=False,
                          keep=1_000_000)
    agent = Agent(backend, lp, runner, twin.clock, interval_s=interval_s, nodes=SimNodes(backend),
                  jobs=SimJobs(backend), note=audit.note, keep_frames=2,  # the recorder keeps the history
                  on_tick=lambda frame, *_: capper.observe(frame))
    return Guarded(twin, agent, runner, path, lp)


def guarded_replay(plan: Plan, policy: str | LoadedPolicy = "default", *, until_s: float | None = None,
                   audit_path: Path | None = None,
                   progress: Callable[[float, float], None] | None = None) -> Guarded:
    """Run the scenario to `until_s` (default: its end) with the agent enforcing `policy`."""
    g = protect(plan, policy, audit_path=audit_path)
    end = plan.duration_s if until_s is None else min(until_s, plan.duration_s)
    while g.twin.clock.monotonic() < end - 1e-9:
        g.agent.run(until=min(end, g.twin.clock.monotonic() + 60.0))
        if progress:
            progress(g.twin.t, end)
    return g
