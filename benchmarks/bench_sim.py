"""Twin speed and memory: 512 GPUs for 72 simulated hours (issue 2 target: <= 30 s, <= 1 GiB).

Run: python benchmarks/bench_sim.py [--hours 72]
Prints, for the twin's adaptive steps (sim/stepper.py) and for fixed 1 s steps (`max_step` = `step`), the wall
time, steps, real-time factor and peak resident memory, with two baselines measured in the same run: the fixed
1 s run itself, and the same number of steps of a bare numpy kernel (10 elementwise operations on 512 float64s),
the floor any vectorised step pays.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np

from coldaisle.sim.resolve import Plan
from coldaisle.sim.scenario import find_scenario, parse_scenario
from coldaisle.sim.twin import Twin


def baseline(steps: int, n: int = 512) -> float:
    """Seconds for `steps` iterations of 10 elementwise numpy ops on n floats."""
    a, b = np.random.default_rng(0).random(n), np.ones(n)
    t0 = time.perf_counter()
    for _ in range(steps):
        c = a * 0.5
        c += b
        np.exp(-c, out=c)
        c *= a
        c -= b
        np.minimum(c, 1.0, out=c)
        np.maximum(c, 0.0, out=c)
        a += c * 1e-9
        float(c.sum())
        np.maximum(a, c, out=b)
    return time.perf_counter() - t0


def run(plan: Plan, hours: float) -> tuple[Twin, float]:
    """The twin over `hours`, and its wall time."""
    twin = Twin(plan)
    t0 = time.perf_counter()
    twin.run_until(hours * 3600.0)
    return twin, time.perf_counter() - t0


def main() -> None:
    """Run the twin for the requested hours, adaptive then fixed, and print the figures as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=72.0)
    args = ap.parse_args()
    text = find_scenario("prometheus-unbound").read_text(encoding="utf-8")
    _, plan = parse_scenario(text, "prometheus-unbound")
    _, fixed_plan = parse_scenario(text + "\nmax_step: 1 s\n", "prometheus-unbound (fixed 1 s steps)")
    twin, wall = run(plan, args.hours)
    fixed, fixed_wall = run(fixed_plan, args.hours)
    steps = int(fixed.t / plan.scenario.step)
    base = baseline(steps)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "gpus": plan.layout.n_gpus, "simulated_h": twin.t / 3600, "adaptive_steps": twin.stepper.steps,
        "wall_s": round(wall, 2), "real_time_factor": round(twin.t / wall),
        "fixed_steps": steps, "fixed_wall_s": round(fixed_wall, 2),
        "fixed_us_per_step": round(fixed_wall / steps * 1e6, 1),
        "speedup_over_fixed": round(fixed_wall / wall, 2),
        "max_temperature_difference_c": round(float(abs(twin.recorder.view("gpu_temp_c")
                                                        - fixed.recorder.view("gpu_temp_c")).max()), 4),
        "baseline_s": round(base, 2), "fixed_ratio_to_baseline": round(fixed_wall / base, 2),
        "peak_rss_mib": round(rss_mib),
        "machine": f"{platform.machine()} nproc={len(os.sched_getaffinity(0))}",
        "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
    }, indent=1))


if __name__ == "__main__":
    main()
