"""Protected runs at fleet scale: the agent samples every second while something happens, less often otherwise.

A 16,384-GPU run of 54 days is 4.7 million one-second samples of the whole fleet, too many to evaluate. But
between changes the twin's readings barely move: the twin knows when something changes (a fault, a timer, an
action: sim.stepper), and the engine knows when a rule is counting towards its `for` or has rungs to climb.
So the agent samples at its own interval (1 s) from each change of the twin until `BUSY_AFTER_CHANGE_S` later
and while any rule is pending or has rungs to come; otherwise once every `agent_quiet_every` (the failure
mix's), and always at the first second after the twin's next fault or timer, as a 1 s agent would. Only a
slow drift over a threshold with nothing else changing is seen up to `agent_quiet_every` late; rules' `for`
durations and windows are measured on the samples' own times. Scenarios without a failure mix are not paced:
`guarded_replay` samples them every second, as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from coldaisle.policy.loader import LoadedPolicy
from coldaisle.replay.protected import Guarded, guarded_replay, protect
from coldaisle.sim.resolve import Plan

BUSY_AFTER_CHANGE_S = 30.0  # after a change, sample every second this long: peers spin within the stage delays,
#                             and from then on a rule is pending (which keeps the agent sampling every second)
DEFAULT_QUIET_S = 60.0


def protected_run(plan: Plan, policy: str | LoadedPolicy = "default", *, until_s: float | None = None,
                  audit_path: Path | None = None, progress: Callable[[float, float], None] | None = None) -> Guarded:
    """A protected run: paced for a failure-mix scenario, sampled every second otherwise."""
    if plan.failures is None:
        return guarded_replay(plan, policy, until_s=until_s, audit_path=audit_path, progress=progress)
    return paced_replay(plan, policy, until_s=until_s, audit_path=audit_path, progress=progress)


def paced_replay(plan: Plan, policy: str | LoadedPolicy = "default", *, until_s: float | None = None,
                 audit_path: Path | None = None, progress: Callable[[float, float], None] | None = None) -> Guarded:
    """Run the scenario with the agent enforcing `policy`, sampling as the module explains."""
    g = protect(plan, policy, audit_path=audit_path)
    twin, agent = g.twin, g.agent
    quiet = max(plan.failures.spec.agent_quiet_every if plan.failures else DEFAULT_QUIET_S, agent.interval_s)
    end = plan.duration_s if until_s is None else min(until_s, plan.duration_s)
    report_at = 0.0
    while twin.clock.monotonic() < end - 1e-9:
        _tick(g)
        now = twin.clock.monotonic()
        nxt = now + agent.interval_s if busy(g, now) else min(now + quiet, _after_next_event(g))
        twin.clock.advance_to(min(max(nxt, now + agent.interval_s), end))
        if progress and twin.t >= report_at:
            progress(twin.t, end)
            report_at = twin.t + 3600.0
    return g


def _tick(g: Guarded) -> None:
    """One sample; a failed one is counted and noted, as the agent's own loop does."""
    try:
        g.agent.tick()
    except Exception as exc:  # one bad reading never stops the run
        g.agent.stats.errors += 1
        g.agent.note(f"tick failed: {type(exc).__name__}: {exc}")


def busy(g: Guarded, now: float) -> bool:
    """The twin changed a moment ago, or a rule is pending or still has rungs to climb."""
    if now - g.twin.stepper.last_change < BUSY_AFTER_CHANGE_S:
        return True
    engine = g.agent.engine
    return any(t.fired_at is None or t.next_rung < len(cr.rule.actions)
               for cr in engine.rules for t in engine.tracks[cr.rule.name].values())


def _after_next_event(g: Guarded) -> float:
    """The end of the fine step in which the twin's next fault or timer is applied (inf: none due)."""
    nxt, dt = g.twin.next_event_s(), g.twin.dt
    return math.inf if math.isinf(nxt) else math.ceil((nxt - 1e-9) / dt) * dt
