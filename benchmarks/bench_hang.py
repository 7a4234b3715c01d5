"""Hang detection and fail-slow naming of `coldaisle run`, default options, on real torchrun jobs (gloo, CPU).

Run: python benchmarks/bench_hang.py [--runs 20] [--healthy 20] [--stragglers 5] [--steps 0.2,1,5]

Every run is `coldaisle run -- torchrun --standalone --nproc-per-node 2 tests/guard/jobs/rhythm_job.py ...`
with no coldaisle option but `--bundle` (and `--no-preflight --backend none`: no GPU here). The job draws
batches from a DataLoader, computes each step on one core (lognormal jitter, sigma 0.25), all-reduces:

  deadlocks   `--runs` per step time: rank 1 either leaves the schedule (waits for a batch that never comes
              while rank 0 waits in all_reduce) or waits in recv() for a tensor rank 0 never sends (every rank in
              a collective), alternately, at a step drawn from 8..20 (4..7 for steps of 5 s). Latency from the
              last progress to the supervisor flagging it (`freshest_age_s`) and to the verdict with the
              straggler named (+ `analysis_s`); whether the named ranks are the right ones.
  healthy     `--healthy` runs of 40 steps of 0.5 s with a 25 s checkpoint (torch.save + fsync, rank 0; rank 1
              waits in a barrier), a 40 s evaluation pass and a 15 s data-loader stall on rank 1: any verdict is
              a false alarm (a straggler named is counted apart).
  stragglers  `--stragglers` runs of 60 steps of 0.5 s where rank 1 does 40 % more work per step: who is named
              and how long after the job started.
References: Mycroft flags hangs within 15 s at p90 in production; PyTorch's watchdog waits 600 s by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

JOB = Path(__file__).resolve().parents[1] / "tests" / "guard" / "jobs" / "rhythm_job.py"


def coldaisle_run(job_args: list[str], timeout: float = 600) -> dict[str, Any]:
    """One supervised run: exit code, wall time, and the bundle's verdict (None without one)."""
    with tempfile.TemporaryDirectory(prefix="coldaisle-bench-hang-") as tmp:
        bundle = Path(tmp) / "bundle"
        cmd = [sys.executable, "-m", "coldaisle", "run", "--no-preflight", "--backend", "none", "--bundle",
               str(bundle), "--", sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", str(JOB), *job_args]
        t0, wall0 = time.monotonic(), time.time()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        verdict = json.loads((bundle / "verdict.json").read_text()) if bundle.exists() else None
    return {"exit_code": done.returncode, "wall_s": round(time.monotonic() - t0, 1), "started": wall0,
            "verdict": verdict, "said": [ln for ln in done.stderr.splitlines() if ln.startswith("coldaisle run:")]}


def deadlock(step_s: float, i: int, rng: random.Random) -> dict[str, Any]:
    kind = ("skip", "crossed")[i % 2]
    at = rng.randint(4, 7) if step_s >= 5 else rng.randint(8, 20)
    r = coldaisle_run(["--steps", "100000", "--step-s", str(step_s), "--hang-at", str(at), "--hang-kind", kind,
                       "--seed", str(i)])
    ev = (r["verdict"] or {}).get("evidence", {})
    right = (ev.get("straggler_ranks") == [1] and ev.get("waiting_ranks") == [0]) if kind == "skip" else (
        ev.get("waiting_ranks") == [0, 1])
    flagged = float(ev.get("freshest_age_s", np.nan))
    return {"step_s": step_s, "kind": kind, "hang_at": at, "exit_code": r["exit_code"], "flagged_s": flagged,
            "named_s": flagged + float(ev.get("analysis_s", np.nan)), "adaptive": ev.get("adaptive"),
            "ranks_right": bool(right), "wall_s": r["wall_s"]}


def healthy(i: int) -> dict[str, Any]:
    r = coldaisle_run(["--steps", "40", "--step-s", "0.5", "--checkpoint-every", "25", "--checkpoint-s", "25",
                       "--eval-every", "30", "--eval-s", "40", "--stall-at", "10", "--stall-s", "15", "--seed",
                       str(100 + i)])
    v = r["verdict"] or {}
    return {"exit_code": r["exit_code"], "verdict": v.get("verdict"), "wall_s": r["wall_s"],
            "false_alarm": r["exit_code"] != 0 or v.get("verdict") not in (None, "straggler"),
            "false_straggler": v.get("verdict") == "straggler",
            "pauses": [ln.split("but not a hang: ", 1)[1].split(";")[0] for ln in r["said"] if "not a hang" in ln]}


def straggler(i: int) -> dict[str, Any]:
    r = coldaisle_run(["--steps", "60", "--step-s", "0.5", "--slow-rank", "1", "--slow-factor", "1.4", "--seed",
                       str(200 + i)])
    named = ((r["verdict"] or {}).get("evidence") or {}).get("stragglers_named") or []
    first = named[0] if named else {}
    ranks = [n["rank"] for n in named]
    return {"exit_code": r["exit_code"], "named": ranks, "right": ranks == [1],
            "score": first.get("score"), "named_after_s": round(first["named_at_wall"] - r["started"], 1)
            if first else None, "wall_s": r["wall_s"]}


def pct(values: list[float], q: float) -> float:
    a = np.array(values, float)
    return round(float(np.nanpercentile(a, q)), 2) if np.isfinite(a).any() else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="deadlocks per step time")
    ap.add_argument("--healthy", type=int, default=20)
    ap.add_argument("--stragglers", type=int, default=5)
    ap.add_argument("--steps", default="0.2,1,5", help="step times of the deadlock runs, seconds")
    ap.add_argument("--out", type=Path, default=None, help="also write every run as JSON here")
    args = ap.parse_args()
    rng = random.Random(7)
    runs: dict[str, list[dict[str, Any]]] = {"deadlock": [], "healthy": [], "straggler": []}
    for step_s in (float(x) for x in args.steps.split(",") if x):
        for i in range(args.runs):
            runs["deadlock"].append(d := deadlock(step_s, i, rng))
            print(json.dumps(d), file=sys.stderr, flush=True)
    for i in range(args.healthy):
        runs["healthy"].append(h := healthy(i))
        print(json.dumps(h), file=sys.stderr, flush=True)
    for i in range(args.stragglers):
        runs["straggler"].append(s := straggler(i))
        print(json.dumps(s), file=sys.stderr, flush=True)
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1))
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}\n")
    print("| step time | runs | exit 70 | right ranks named | flagged p50 / p90 | named p50 / p90 / max |")
    print("| --- | --- | --- | --- | --- | --- |")
    for step_s in sorted({d["step_s"] for d in runs["deadlock"]}):
        ds = [d for d in runs["deadlock"] if d["step_s"] == step_s]
        flagged, named = [d["flagged_s"] for d in ds], [d["named_s"] for d in ds]
        print(f"| {step_s:g} s | {len(ds)} | {sum(d['exit_code'] == 70 for d in ds)} | "
              f"{sum(d['ranks_right'] for d in ds)} | {pct(flagged, 50)} s / **{pct(flagged, 90)} s** | "
              f"{pct(named, 50)} s / **{pct(named, 90)} s** / {round(float(np.nanmax(named)), 2)} s |")
    hs = runs["healthy"]
    if hs:
        print(f"\nhealthy runs: {len(hs)}, false alarms: **{sum(h['false_alarm'] for h in hs)}**, "
              f"stragglers named wrongly: {sum(h['false_straggler'] for h in hs)}, pauses recognised: "
              f"{sum(len(h['pauses']) for h in hs)} (e.g. {hs[0]['pauses'][:3]})")
    ss = runs["straggler"]
    if ss:
        after = [s["named_after_s"] for s in ss if s["named_after_s"] is not None]
        print(f"\nfail-slow runs: {len(ss)}, rank 1 named: {sum(s['right'] for s in ss)}, other ranks named: "
              f"{sum(bool(set(s['named']) - {1}) for s in ss)}, named after (s from the job's start) "
              f"p50 {pct(after, 50)} / max {max(after) if after else 'n/a'}, scores "
              f"{[s['score'] for s in ss]}")


if __name__ == "__main__":
    main()
