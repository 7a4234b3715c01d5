"""Nagios verdicts from agent states: what drains (CRITICAL), what only warns, and what we cannot judge."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coldaisle.agent.state import AgentState, GpuState, RuleState, XidSeen, write_state
from coldaisle.health.check import xid_severities
from coldaisle.health.verdict import Limits, NagiosStatus, judge

NOW = 1_800_000_000.0


def _gpu(i: int, **kw: object) -> GpuState:
    base = {"index": i, "uuid": f"GPU-{i}", "name": "NVIDIA H100 80GB HBM3", "lost": False, "temperature_c": 60.0,
            "slowdown_c": 87.0, "power_w": 500.0, "memory_used_bytes": 4e10, "memory_total_bytes": 8.5e10,
            "sample_age_s": 0.0}
    return GpuState(**{**base, **kw})  # type: ignore[arg-type]


def _state(*gpus: GpuState, **kw: object) -> AgentState:
    base = {"node": "gpu-node-01", "written_at": NOW - 1, "sample_time": NOW - 1, "interval_s": 1.0, "samples": 10,
            "errors": 0, "gpus": gpus or (_gpu(0), _gpu(1))}
    return AgentState(**{**base, **kw})  # type: ignore[arg-type]


XIDS = xid_severities()


def test_a_healthy_node_is_ok() -> None:
    v = judge(_state(), NOW, XIDS)
    assert v.status == NagiosStatus.OK and not v.drain and v.summary() == "OK: all GPUs healthy"


@pytest.mark.parametrize(("state", "status", "text"), [
    (_state(_gpu(0), _gpu(1, lost=True)), NagiosStatus.CRITICAL, "gpu1 lost (fell off the bus or stopped answering)"),
    (_state(_gpu(0, sample_age_s=45.0)), NagiosStatus.CRITICAL, "gpu0 has not answered for 45 s"),
    (_state(xids=(XidSeen(1, 79, 12.0),)), NagiosStatus.CRITICAL, "gpu1 Xid 79 12 s ago"),
    (_state(xids=(XidSeen(0, 48, 3.0),)), NagiosStatus.CRITICAL, "gpu0 Xid 48 3 s ago"),  # double-bit ECC
    (_state(xids=(XidSeen(0, 13, 3.0),)), NagiosStatus.WARNING, "gpu0 Xid 13 3 s ago"),  # usually the application
    (_state(host={"kernel_gpu_errors": 2.0}), NagiosStatus.CRITICAL, "kernel log reported 2 GPU errors recently"),
    (_state(host={"d_state_processes": 3.0}), NagiosStatus.WARNING, "3 processes in D state"),
    (_state(_gpu(0, temperature_c=84.0)), NagiosStatus.WARNING, "gpu0 at 84 C, slowdown at 87 C"),
    (_state(rules=(RuleState("thermal", "critical", 0, 2),)), NagiosStatus.WARNING,
     "rule thermal (critical) firing on 2"),
    (_state(written_at=NOW - 31), NagiosStatus.UNKNOWN,
     "agent state is 31 s old (limit 30 s): the agent is stopped or wedged"),
    (_state(samples=0), NagiosStatus.UNKNOWN, "the agent has not sampled yet"),
])
def test_verdicts(state: AgentState, status: NagiosStatus, text: str) -> None:
    v = judge(state, NOW, XIDS)
    assert v.status == status and v.drain == (status == NagiosStatus.CRITICAL)
    assert v.summary() == f"{status.name}: {text}"


def test_the_worst_problem_leads_and_every_one_is_kept() -> None:
    v = judge(_state(_gpu(0, temperature_c=85.0), _gpu(1, lost=True)), NOW, XIDS, Limits(expect_gpus=4))
    assert v.status == NagiosStatus.CRITICAL
    assert [p.status for p in v.problems] == [NagiosStatus.CRITICAL, NagiosStatus.CRITICAL, NagiosStatus.WARNING]
    assert v.summary() == "CRITICAL: 2 of 4 GPUs visible; gpu1 lost (fell off the bus or stopped answering)"


def test_the_xid_table_comes_from_the_cited_catalog() -> None:
    assert XIDS[79] == "critical" and XIDS[95] == "critical" and XIDS[43] == "warning" and XIDS[94] == "error"


def test_the_command_exits_with_nagios_codes(tmp_path: Path) -> None:
    now = time.time()
    cases = {"ok": (_state(written_at=now), 0, "OK: all GPUs healthy"),
             "lost": (_state(_gpu(0, lost=True), written_at=now), 2, "CRITICAL: gpu0 lost"),
             "stale": (_state(written_at=now - 600), 3, "UNKNOWN: agent state is 60")}
    for name, (state, code, first) in cases.items():
        write_state(tmp_path / f"{name}.json", state)
        cp = subprocess.run([sys.executable, "-m", "coldaisle", "health", "--state", str(tmp_path / f"{name}.json")],
                            capture_output=True, text=True, timeout=30, check=False)
        assert cp.returncode == code, (name, cp.stdout, cp.stderr)
        assert cp.stdout.startswith(first), cp.stdout
    cp = subprocess.run([sys.executable, "-m", "coldaisle", "health", "--state", str(tmp_path / "absent.json")],
                        capture_output=True, text=True, timeout=30, check=False)
    assert cp.returncode == 3 and "does not exist" in cp.stdout
    doc = json.loads((tmp_path / "lost.json").read_text())
    assert dataclasses.asdict(AgentState.from_json(doc).gpus[0])["lost"] is True
