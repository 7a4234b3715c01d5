"""Failure-mix runs under a policy: the paced agent, ETTR in the summary and report, and `sim compare`."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coldaisle.actions.audit import AuditLog, read
from coldaisle.replay.compare import NO_HANG, actions, compare_rows, compare_summary, load_side_policy, run_side
from coldaisle.replay.paced import paced_replay, protected_run
from coldaisle.replay.protected import guarded_replay
from coldaisle.replay.summary import SCHEMA, summarize
from coldaisle.sim.resolve import Plan
from coldaisle.sim.scenario import parse_scenario

# Four nodes train; at 00:35 a software bug hangs a collective on n02. The ranks spin at 500 W (below the
# default policy's 600 W runaway-process rule), so the collective-hang rule is what notices: it drains n02 (the
# straggler, whose hardware is fine) and stops the job. Unprotected, the NCCL watchdog does it after 10 min.
HANG = """\
name: fleet-hang
start: 2024-06-03T00:00:00Z
duration: 3 h
step: 1 s
record_every: 60 s
card: {model: h100-sxm-80gb}
topology: {nodes_per_rack: 4, gpus_per_node: 4, node_name: "n{n:02d}", host_power: 1 kW}
facility: {setpoint: 20 C, row_cooling: 50 kW}
jobs:
  - {name: train, id: 1, nodes: n01..n04, compute_power: 450 W, spin_power: 500 W, memory_per_gpu: 60 GiB,
     steps_per_second: 1 /s, nccl_timeout: 10 min}
timeline:
  - {at: "00:35", fault: collective_deadlock, node: n02, gpu: 1}
failures: {job: train, checkpoint_every: 10 min, restart: 5 min, swap: 15 min, agent_quiet_every: 10 min}
"""


@pytest.fixture(scope="module")
def plan() -> Plan:
    return parse_scenario(HANG, "fleet-hang.yaml")[1]


def test_the_paced_agent_stops_a_hang_exactly_when_a_one_second_agent_does(plan: Plan) -> None:
    paced, every_second = paced_replay(plan), guarded_replay(plan)
    assert paced.twin.campaign is not None and every_second.twin.campaign is not None
    got = [(i.stop_s, i.end_s, i.restart_s) for i in paced.twin.campaign.interruptions]
    assert got == [(i.stop_s, i.end_s, i.restart_s) for i in every_second.twin.campaign.interruptions]
    assert got[0][1] - got[0][0] < 60  # detected and stopped within a minute, not the watchdog's 10
    assert paced.agent.stats.samples < every_second.agent.stats.samples / 10
    assert paced.agent.stats.errors == 0


def test_a_straggler_drained_with_no_fault_under_it_is_a_false_drain(plan: Plan) -> None:
    g = protected_run(plan, "default")
    (i,) = g.twin.campaign.interruptions  # type: ignore[union-attr]
    assert (i.cause, i.swapped, i.false_swap, i.swap_s) == ("collective_deadlock", ("n02",), True, 900.0)
    led = g.twin.campaign.ledger(g.twin.t)  # type: ignore[union-attr]
    assert led.lost_s["false_drains"] == 900.0 and led.lost_s["restart"] == 300.0


def test_without_hang_detection_the_watchdog_stops_the_job_ten_minutes_later(plan: Plan) -> None:
    policy = load_side_policy(NO_HANG)
    assert policy is not None
    enabled = {cr.rule.name for cr in policy.rules if cr.rule.enabled}
    assert "collective-hang" not in enabled and "runaway-power-process" not in enabled
    assert {"gpu-lost-or-critical-xid", "thermal-approaching-slowdown"} <= enabled
    g = protected_run(plan, policy)
    (i,) = g.twin.campaign.interruptions  # type: ignore[union-attr]
    assert i.end_s - i.stop_s == 600.0 + 5.0  # the watchdog, then the launcher's teardown of the stalled rank
    assert not i.swapped


def test_compare_shows_what_hang_detection_saves_and_costs(plan: Plan) -> None:
    a, b = run_side(plan, "default"), run_side(plan, NO_HANG)
    out = compare_summary(plan, a, b)
    assert out["schema"] == "coldaisle.sim.compare/1"
    ta, tb = out["a"]["training"], out["b"]["training"]
    assert ta["lost_s"]["detection"] < 60 < 600 < tb["lost_s"]["detection"]
    assert ta["lost_s"]["false_drains"] == 900.0 and tb["lost_s"]["false_drains"] == 0.0
    assert out["a"]["actions"]["drains"] == 1 and out["b"]["actions"]["drains"] == 0
    rows = {r[0]: r[1:] for r in compare_rows(a, b)}
    assert rows["ETTR"] == (f"{ta['ettr']:.2%}", f"{tb['ettr']:.2%}")
    assert rows["lost: false drains"] == ("0.2 h", "0.0 h")


def test_compare_counts_every_action_of_the_run_though_the_audit_log_rotated(plan: Plan, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A long run's audit log rotates by size and its oldest files fall off (a 54-day llama3-16k run writes
    gigabytes): what compare counts is the whole run's, not what the last file still holds."""
    whole = actions(run_side(plan, "default", audit_path=tmp_path / "whole.jsonl"))
    assert whole["decisions"] == sum(1 for r in read(tmp_path / "whole.jsonl") if r.get("kind") == "decision") > 3
    import coldaisle.agent.assemble as assemble_module

    monkeypatch.setattr(assemble_module, "AuditLog", functools.partial(AuditLog, max_bytes=2048, backups=1))
    rotated = run_side(plan, "default", audit_path=tmp_path / "rotated.jsonl")
    kept = sum(1 for r in read(tmp_path / "rotated.jsonl", backups=True) if r.get("kind") == "decision")
    assert kept < whole["decisions"]  # the oldest records are gone from the files
    assert actions(rotated) == whole


