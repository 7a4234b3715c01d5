"""A real deadlock in a real framework: 2 ranks of torch.distributed on gloo, launched by torchrun.

Rank 1 skips its all_reduce at step 5 (it goes to fetch a replacement batch that never comes), so rank 0
waits in all_reduce for ever: the report's collective hang with node-gpu-88 as the straggler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from coldaisle.guard.watch import ExitCode  # noqa: E402

JOB = Path(__file__).parent / "jobs" / "gloo_allreduce.py"
pytestmark = pytest.mark.slow


def coldaisle_run(tmp_path: Path, *job_args: str, hang_timeout: int = 20, backend: str = "auto",
                  run_args: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess[str], float]:
    """`coldaisle run --hang-timeout N -- torchrun --standalone --nproc-per-node 2 JOB ARGS` as a user types it."""
    cmd = [sys.executable, "-m", "coldaisle", "run", "--hang-timeout", str(hang_timeout), "--grace", "5",
           "--backend", backend, *run_args,
           "--bundle", str(tmp_path / "bundle"), "--",
           sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(JOB),
           *job_args]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    return done, time.monotonic() - t0


def job_processes_left() -> list[str]:
    """Any process on the host still running the job script (the launcher and both ranks must be gone)."""
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if str(JOB) in cmdline and state != "Z":
            left.append(f"{entry}: {cmdline}")
    return left


def test_gloo_deadlock_is_declared_with_both_stacks_and_rank_1_named(tmp_path: Path) -> None:
    done, _ = coldaisle_run(tmp_path, "--steps", "100000", "--skip-at", "5")
    assert done.returncode == ExitCode.HANG, done.stderr[-3000:]
    bundle = tmp_path / "bundle"
    verdict = json.loads((bundle / "verdict.json").read_text())
    ev = verdict["evidence"]
    # suspected on the job's learned rhythm (50 ms steps: the 8 s floor), confirmed and the straggler named in the
    # same verdict, well before the 20 s timeout
    assert ev["adaptive"] is True and ev["threshold_s"] == 8.0, ev
    assert 8 <= ev["freshest_age_s"] <= 10 and ev["freshest_age_s"] + ev["analysis_s"] <= 15, ev
    assert ev["waiting_ranks"] == [0] and ev["straggler_ranks"] == [1], ev
    assert "straggler: rank 1" in verdict["reason"] and "all_reduce" in verdict["reason"]
    by_rank = {r["rank"]: r for r in ev["ranks"]}
    rank0 = (bundle / "stacks" / f"{by_rank[0]['pid']}.txt").read_text()
    rank1 = (bundle / "stacks" / f"{by_rank[1]['pid']}.txt").read_text()
    assert "all_reduce (torch/distributed/distributed_c10d.py" in rank0
    assert "next_batch_after_bad_one" in rank1 and "all_reduce (" not in rank1
    assert "straggler" in (bundle / "summary.md").read_text()
    # the last minutes as a table and a plot: one row a second, the heartbeat ageing until the verdict
    rows = (bundle / "telemetry.csv").read_text().splitlines()
    assert rows[0].startswith("time_utc,job host memory (GiB),progress age (s),step") and len(rows) >= 8
    ages = [float(r.split(",")[2]) for r in rows[1:] if r.split(",")[2]]  # empty before the first heartbeat
    assert ages[-1] >= 7 and min(ages) < 2
    assert "<svg" in (bundle / "report.html").read_text() and "Heartbeat" in (bundle / "report.html").read_text()
    # the Flight Recorder, dumped on request while stuck: rank 1 never entered the collective rank 0 waits in
    assert sorted(p.name for p in (bundle / "flight_recorder").iterdir()) == ["rank-0.json", "rank-1.json"]
    assert ev["flight_recorder_behind"] == ["1"]
    assert ev["flight_recorder"]["0"]["last_seq"] == ev["flight_recorder"]["1"]["last_seq"] + 1
    assert job_processes_left() == []


def test_with_no_adaptive_the_fixed_timeout_is_the_verdict(tmp_path: Path) -> None:
    done, _ = coldaisle_run(tmp_path, "--steps", "100000", "--skip-at", "5", run_args=("--no-adaptive",))
    assert done.returncode == ExitCode.HANG, done.stderr[-3000:]
    ev = json.loads((tmp_path / "bundle" / "verdict.json").read_text())["evidence"]
    assert ev["adaptive"] is False and 20 <= ev["freshest_age_s"] + ev["analysis_s"] <= 25, ev
    assert ev["straggler_ranks"] == [1]
    assert job_processes_left() == []


def test_the_same_job_without_the_fault_completes_without_an_alarm(tmp_path: Path) -> None:
    done, _ = coldaisle_run(tmp_path, "--steps", "30")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 done" in done.stdout and "rank 1 done" in done.stdout
    assert not (tmp_path / "bundle").exists()
    assert "hang" not in done.stderr
    assert job_processes_left() == []


def test_without_heartbeats_or_gpus_the_stacks_alone_catch_the_deadlock(tmp_path: Path) -> None:
    done, _ = coldaisle_run(tmp_path, "--steps", "100000", "--skip-at", "5", "--no-progress", hang_timeout=8,
                            backend="none")
    assert done.returncode == ExitCode.HANG, done.stderr[-3000:]
    ev = json.loads((tmp_path / "bundle" / "verdict.json").read_text())["evidence"]
    assert ev["signal"] == "stacks" and ev["unchanged_s"] >= 8 and ev["dumps"] >= 3
    assert ev["waiting_ranks"] == [0] and ev["straggler_ranks"] == [1]
    assert job_processes_left() == []


def test_a_healthy_job_without_heartbeats_is_not_taken_for_a_hang(tmp_path: Path) -> None:
    done, _ = coldaisle_run(tmp_path, "--steps", "160", "--no-progress", hang_timeout=3, backend="none")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "bundle").exists()
