"""What a run produced, as the documented JSON summary (`coldaisle sim run --json`) and grouped events.

Schema `coldaisle.sim.summary/1` (docs/sim.md): scenario and clock facts, every named sensor's
readings (one per simulated minute at least), each GPU's peak temperature and time above
slowdown, every event with its time, jobs, losses, and energy drawn; for a failure-mix scenario,
`training`: ETTR, goodput and the time lost by cause (replay.training).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from coldaisle.replay.training import training_summary
from coldaisle.sim.twin import Twin
from coldaisle.telemetry.events import Event, Severity

SCHEMA = "coldaisle.sim.summary/1"
J_PER_KWH = 3.6e6


def iso(epoch: float) -> str:
    """UTC ISO-8601 with a Z."""
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def summarize(twin: Twin, *, reading_every_s: float = 60.0) -> dict[str, Any]:
    """The JSON-ready summary of a twin's run so far."""
    plan, rec = twin.plan, twin.recorder
    stride = max(1, math.floor(min(reading_every_s, 60.0) / rec.every + 1e-9))
    times = [iso(plan.start_epoch + x) for x in rec.view("t")[::stride]]
    labels = [plan.layout.gpu_label(g) for g in range(plan.layout.n_gpus)]
    out = _facts(twin, times, labels, stride)
    training = training_summary(twin)
    if training is not None:
        out["training"] = training
    return out


def _facts(twin: Twin, times: list[str], labels: list[str], stride: int) -> dict[str, Any]:
    """Everything but the training ledger."""
    plan, rec, s, ph, lay = twin.plan, twin.recorder, twin.state, twin.physics, twin.plan.layout
    return {
        "schema": SCHEMA,
        "scenario": plan.scenario.name,
        "start": iso(plan.start_epoch),
        "end": iso(plan.start_epoch + twin.t),
        "simulated_s": twin.t,
        "cluster": {"gpus": lay.n_gpus, "nodes": lay.n_nodes, "racks": lay.n_racks, "rows": lay.n_rows,
                    "card": plan.card.name, "tdp_w": plan.card.tdp_w, "slowdown_c": plan.card.slowdown_c,
                    "shutdown_c": plan.card.shutdown_c},
        "sensors": {
            sp.name: {"kind": sp.kind, "unit": "celsius",
                      "readings": [[ts, round(float(v), 2)] for ts, v in zip(times, rec.view("sensor_c")[::stride, k],
                                                                             strict=True)]}
            for k, sp in enumerate(plan.sensors)
        },
        "gpus": {
            "peak_temperature_c": {lab: round(float(v), 2) for lab, v in zip(labels, s.peak_c, strict=True)},
            "seconds_above_slowdown": {lab: float(v) for lab, v in zip(labels, s.above_slowdown_s, strict=True)
                                       if v > 0},
            "lost": [labels[g] for g in np.flatnonzero(s.lost)],
            "hottest": {"gpu": labels[int(np.argmax(s.peak_c))], "temperature_c": round(float(s.peak_c.max()), 2)},
        },
        "jobs": [{"name": jp.spec.name, "id": jp.spec.id, "status": twin.workload.job_status[j],
                  "progress_steps": round(twin.workload.progress(j, twin.t), 1)} for j, jp in enumerate(plan.jobs)],
        "nodes_down": [lay.node_names[n] for n in np.flatnonzero(~s.node_up)],
        "nodes_drained": [lay.node_names[n] for n in np.flatnonzero(s.node_drained)],
        "energy": {"it_kwh": ph.it_j / J_PER_KWH, "facility_kwh": ph.facility_j / J_PER_KWH,
                   "busy_wait_kwh": ph.spin_j / J_PER_KWH, "cooling_removed_kwh": ph.cooling_j / J_PER_KWH,
                   "peak_pue": round(float(rec.view("pue").max()), 3)},
        "events": [e.to_json() for e in sorted(twin.events, key=lambda e: e.time)],
    }


@dataclass
class FoldedEvents:
    """Events of one class within a window, from one or many hosts: one row for people."""

    first: Event
    count: int = 1
    hosts: list[str] = field(default_factory=list)

    def detail(self, limit: int = 6) -> str:
        """`node-gpu-01, node-gpu-02, ... (+510 more)`."""
        uniq = sorted(set(self.hosts))
        more = f" (+{len(uniq) - limit} more)" if len(uniq) > limit else ""
        return ", ".join(uniq[:limit]) + more


def group_events(events: Iterable[Event], *, window_s: float = 60.0, min_severity: Severity = Severity.INFO,
                 skip: frozenset[str] = frozenset()) -> list[FoldedEvents]:
    """Merge events of the same class and source that start within `window_s` of the group's first."""
    groups: list[FoldedEvents] = []
    open_: dict[tuple[str, str], FoldedEvents] = {}
    for e in sorted(events, key=lambda e: e.time):
        if e.severity < min_severity or e.cls in skip:
            continue
        key = (e.source, e.cls)
        g = open_.get(key)
        if g is not None and e.time - g.first.time <= window_s:
            g.count += 1
            g.hosts.append(e.host)
            continue
        g = FoldedEvents(e, 1, [e.host])
        open_[key] = g
        groups.append(g)
    return groups


def action_counts(counts: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """Decisions (each ends in one Outcome), and drains and signals carried out, from an action runner's
    (action, status) -> Outcomes counts: the whole run's, which a rotated audit log may no longer all hold."""
    return {"decisions": sum(counts.values()), "drains": counts.get(("drain", "done"), 0),
            "signals": counts.get(("sigterm", "done"), 0) + counts.get(("sigkill", "done"), 0)}


def audit_records(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Decisions (time, rule, action, target, step, reason) and Outcomes from a protected run's audit log, oldest
    first, its rotated files included."""
    from coldaisle.actions.audit import read

    decisions, outcomes = [], []
    for r in read(path, backups=True):
        if r.get("kind") == "decision":
            decisions.append({k: r.get(k) for k in ("time", "rule", "severity", "action", "target", "step",
                                                      "restore")} | {"reason": (r.get("params") or {}).get("reason")})
        elif r.get("kind") == "outcome":
            outcomes.append({k: r.get(k) for k in ("time", "rule", "action", "target", "status", "detail")})
    return decisions, outcomes