def test_none_runs_without_an_agent(plan: Plan) -> None:
    side = run_side(plan, "none")
    assert side.guarded is None and side.source == "none"
    assert compare_summary(plan, side, side)["a"]["actions"] == {"decisions": 0, "drains": 0, "signals": 0}


def test_the_summary_of_a_failure_mix_carries_its_training_ledger(plan: Plan) -> None:
    twin = paced_replay(plan).twin
    s = summarize(twin)
    assert s["schema"] == SCHEMA
    t = s["training"]
    assert set(t) >= {"job", "ettr", "wall_s", "productive_s", "lost_s", "goodput", "interruptions",
                      "by_category", "interruption_log", "checkpoint_every_s", "restart_s", "swap_s"}
    assert t["productive_s"] + sum(t["lost_s"].values()) == pytest.approx(t["wall_s"])
    assert t["ettr"] == pytest.approx(t["productive_s"] / t["wall_s"], abs=1e-5)
    assert t["goodput"]["steps_kept"] == pytest.approx(t["productive_s"] * 1.0, abs=0.1)  # 1 step/s
    assert t["goodput"]["steps_computed"] > t["goodput"]["steps_kept"]  # the work redone after the rollback
    assert t["by_category"]["collective_deadlock"]["interruptions"] == 1


def test_a_scenario_without_a_failure_mix_has_no_training_ledger() -> None:
    _, plain = parse_scenario(HANG.replace(
        "failures: {job: train, checkpoint_every: 10 min, restart: 5 min, swap: 15 min, agent_quiet_every: 10 min}\n",
        ""), "plain.yaml")
    assert "training" not in summarize(protected_run(plain, "default", until_s=600).twin)


def cli(*args: str, cwd: Path, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")} | env_extra
    return subprocess.run([sys.executable, "-m", "coldaisle.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_sim_compare_cli_prints_json_and_writes_the_html_report(tmp_path: Path) -> None:
    scenario = tmp_path / "fleet-hang.yaml"
    scenario.write_text(HANG, encoding="utf-8")
    html = tmp_path / "compare.html"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = cli("sim", "compare", "default", NO_HANG, str(scenario), "--json", "--html", str(html), cwd=tmp_path,
               TMPDIR=str(tmp))
    assert proc.returncode == 0, proc.stderr
    assert list(tmp.iterdir()) == []  # the runs' audit logs went with the command
    out: dict[str, Any] = json.loads(proc.stdout)
    assert out["a"]["policy"] == "default" and out["b"]["policy"] == NO_HANG
    page = html.read_text(encoding="utf-8")
    assert "ETTR" in page and "false drains" in page and "no-hang-detection" in page


def test_sim_run_html_reports_ettr_and_time_lost_by_cause(tmp_path: Path) -> None:
    scenario = tmp_path / "fleet-hang.yaml"
    scenario.write_text(HANG, encoding="utf-8")
    html = tmp_path / "run.html"
    proc = cli("sim", "run", str(scenario), "--policy", "default", "--html", str(html), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Effective training time (ETTR)" in proc.stdout
    page = html.read_text(encoding="utf-8")
    assert "Where the wall time went" in page and "work lost since the last checkpoint" in page


def test_sim_run_json_counts_the_whole_run_and_says_whether_the_audit_lists_all_of_it(tmp_path: Path) -> None:
    scenario = tmp_path / "fleet-hang.yaml"
    scenario.write_text(HANG, encoding="utf-8")
    audit = tmp_path / "audit.jsonl"
    runs = []
    for _ in range(2):  # the second run appends to the same audit log
        proc = cli("sim", "run", str(scenario), "--policy", "default", "--json", "--audit", str(audit), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout))
    first, second = runs
    assert first["actions"] == second["actions"]
    assert first["actions"]["drains"] == 1 and first["actions"]["signals"] >= 1
    assert len(first["decisions"]) == len(first["outcomes"]) == first["actions"]["decisions"]
    assert first["audit_complete"] is True
    assert len(second["outcomes"]) == 2 * second["actions"]["decisions"]  # both runs' records
    assert second["audit_complete"] is False


def test_sim_compare_refuses_an_unknown_policy_before_running(tmp_path: Path) -> None:
    proc = cli("sim", "compare", "default", "no-such-policy.yaml", "healthy-training", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no-such-policy.yaml" in proc.stderr
