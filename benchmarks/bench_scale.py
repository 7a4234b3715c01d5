"""The twin at Llama 3 scale (issue 17): llama3-16k's 54 days, and the cost per simulated GPU-hour from 512 to
16,384 GPUs (targets: at most 10 min and 4 GiB for llama3-16k; cost flat within 20%; interruptions within 15%
of 419).

Run: python benchmarks/bench_scale.py [--days 54] [--sizes 512 2048 8192 16384] [--fixed-steps 600]
                                      [--protected-days 2]

Each size runs in its own child process (so each peak RSS is its own): scenarios/llama3-16k.yaml with its rows
and racks cut to the size (16 nodes of 8 GPUs a rack; same failure rates per GPU-, node- and switch-day, so a
smaller fleet fails proportionally less), unprotected, for `--days`. Per size: wall, steps, interruptions,
ETTR, peak RSS and the cost per simulated GPU-hour. Baseline measured in the same run, per size: `--fixed-steps`
fixed 1 s steps of the same twin (its first minutes), projected to the whole run, against which the adaptive
run's speed-up is given; the curve is also given as ratios to its own 16,384-GPU point. With
`--protected-days N`, also llama3-16k's first N days protected by the default policy through the paced agent
(replay/paced.py), against the unprotected twin over the same days in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: GPUs -> (rows, racks per row), 16 nodes of 8 GPUs a rack
SHAPES = {512: (1, 4), 2048: (2, 8), 4096: (4, 8), 8192: (8, 8), 16384: (16, 8)}


def scaled_text(gpus: int, days: float) -> str:
    """llama3-16k.yaml cut to `gpus` GPUs and `days` days."""
    from coldaisle.sim.scenario import find_scenario

    rows, racks = SHAPES[gpus]
    nodes = rows * racks * 16
    text = Path(find_scenario("llama3-16k")).read_text(encoding="utf-8")
    subs = [(r"(?m)^  rows: 16\b", f"  rows: {rows}"), (r"(?m)^  racks_per_row: 8\b", f"  racks_per_row: {racks}"),
            (r"gt-0001\.\.gt-2048", f"gt-0001..gt-{nodes:04d}"), (r"(?m)^duration: 54 d", f"duration: {days:g} d"),
            (r"cold-aisle-row16, kind: aisle, row: 16", f"cold-aisle-row{rows}, kind: aisle, row: {rows}")]
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl, text)
        assert n == 1, pattern
    return text


def part(gpus: int, days: float, fixed_steps: int) -> dict[str, Any]:
    """One size: the adaptive run, then the fixed-step baseline on a fresh twin."""
    from coldaisle.sim.scenario import parse_scenario
    from coldaisle.sim.twin import Twin

    path = Path(tempfile.mkdtemp(prefix="coldaisle-scale-")) / f"llama3-{gpus}.yaml"
    path.write_text(scaled_text(gpus, days), encoding="utf-8")
    _, plan = parse_scenario(path.read_text(encoding="utf-8"), str(path))
    t0 = time.perf_counter()
    twin = Twin(plan)
    twin.run_until()
    wall = time.perf_counter() - t0
    assert twin.campaign is not None
    led = twin.campaign.ledger(twin.t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = Twin(plan)
    t1 = time.perf_counter()
    for _ in range(fixed_steps):
        base.step()
    per_step = (time.perf_counter() - t1) / fixed_steps
    gpu_h = plan.layout.n_gpus * twin.t / 3600
    return {"gpus": plan.layout.n_gpus, "nodes": plan.layout.n_nodes, "simulated_days": round(twin.t / 86400, 2),
            "wall_s": round(wall, 2), "steps": twin.stepper.steps, "long_steps_retaken": twin.physics.rejected,
            "steps_at_rest": twin.physics.rest_steps, "faults_drawn": sum(plan.failures.drawn.values()),
            "interruptions": led.interruptions, "ettr": round(led.ettr, 4), "peak_rss_mib": round(peak),
            "us_per_simulated_gpu_hour": round(wall / gpu_h * 1e6, 3),
            "fixed_1s_step_ms": round(per_step * 1e3, 3),
            "fixed_steps_projected_s": round(per_step * twin.t), "speedup_over_fixed_steps": round(per_step * twin.t
                                                                                                  / wall, 1)}


def protected_part(days: float) -> dict[str, Any]:
    """llama3-16k's first `days` days, paced agent enforcing the default policy, then unprotected."""
    from coldaisle.replay.paced import paced_replay
    from coldaisle.sim.run import load_plan, replay

    plan = load_plan("llama3-16k")
    t0 = time.perf_counter()
    g = paced_replay(plan, until_s=days * 86400.0)
    wall = time.perf_counter() - t0
    with open(g.audit_path, encoding="utf-8") as f:
        records = sum(1 for _ in f)
    led = g.twin.campaign.ledger(g.twin.t)  # type: ignore[union-attr]
    t1 = time.perf_counter()
    bare = replay(plan, until_s=days * 86400.0)
    base = time.perf_counter() - t1
    return {"days": days, "wall_s": round(wall, 1), "agent_samples": g.agent.stats.samples,
            "agent_errors": g.agent.stats.errors, "audit_records": records, "interruptions": led.interruptions,
            "ettr": round(led.ettr, 4), "unprotected_wall_s": round(base, 1), "ratio": round(wall / base, 1),
            "ms_per_sample": round((wall - base) / max(g.agent.stats.samples, 1) * 1e3, 2),
            "unprotected_interruptions": len(bare.campaign.interruptions),  # type: ignore[union-attr]
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def child(*args: str) -> dict[str, Any]:
    """Run one part in a fresh interpreter."""
    res = subprocess.run([sys.executable, __file__, "--part", *args], capture_output=True, text=True, timeout=7200,
                         check=False)
    if res.returncode != 0:
        sys.exit(f"part {args} failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return json.loads(res.stdout)


def main() -> None:
    """Every size, then the curve's flatness and the llama3-16k targets."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=54.0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8192, 16384])
    ap.add_argument("--fixed-steps", type=int, default=600)
    ap.add_argument("--protected-days", type=float, default=0.0)
    ap.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.part:
        res = protected_part(float(a.part[1])) if a.part[0] == "protected" else part(int(a.part[0]),
                                                                                       float(a.part[1]),
                                                                                       int(a.part[2]))
        print(json.dumps(res))
        return
    runs = [child(str(g), str(a.days), str(a.fixed_steps)) for g in a.sizes]
    costs = [r["us_per_simulated_gpu_hour"] for r in runs]
    top = runs[-1]
    out: dict[str, Any] = {"date": datetime.date.today().isoformat(),
                           "machine": f"{platform.machine()} nproc={len(os.sched_getaffinity(0))}",
                           "days": a.days, "runs": runs,
                           "cost_ratio_to_largest": [round(c / costs[-1], 2) for c in costs],
                           "cost_max_over_min": round(max(costs) / min(costs), 2)}
    if top["gpus"] == 16384 and a.days == 54.0:
        out["llama3_16k_targets"] = {"wall_le_600_s": top["wall_s"] <= 600, "peak_rss_le_4_gib": top["peak_rss_mib"]
                                     <= 4096, "interruptions_within_15pct_of_419": abs(top["interruptions"] - 419)
                                     <= 0.15 * 419}
    if a.protected_days > 0:
        out["llama3_16k_protected"] = child("protected", str(a.protected_days))
    out["loadavg_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
