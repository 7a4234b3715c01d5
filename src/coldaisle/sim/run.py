"""Run a scenario on the twin from start to `until`, with an optional progress callback."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from coldaisle.sim.resolve import Plan
from coldaisle.sim.scenario import find_scenario, load_scenario
from coldaisle.sim.twin import Twin


def load_plan(name_or_path: str) -> Plan:
    """A shipped scenario by name or a scenario file by path, fully checked."""
    _, plan = load_scenario(find_scenario(name_or_path))
    return plan


def replay(plan: Plan, *, until_s: float | None = None,
           progress: Callable[[float, float], None] | None = None) -> Twin:
    """Run the twin unprotected to `until_s` seconds after start (default: the whole scenario)."""
    twin = Twin(plan)
    end = plan.duration_s if until_s is None else min(until_s, plan.duration_s)
    twin.run_until(end, progress=(lambda t: progress(t, end)) if progress else None)
    return twin


def parse_until(text: str | None, plan: Plan) -> float | None:
    """`--until` as "+6 h", "09:00" or an ISO time, resolved against the scenario start."""
    if text is None:
        return None
    from coldaisle.config import Located
    from coldaisle.sim.resolve import resolve_time

    spec = text if not text[:1].isdigit() or ":" in text or "T" in text else f"+{text}"
    return resolve_time(spec, plan.scenario, Located("--until", {}), ())



def write_logs(twin: Twin, root: Path) -> None:
    """Write every node's logs in real formats under `root`, plus sensors.csv (one row per minute)."""
    from coldaisle.sim.logs import LogWriter, SensorCsvWriter

    plan = twin.plan
    rng = np.random.default_rng(plan.scenario.seed)
    # Nodes booted about three days before the incident (the report's panic shows 259200 s of uptime).
    boots = {n: plan.start_epoch - 3 * 86400 + float(rng.uniform(-600, 600)) for n in plan.layout.node_names}
    root.mkdir(parents=True, exist_ok=True)
    with LogWriter(root, boot_times=boots, default_boot_time=plan.start_epoch - 3 * 86400) as logs:
        logs.write(sorted((e for e in twin.events if e.source != "twin"), key=lambda e: e.time))
    rec = twin.recorder
    stride = max(1, math.floor(60.0 / rec.every + 1e-9))
    with SensorCsvWriter(root / "sensors.csv") as csv:
        for i in range(0, rec.n, stride):
            for k, sp in enumerate(plan.sensors):
                csv.write_row(plan.start_epoch + rec.t[i], sp.name, float(rec.sensor_c[i, k]))
