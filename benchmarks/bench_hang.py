"""Hang detection latency of `coldaisle run` on a real 2-rank torch.distributed (gloo) deadlock.

Run: python benchmarks/bench_hang.py [--runs 20] [--hang-timeout 10]

Each run launches `coldaisle run --hang-timeout T -- torchrun --standalone --nproc-per-node 2
tests/guard/jobs/gloo_allreduce.py --skip-at N` (rank 1 skips its all_reduce at step N, N varied per run)
and reads the bundle's verdict.json:
  flagged  seconds from the last progress of any rank to the supervisor flagging "no progress"
           (`freshest_age_s`: the timeout plus up to one 0.5 s watch interval);
  named    flagged plus the time to dump every process with py-spy and place each rank (`analysis_s`):
           when the verdict, naming the straggler, is given.
The reference points (issue 4): the best published in-production figures, 15 s at p90 to flag a hang and
20 s to find the culprit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

JOB = Path(__file__).resolve().parents[1] / "tests" / "guard" / "jobs" / "gloo_allreduce.py"


def one_run(hang_timeout: float, skip_at: int) -> dict[str, float | int | bool]:
    """One faulty run: its exit code, latencies, and whether rank 1 was named."""
    with tempfile.TemporaryDirectory(prefix="coldaisle-bench-hang-") as tmp:
        bundle = Path(tmp) / "bundle"
        cmd = [sys.executable, "-m", "coldaisle", "run", "--hang-timeout", str(hang_timeout), "--grace", "5",
               "--bundle", str(bundle), "--", sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", str(JOB), "--steps", "100000", "--skip-at", str(skip_at)]
        t0 = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        wall = time.monotonic() - t0
        ev = json.loads((bundle / "verdict.json").read_text())["evidence"] if bundle.exists() else {}
    flagged = float(ev.get("freshest_age_s", float("nan")))
    return {"exit_code": done.returncode, "flagged_s": flagged,
            "named_s": flagged + float(ev.get("analysis_s", float("nan"))),
            "straggler_named": ev.get("straggler_ranks") == [1] and ev.get("waiting_ranks") == [0],
            "wall_s": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--hang-timeout", type=float, default=10.0)
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        r = one_run(args.hang_timeout, skip_at=3 + i % 7)
        runs.append(r)
        print(json.dumps({"run": i + 1, **r}), file=sys.stderr, flush=True)
    flagged = np.array([r["flagged_s"] for r in runs])
    named = np.array([r["named_s"] for r in runs])
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} nproc={os.cpu_count()}",
        "runs": len(runs), "hang_timeout_s": args.hang_timeout, "exit_70": sum(r["exit_code"] == 70 for r in runs),
        "straggler_named": sum(bool(r["straggler_named"]) for r in runs),
        "flagged_p50_s": round(float(np.nanpercentile(flagged, 50)), 2),
        "flagged_p90_s": round(float(np.nanpercentile(flagged, 90)), 2),
        "named_p50_s": round(float(np.nanpercentile(named, 50)), 2),
        "named_p90_s": round(float(np.nanpercentile(named, 90)), 2),
        "named_max_s": round(float(np.nanmax(named)), 2),
        "reference_p90_s": {"flag": 15.0, "culprit": 20.0},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
