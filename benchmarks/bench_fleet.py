"""The fleet breaker's cost per drain on a real Slurm of twelve nodes (issue 13).

Run (root, with the Debian slurm and munge packages, as `.ci/run` installs them):

    python benchmarks/bench_fleet.py [--nodes 12] [--repeat 30]

Each round drains one node and resumes it, three ways, in the same run and against the same slurmctld:
  bare       `SlurmDrain.drain` alone (`scontrol show node` of the node, then `scontrol update ... State=DRAIN`):
             what a drain cost before the fleet breaker, the baseline.
  breaker    `FleetBreaker.before` (one `scontrol show node -o` of the whole fleet, parsed and counted), then the
             same drain: what a drain costs on the cause-to-drain path now. The difference is the added cost.
  confirm    `FleetBreaker.after` with no settle wait: the re-read that ranks simultaneous drains. It runs after
             the drain is in place, so it is off the cause-to-drain path (an agent waits `settle_s`, 2 s, first).
The parse cost of a larger fleet is measured on the real `scontrol show node -o` lines of this fleet, repeated
to 512 and 4096 nodes.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from slurm_fleet import slurm_fleet

from coldaisle.actions.drain import SlurmDrain, parse_show_node
from coldaisle.actions.fleet import FleetBreaker
from coldaisle.telemetry.clock import RealClock


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e3:7.1f} ms (p90 {sorted(samples)[int(len(samples) * 0.9)] * 1e3:.1f})"


def main() -> None:
    """Start the fleet, time the three paths, print a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    bare: list[float] = []
    breaker: list[float] = []
    read: list[float] = []
    confirm: list[float] = []
    with slurm_fleet(args.nodes) as fleet:
        os.environ["SLURM_CONF"] = fleet.env["SLURM_CONF"]
        drain = SlurmDrain()
        fb = FleetBreaker(drain, max_share=1.0, window_s=3600, clock=RealClock(), settle_s=0.0)
        for i in range(args.repeat):
            node = fleet.nodes[i % len(fleet.nodes)]
            t0 = time.perf_counter()
            status, detail = drain.drain(node, "coldaisle: bench (bare)")
            bare.append(time.perf_counter() - t0)
            assert status.value == "done", detail
            drain.undrain(node)
            t0 = time.perf_counter()
            why, _ = fb.before(node)
            t1 = time.perf_counter()
            assert why is None, why
            status, detail = drain.drain(node, "coldaisle: bench (breaker)")
            breaker.append(time.perf_counter() - t0)
            read.append(t1 - t0)
            assert status.value == "done", detail
            t0 = time.perf_counter()
            assert fb.after(node) is None
            confirm.append(time.perf_counter() - t0)
            drain.undrain(node)
        fleet.reset()
        lines = [ln for ln in fleet.run("scontrol", "show", "node", "-o").stdout.splitlines() if "NodeName=" in ln]
    parse = {}
    for n in (len(lines), 512, 4096):
        text = [lines[i % len(lines)] for i in range(n)]
        t0 = time.perf_counter()
        for _ in range(5):
            [parse_show_node(x).fleet_state() for x in text]
        parse[n] = (time.perf_counter() - t0) / 5
    added = statistics.median(breaker) - statistics.median(bare)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {args.nodes} slurmd, {args.repeat} rounds\n")
    print("| path | median per drain |")
    print("|---|---|")
    print(f"| bare drain (baseline) | {_ms(bare)} |")
    print(f"| breaker read + drain (cause to drain now) | {_ms(breaker)} |")
    print(f"| of which the fleet read (`scontrol show node -o`, parse, count) | {_ms(read)} |")
    print(f"| confirm after the drain (off the path; settle wait not counted) | {_ms(confirm)} |")
    print(f"\nadded cost per drain: {added * 1e3:.1f} ms "
          f"(ratio breaker/bare {statistics.median(breaker) / statistics.median(bare):.2f}x)")
    print("parse + count of the fleet list: " + ", ".join(f"{n} nodes {t * 1e3:.2f} ms" for n, t in parse.items()))


if __name__ == "__main__":
    main()
