"""From a firing rung to concrete Decisions: which devices, processes or nodes, and the evidence why."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from coldaisle.actions.interface import ActionKind, Decision, Target
from coldaisle.policy.context import EvalContext
from coldaisle.policy.loader import CompiledRule
from coldaisle.policy.schema import Rung

_DEVICE_EVIDENCE = ("temperature_c", "power_w", "power_limit_w", "utilization_gpu", "utilization_memory",
                    "memory_used_bytes", "memory_total_bytes", "pcie_replay_total")


def decisions_for(cr: CompiledRule, rung: Rung, step: int, ctx: EvalContext, i: int, now: float) -> list[Decision]:
    """The Decisions one rung of one rule produces for subject `i` of its scope."""
    devices, procs = _members(cr.rule.scope, ctx, i)
    evidence = _evidence(cr, ctx, i, devices)
    base = {"rule": cr.rule.name, "severity": cr.rule.severity, "action": rung.do, "step": step,
            "evidence": evidence}
    reason = f"{cr.rule.name}: {rung.reason or summary(evidence)}"
    if rung.do in (ActionKind.SIGTERM, ActionKind.SIGKILL):
        return [Decision(now, target=_proc_target(ctx, r), params={"group": rung.group, "reason": reason}, **base)
                for r in procs]
    if rung.do == ActionKind.POWER_CAP:
        return [Decision(now, target=_dev_target(ctx, d), params={"watts": _watts(rung, ctx, d), "reason": reason},
                         **base) for d in devices]
    if rung.do == ActionKind.DRAIN:
        nodes = _drain_nodes(cr, rung, ctx, devices)
        return [Decision(now, target=Target(ctx.nodes.names[n]), params={"reason": reason}, **base) for n in nodes]
    return [Decision(now, target=_subject_target(cr.rule.scope, ctx, i), params={"reason": reason}, **base)]


def _members(scope: str, ctx: EvalContext, i: int) -> tuple[np.ndarray, np.ndarray]:
    if scope == "device":
        return np.array([i]), np.flatnonzero(ctx.proc_device == i)
    if scope == "process":
        return np.array([ctx.proc_device[i]]), np.array([i])
    if scope == "node":
        return np.flatnonzero(ctx.nodes.of_device == i), np.flatnonzero(ctx.proc_node == i)
    return np.flatnonzero(ctx.job_of_device == i), np.flatnonzero(ctx.job_of_process == i)


def _label(ctx: EvalContext, d: int) -> str:
    dev = ctx.frame.devices[d]
    return f"{ctx.nodes.names[int(ctx.nodes.of_device[d])]}/gpu{dev.index}"


def _dev_target(ctx: EvalContext, d: int) -> Target:
    dev = ctx.frame.devices[int(d)]
    job = int(ctx.job_of_device[d])
    return Target(ctx.nodes.names[int(ctx.nodes.of_device[d])], int(d), dev.uuid,
                  job=ctx.jobs.names[job] if job >= 0 else None)


def _proc_target(ctx: EvalContext, r: int) -> Target:
    d = int(ctx.proc_device[r])
    t = _dev_target(ctx, d)
    job = int(ctx.job_of_process[r])
    return Target(t.node, d, t.uuid, pid=int(ctx.frame.processes.pid[r]),
                  job=ctx.jobs.names[job] if job >= 0 else t.job)


def _subject_target(scope: str, ctx: EvalContext, i: int) -> Target:
    if scope == "device":
        return _dev_target(ctx, i)
    if scope == "process":
        return _proc_target(ctx, i)
    if scope == "node":
        return Target(ctx.nodes.names[i])
    members = np.flatnonzero(ctx.job_of_device == i)
    node = ctx.nodes.names[int(ctx.nodes.of_device[members[0]])] if members.size else ""
    return Target(node, job=ctx.jobs.names[i])


def _watts(rung: Rung, ctx: EvalContext, d: int) -> float:
    dev = ctx.frame.devices[int(d)]
    if rung.to_min:
        watts = dev.power_min_limit_w
    elif rung.fraction is not None:
        watts = rung.fraction * dev.power_default_limit_w
    else:
        watts = float(rung.watts or dev.power_default_limit_w)
    return float(min(max(watts, dev.power_min_limit_w), dev.power_max_limit_w))


def _drain_nodes(cr: CompiledRule, rung: Rung, ctx: EvalContext, devices: np.ndarray) -> list[int]:
    if rung.nodes == "straggler" and cr.straggler is not None:
        strag = np.asarray(cr.straggler.fn(ctx), dtype=bool)
        devices = devices[strag[devices]]
    return sorted({int(n) for n in ctx.nodes.of_device[devices]})


def _evidence(cr: CompiledRule, ctx: EvalContext, i: int, devices: np.ndarray) -> dict[str, Any]:
    ev: dict[str, Any] = {"condition": cr.rule.when, "at": ctx.frame.wall_time}
    scope = cr.rule.scope
    if scope in ("device", "process"):
        d = int(devices[0])
        ev["gpu"] = _label(ctx, d)
        for name in _DEVICE_EVIDENCE:
            v = float(ctx.frame.column(name)[d])
            if math.isfinite(v):  # math, not numpy: a ufunc on one float costs more than the rest of the line
                ev[name] = round(v, 2)
        for name, _window in cr.windows.items():
            ev.setdefault(name, round(float(ctx.frame.column(name)[d]), 2))
    if scope == "process":
        ev["pid"] = int(ctx.frame.processes.pid[i])
        ev["process_power_w"] = round(float(ctx.column("process_power_w", "process")[i]), 1)
    if scope in ("node", "job"):
        ev["gpus"] = int(devices.size)
        values = ctx.nodes.values if scope == "node" else ctx.jobs.values
        for name, arr in values.items():
            v = float(np.asarray(arr, dtype=float)[i])
            if math.isfinite(v):
                ev[name] = round(v, 3)
    if scope == "job":
        ev["job"] = ctx.jobs.names[i]
    if cr.straggler is not None:
        strag = np.asarray(cr.straggler.fn(ctx), dtype=bool)
        ev["stragglers"] = [_label(ctx, int(d)) for d in devices if strag[d]][:16]
        ev["matching"] = int(devices.size - sum(strag[devices]))
    return ev


def summary(ev: dict[str, Any]) -> str:
    """One line a person reads in a drain reason or an alert."""
    if "job" in ev:
        text = f"job {ev['job']}: {ev.get('matching', ev['gpus'])} of {ev['gpus']} GPUs match `{ev['condition']}`"
        if ev.get("stragglers"):
            text += f"; not in it: {', '.join(ev['stragglers'][:4])}"
        return text
    shown = [k for k in ev if k not in ("condition", "at", "gpu", "stragglers", "matching")]
    cond = str(ev.get("condition", ""))
    shown.sort(key=lambda k: k not in cond)  # the readings the condition names come first
    parts = [f"{k}={ev[k]}" for k in shown]
    return f"{ev.get('gpu', '')} {' '.join(parts[:6])} (`{ev['condition']}`)".strip()
