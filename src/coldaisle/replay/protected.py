"""Guarded replay: the very agent loop, policy engine and (simulated) executors, run against the twin.

`coldaisle sim run SCENARIO --policy default` and the protected half of `coldaisle demo` both come
through here. The node runtime is `agent.assemble`'s, on a twin opened by `sim.open.open_twin`: signals,
drains and power cycles act on the twin through its executors; power caps go through the real
`PowerCapper` over the `SimBackend`, exactly as they would through NVML on a node.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coldaisle.actions.runner import ActionRunner
from coldaisle.agent.assemble import NodeRuntime, RuntimeOptions, assemble
from coldaisle.agent.loop import Agent
from coldaisle.policy.loader import LoadedPolicy
from coldaisle.sim.open import open_twin
from coldaisle.sim.resolve import Plan
from coldaisle.sim.twin import Twin

_quiet = logging.getLogger("coldaisle.sim.notify")
_quiet.propagate = False
_quiet.addHandler(logging.NullHandler())


@dataclass
class Guarded:
    """A protected run: the twin, the node runtime that watched it, and where it audited."""

    twin: Twin
    runtime: NodeRuntime

    @property
    def agent(self) -> Agent:
        """The agent's loop (cluster-wide view)."""
        return self.runtime.agent

    @property
    def runner(self) -> ActionRunner:
        """The action runner, with every Outcome it kept."""
        return self.runtime.runner

    @property
    def audit_path(self) -> Path:
        """The JSON-lines audit log of the run."""
        return self.runtime.audit_path

    @property
    def policy(self) -> LoadedPolicy:
        """The policy enforced."""
        return self.runtime.policy


def protect(plan: Plan, policy: str | LoadedPolicy = "default", *, audit_path: Path | None = None,
            interval_s: float = 1.0) -> Guarded:
    """A twin with an enforcing agent attached (cluster-wide view), ready to run: the node runtime, on the twin."""
    opened = open_twin(plan)
    path = audit_path or Path(tempfile.mkdtemp(prefix="coldaisle-sim-")) / "audit.jsonl"
    rt = assemble(RuntimeOptions(policy=policy, enforce=True, interval_s=interval_s, audit=path, durable_audit=False,
                                 keep_frames=2, notify_logger=_quiet), opened=opened)
    assert opened.twin is not None
    return Guarded(opened.twin, rt)


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
