"""`coldaisle run` with default options on real torchrun jobs (gloo, CPU): the pauses of a real run are told apart
from hangs, a hang is flagged in seconds, a slow rank is named, and two supervisors acting as two nodes agree.

The job (jobs/rhythm_job.py) draws batches from a real DataLoader, computes for each step, all-reduces, writes
checkpoints with torch.save and fsync, runs evaluation passes; the pauses here are 10-12 s, each longer than the
8 s the supervisor waits before it suspects a hang, so each one is a chance for a false alarm.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from promserver import free_port

pytest.importorskip("torch")

from coldaisle.guard.watch import ExitCode

JOB = Path(__file__).parent / "jobs" / "rhythm_job.py"
pytestmark = pytest.mark.slow


def run(tmp_path: Path, *job_args: str, name: str = "bundle", launcher: tuple[str, ...] = (
        "--standalone", "--nproc-per-node", "2"), timeout: float = 240, env: dict[str, str] | None = None,
        ) -> subprocess.Popen[str]:
    """`coldaisle run -- torchrun ... rhythm_job.py ARGS` with default options, started (not waited for)."""
    cmd = [sys.executable, "-m", "coldaisle", "run", "--no-preflight", "--backend", "none", "--grace", "5",
           "--drain", "dry-run", "--bundle", str(tmp_path / name), "--",
           sys.executable, "-m", "torch.distributed.run", *launcher, str(JOB), *job_args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def said(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("coldaisle run:")]


def test_checkpoint_evaluation_and_a_loader_stall_are_pauses_not_hangs(tmp_path: Path) -> None:
    # a loader stall at step 6, an evaluation at step 25, a checkpoint at step 45: about 6 s of steps between
    # pauses, so the supervisor sees the job progress again (and says the next pause anew) on a loaded host too
    rc, out, err = finish(run(tmp_path, "--steps", "50", "--step-s", "0.3", "--checkpoint-every", "46",
                              "--checkpoint-s", "12", "--eval-every", "26", "--eval-s", "12", "--stall-at", "6",
                              "--stall-s", "10"))
    lines = said(err)
    told = "\n".join(lines)
    assert rc == 0, told + err[-3000:]
    assert "rank 0 done after 50 steps" in out and "rank 1 done after 50 steps" in out
    pauses = [line for line in lines if "but not a hang" in line]
    assert any("rank 1 waiting for its data loader" in p for p in pauses), told
    assert any("rank 0 reading/writing" in p for p in pauses), told
    assert any("evaluating" in p and "evaluate (rhythm_job.py" in p for p in pauses), told
    assert not (tmp_path / "bundle").exists(), told  # no hang, and no rank taken for a straggler


def test_a_declared_phase_is_waited_for_without_a_suspicion(tmp_path: Path) -> None:
    rc, _, err = finish(run(tmp_path, "--steps", "16", "--step-s", "0.3", "--checkpoint-every", "8",
                            "--checkpoint-s", "11", "--phases"))
    assert rc == 0, err[-3000:]
    assert not [line for line in said(err) if "no progress" in line], said(err)


def test_a_crossed_deadlock_is_flagged_within_fifteen_seconds_of_the_last_progress(tmp_path: Path) -> None:
    rc, _, err = finish(run(tmp_path, "--steps", "100000", "--step-s", "0.5", "--hang-at", "14",
                            "--hang-kind", "crossed"))
    assert rc == ExitCode.HANG, err[-3000:]
    ev = json.loads((tmp_path / "bundle" / "verdict.json").read_text())["evidence"]
    assert ev["adaptive"] is True and 0.4 <= ev["step_median_s"] <= 0.7, ev
    assert ev["freshest_age_s"] + ev["analysis_s"] <= 15, ev
    assert ev["waiting_ranks"] == [0, 1] and ev["straggler_ranks"] == [], ev  # every rank in a collective


def test_a_rank_doing_forty_percent_more_work_is_named_and_the_job_goes_on(tmp_path: Path) -> None:
    rc, out, err = finish(run(tmp_path, "--steps", "90", "--step-s", "0.3", "--slow-rank", "1",
                              "--slow-factor", "1.4"))
    assert rc == 0 and "rank 1 done after 90 steps" in out, err[-3000:]
    named = [line for line in said(err) if "straggler:" in line]
    assert len(named) == 1 and "straggler: rank 1 on " in named[0], said(err)
    verdict = json.loads((tmp_path / "bundle" / "verdict.json").read_text())
    assert verdict["verdict"] == "straggler" and verdict["exit_code"] == 0
    [rank1] = verdict["evidence"]["stragglers_named"]
    assert rank1["rank"] == 1 and rank1["score"] >= 0.15 and rank1["host"] == socket.gethostname().split(".")[0]
    assert all(s["score"] < 0.15 for s in verdict["evidence"]["straggler_scores"] if s["rank"] == 0)


def test_two_supervisors_as_two_nodes_agree_and_only_the_straggler_s_node_drains(tmp_path: Path) -> None:
    """torchrun --nnodes 2 on localhost: one supervisor per 'node'; rank 1 (node 1) leaves the schedule."""
    port = str(free_port())
    procs = [run(tmp_path, "--steps", "100000", "--step-s", "0.5", "--hang-at", "12", "--hang-kind", "skip",
                 name=f"node{i}", launcher=("--nnodes", "2", "--node-rank", str(i), "--nproc-per-node", "1",
                                            "--master-addr", "127.0.0.1", "--master-port", port))
             for i in (0, 1)]
    results = [finish(p) for p in procs]
    verdicts = [json.loads((tmp_path / f"node{i}" / "verdict.json").read_text()) for i in (0, 1)]
    for (rc, _, err), v in zip(results, verdicts, strict=True):
        assert rc == ExitCode.HANG, err[-3000:]
        ev = v["evidence"]
        assert ev["nodes_agreeing"] == [0, 1] and ev["straggler_ranks"] == [1] and ev["waiting_ranks"] == [0], ev
        assert ev["straggler_nodes"] == [1] and ev["freshest_age_s"] <= 15, ev
    assert [v["evidence"]["straggler_here"] for v in verdicts] == [False, True]
    drains = [[a for a in v["actions"] if "straggler rank(s) 1" in a] for v in verdicts]
    assert drains[0] == ["straggler rank(s) 1 on node(s) 1: this node stays in service"], drains
    assert len(drains[1]) == 1 and drains[1][0].startswith("straggler rank(s) 1 of the hung job ran on this node: ")
