"""`coldaisle sim test`: check a protected run against the expectations written in its scenario."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coldaisle.actions.audit import read
from coldaisle.config import Located
from coldaisle.replay.protected import Guarded
from coldaisle.sim.resolve import resolve_time
from coldaisle.sim.scenario import Expectation


@dataclass(frozen=True)
class ExpectResult:
    """One expectation's verdict, with what was seen."""

    name: str
    ok: bool
    detail: str


def check_all(g: Guarded) -> list[ExpectResult]:
    """Every expectation of the scenario, checked against the finished protected run."""
    return [check(g, e, i) for i, e in enumerate(g.twin.plan.scenario.expect)]


def check(g: Guarded, e: Expectation, i: int) -> ExpectResult:
    """One expectation; all its keys must hold."""
    plan, s = g.twin.plan, g.twin.state
    at = Located(plan.scenario.name, {})
    name = e.name or f"expect[{i}]"
    problems: list[str] = []
    seen: list[str] = []
    hottest = float(s.peak_c.max())
    if e.max_temperature is not None:
        seen.append(f"hottest GPU {hottest:.1f} C")
        if hottest > e.max_temperature:
            problems.append(f"a GPU reached {hottest:.1f} C > {e.max_temperature:g} C")
    if e.no_gpu_above_slowdown:
        over = int((s.above_slowdown_s > 0).sum())
        seen.append(f"{over} GPUs above slowdown")
        if over:
            problems.append(f"{over} GPUs went above their slowdown temperature")
    if e.job_stopped is not None:
        problems += _job_stopped(g, e, at, seen)
    if e.node_drained is not None:
        problems += _drained(g, e, at, seen)
    if e.no_decisions:
        n = sum(1 for r in read(g.audit_path, backups=True) if r.get("kind") == "decision")
        seen.append(f"{n} decisions")
        if n:
            problems.append(f"the policy took {n} decisions on a scenario that needs none")
    if e.max_gpus_lost is not None:
        lost = int(s.lost.sum())
        seen.append(f"{lost} GPUs lost")
        if lost > e.max_gpus_lost:
            problems.append(f"{lost} GPUs lost > {e.max_gpus_lost}")
    return ExpectResult(name, not problems, "; ".join(problems or seen))


def _job_stopped(g: Guarded, e: Expectation, at: Located, seen: list[str]) -> list[str]:
    plan, wl = g.twin.plan, g.twin.workload
    names = [jp.spec.name for jp in plan.jobs]
    if e.job_stopped not in names:
        return [f"no job named {e.job_stopped!r}"]
    j = names.index(e.job_stopped)
    exits = [ev.time for ev in g.twin.events if ev.cls == "process_exit" and ev.fields.get("job") == e.job_stopped]
    alive = bool((wl.pid[plan.jobs[j].gpus] != 0).any()) and wl.job_status[j] == "running"
    if alive:
        return [f"job {e.job_stopped} is still running"]
    last = max(exits, default=np.nan) - plan.start_epoch
    seen.append(f"job {e.job_stopped} stopped at +{last:.0f} s")
    if e.within is not None and e.after is not None:
        t0 = resolve_time(e.after, plan.scenario, at, ("expect", "after"))
        if not last - t0 <= e.within:
            return [f"job {e.job_stopped} stopped {last - t0:.0f} s after {e.after}, more than {e.within:g} s"]
    return []


def _drained(g: Guarded, e: Expectation, at: Located, seen: list[str]) -> list[str]:
    plan = g.twin.plan
    node = plan.layout.node_index.get(str(e.node_drained))
    if node is None:
        return [f"no node named {e.node_drained!r}"]
    drains = [ev for ev in g.twin.events if ev.cls == "node_drain" and ev.host == e.node_drained]
    if not drains:
        return [f"{e.node_drained} was not drained"]
    t = drains[0].time - plan.start_epoch
    seen.append(f"{e.node_drained} drained at +{t:.0f} s: {drains[0].fields.get('reason', '')[:120]}")
    if e.before is not None and t > resolve_time(e.before, plan.scenario, at, ("expect", "before")):
        return [f"{e.node_drained} drained only at +{t:.0f} s, after {e.before}"]
    return []
