"""Twin speed and memory: 512 GPUs for 72 simulated hours at 1 s steps (issue target: <= 30 s, <= 1 GiB).

Run: python benchmarks/bench_sim.py [--hours 72]
Prints wall time, the real-time factor, peak resident memory, and the ratio against a
baseline measured in the same run: the same number of steps of a bare numpy kernel
(10 elementwise operations on 512 float64s), which is the floor any vectorised step pays.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np

from coldaisle.sim.run import load_plan
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


def main() -> None:
    """Run the twin for the requested hours and print the figures as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=72.0)
    args = ap.parse_args()
    plan = load_plan("prometheus-unbound")
    twin = Twin(plan)
    t0 = time.perf_counter()
    twin.run_until(args.hours * 3600.0)
    wall = time.perf_counter() - t0
    steps = int(twin.t / plan.scenario.step)
    base = baseline(steps)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "gpus": plan.layout.n_gpus, "simulated_h": twin.t / 3600, "steps": steps,
        "wall_s": round(wall, 2), "real_time_factor": round(twin.t / wall),
        "us_per_step": round(wall / steps * 1e6, 1), "baseline_s": round(base, 2),
        "ratio_to_baseline": round(wall / base, 2), "peak_rss_mib": round(rss_mib),
        "machine": f"{platform.machine()} nproc={len(os.sched_getaffinity(0))}",
    }, indent=1))


if __name__ == "__main__":
    main()
