"""`coldaisle sim compare POLICY_A POLICY_B SCENARIO`: one scenario run under two policies, side by side.

Both runs replay the same scenario with the same seeded failures, so every difference is the policies': the
training time a policy saves by catching hangs early, against what it loses to false drains and restarts.
A policy is a file, `default`, `none` (no agent at all) or `no-hang-detection` (the default policy with its
hang rules, those whose verdict is `hang`, turned off).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from coldaisle.policy.loader import LoadedPolicy, default_policy_path, load_policy, parse_policy
from coldaisle.replay.paced import protected_run
from coldaisle.replay.protected import Guarded
from coldaisle.replay.summary import action_counts
from coldaisle.replay.training import hours, training_summary
from coldaisle.report import Report, Section, Table
from coldaisle.sim.ettr import CAUSES
from coldaisle.sim.resolve import Plan
from coldaisle.sim.run import replay
from coldaisle.sim.twin import Twin

NONE = "none"
NO_HANG = "no-hang-detection"
SCHEMA = "coldaisle.sim.compare/1"


@dataclass
class Side:
    """One policy's run of the scenario."""

    policy: str  # as given
    source: str  # what was enforced ("none" for no agent)
    twin: Twin
    guarded: Guarded | None
    compute_s: float  # how long the run took here


def load_side_policy(spec: str) -> LoadedPolicy | None:
    """The policy a side enforces: None for `none`, the default without hang rules for `no-hang-detection`."""
    if spec == NONE:
        return None
    if spec != NO_HANG:
        return load_policy(spec)
    raw = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    for rule in raw.get("rules", []):
        if rule.get("verdict") == "hang":
            rule["enabled"] = False
    return parse_policy(yaml.safe_dump(raw, sort_keys=False), f"{default_policy_path()} (hang rules off)")


def run_side(plan: Plan, spec: str, *, until_s: float | None = None,
             progress: Callable[[float, float], None] | None = None, audit_path: Path | None = None) -> Side:
    """Run the scenario under one policy (or none), auditing to `audit_path` (default: a new temporary folder)."""
    policy = load_side_policy(spec)
    t0 = time.perf_counter()
    if policy is None:
        twin = replay(plan, until_s=until_s, progress=progress)
        return Side(spec, NONE, twin, None, time.perf_counter() - t0)
    g = protected_run(plan, policy, until_s=until_s, audit_path=audit_path, progress=progress)
    return Side(spec, policy.source, g.twin, g, time.perf_counter() - t0)


def actions(side: Side) -> dict[str, int]:
    """What the agent did over the whole run (none without an agent): `summary.action_counts`."""
    return action_counts({} if side.guarded is None else side.guarded.runner.counts)


def side_summary(side: Side) -> dict[str, Any]:
    """One side's figures for `--json`."""
    s, ph = side.twin.state, side.twin.physics
    return {"policy": side.policy, "enforced": side.source, "compute_s": round(side.compute_s, 2),
            "training": training_summary(side.twin), "actions": actions(side),
            "hottest_gpu_c": round(float(s.peak_c.max()), 2), "gpus_lost_at_end": int(s.lost.sum()),
            "facility_kwh": round(ph.facility_j / 3.6e6, 1), "busy_wait_kwh": round(ph.spin_j / 3.6e6, 1)}


def compare_summary(plan: Plan, a: Side, b: Side) -> dict[str, Any]:
    """Both sides, for `sim compare --json` (schema `coldaisle.sim.compare/1`, docs/sim.md)."""
    return {"schema": SCHEMA, "scenario": plan.scenario.name, "simulated_s": a.twin.t,
            "a": side_summary(a), "b": side_summary(b)}


def compare_rows(a: Side, b: Side) -> tuple[tuple[str, str, str], ...]:
    """(measure, A, B) rows: ETTR and time lost by cause first (for a failure mix), then the room and the agent."""
    sa, sb = side_summary(a), side_summary(b)
    rows: list[tuple[str, str, str]] = []
    ta, tb = sa["training"], sb["training"]
    if ta is not None and tb is not None:
        rows.append(("ETTR", _pct(ta["ettr"]), _pct(tb["ettr"])))
        rows.append(("productive time", hours(ta["productive_s"]), hours(tb["productive_s"])))
        rows += [(f"lost: {k.replace('_', ' ')}", hours(ta["lost_s"][k]), hours(tb["lost_s"][k])) for k in CAUSES]
        rows.append(("interruptions", str(ta["interruptions"]), str(tb["interruptions"])))
        rows.append(("nodes swapped for spares", str(ta["nodes_swapped"]), str(tb["nodes_swapped"])))
    for key, label in (("decisions", "policy decisions"), ("drains", "nodes drained by the agent"),
                       ("signals", "signals sent by the agent")):
        rows.append((label, str(sa["actions"][key]), str(sb["actions"][key])))
    rows += [("hottest GPU", f"{sa['hottest_gpu_c']:.1f} C", f"{sb['hottest_gpu_c']:.1f} C"),
             ("GPUs lost at the end", str(sa["gpus_lost_at_end"]), str(sb["gpus_lost_at_end"])),
             ("energy burnt busy-waiting", f"{sa['busy_wait_kwh']:,.1f} kWh", f"{sb['busy_wait_kwh']:,.1f} kWh"),
             ("facility energy", f"{sa['facility_kwh']:,.0f} kWh", f"{sb['facility_kwh']:,.0f} kWh")]
    return tuple(rows)


def _pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.2%}"


def compare_report(plan: Plan, a: Side, b: Side) -> Report:
    """The side-by-side report (terminal and HTML)."""
    text = (f"{plan.scenario.name}: the same scenario and the same seeded failures under two policies. "
            f"A: {a.source}. B: {b.source}.")
    table = Table("Two policies, side by side", ("measure", f"A: {a.policy}", f"B: {b.policy}"), compare_rows(a, b))
    return Report(f"coldaisle sim compare: {plan.scenario.name}", f"{a.policy} against {b.policy}", time.time(),
                  (Section("What each policy cost and saved", text, tables=(table,)),))
