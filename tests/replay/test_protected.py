"""Issue 3's acceptance on the twin: the protected replay of the incident with the default policy.

The very agent loop, engine and executors run against prometheus-unbound on simulated time, once with
the report's full-TDP spin and once with a spin near idle power (detection must not depend on power).
The run stops at 05:00: the deadlock (03:04), the KV runaway (04:15) and the cooling failure (04:30)
have all happened; `coldaisle sim test default prometheus-unbound` checks the whole 72 hours.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from coldaisle.actions.audit import read
from coldaisle.replay.protected import Guarded, guarded_replay
from coldaisle.sim.run import load_plan
from coldaisle.sim.scenario import find_scenario, parse_scenario

UNTIL_S = 2 * 3600.0  # 05:00
ONSET = datetime(2024, 5, 21, 3, 4, tzinfo=UTC).timestamp()


def _run(tmp: Path, spin: str | None) -> Guarded:
    if spin is None:
        plan = load_plan("prometheus-unbound")
    else:
        text = find_scenario("prometheus-unbound").read_text().replace("spin_power: 700 W ", f"spin_power: {spin} ")
        assert f"spin_power: {spin}" in text
        _, plan = parse_scenario(text, "prometheus-unbound-low-spin.yaml")
    return guarded_replay(plan, until_s=UNTIL_S, audit_path=tmp / "audit.jsonl")


@pytest.fixture(scope="module", params=["full TDP spin", "near-idle spin"])
def guarded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Guarded:
    return _run(tmp_path_factory.mktemp("guard"), None if request.param == "full TDP spin" else "90 W")


def _epoch(t: str) -> float:
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def _records(g: Guarded, kind: str) -> list[dict]:
    return [r for r in read(g.audit_path) if r.get("kind") == kind]


@pytest.mark.slow
def test_the_deadlock_is_detected_within_30_s_and_the_job_is_stopped(guarded: Guarded) -> None:
    hang = [d for d in _records(guarded, "decision") if d["rule"] in ("collective-hang", "runaway-power-process")]
    assert hang, "no rule saw the deadlock"
    assert min(_epoch(d["time"]) for d in hang) - ONSET <= 30
    collective = [d for d in hang if d["rule"] == "collective-hang"]
    assert collective and min(_epoch(d["time"]) for d in collective) - ONSET <= 30  # power-independent rule
    plan, wl = guarded.twin.plan, guarded.twin.workload
    job = [jp.spec.name for jp in plan.jobs].index("omni-reasoning")
    assert wl.job_status[job] != "running"
    assert not any(wl.groups[g].job == job for g in wl.group_of[wl.group_of >= 0])  # no rank of it is left
    exits = [e.time for e in guarded.twin.events if e.cls == "process_exit" and e.fields.get("job") == "omni-reasoning"]
    assert max(exits) - ONSET <= 90


@pytest.mark.slow
def test_no_gpu_exceeds_its_slowdown_temperature(guarded: Guarded) -> None:
    s, card = guarded.twin.state, guarded.twin.plan.card
    assert float(s.peak_c.max()) < card.slowdown_c
    assert not (s.above_slowdown_s > 0).any()


@pytest.mark.slow
def test_the_kv_runaway_on_node_gpu_102_is_stopped_before_the_device_fills(guarded: Guarded) -> None:
    plan, rec = guarded.twin.plan, guarded.twin.recorder
    g = plan.layout.gpu(plan.layout.node_index["node-gpu-102"], 2)
    peak = float(rec.view("gpu_memory_bytes")[:, g].max())
    assert peak < plan.card.memory_total_bytes
    assert peak > 62 * 2**30  # it did grow: the runaway happened and was cut short
    kinds = {e.cls for e in guarded.twin.events if e.host == "node-gpu-102"}
    assert not kinds & {"host_swap", "hung_task", "xid", "kernel_panic"}
    stopped = [d for d in _records(guarded, "decision") if d["rule"] == "memory-runaway" and d["action"] == "sigterm"]
    assert [d["target"]["node"] for d in stopped] == ["node-gpu-102"]


@pytest.mark.slow
def test_node_gpu_88_is_drained_with_a_reason_naming_the_evidence(guarded: Guarded) -> None:
    plan, s = guarded.twin.plan, guarded.twin.state
    assert s.node_drained[plan.layout.node_index["node-gpu-88"]]
    drains = [d for d in _records(guarded, "decision") if d["action"] == "drain"]
    assert {d["target"]["node"] for d in drains} == {"node-gpu-88"}
    reasons = " | ".join(d["params"]["reason"] for d in drains)
    assert "node-gpu-88/gpu2" in reasons
    assert "pcie_replay_total" in reasons or "not in it" in reasons
    slurm = [e for e in guarded.twin.events if e.cls == "node_drain"]
    assert [e.host for e in slurm] == ["node-gpu-88"]
    assert slurm[0].fields["reason"].startswith("coldaisle:")


@pytest.mark.slow
def test_every_step_is_in_the_audit_log(guarded: Guarded) -> None:
    decisions, outcomes = _records(guarded, "decision"), _records(guarded, "outcome")
    assert decisions and len(outcomes) >= len(decisions)
    for action in ("notify", "sigterm", "drain", "power_cap"):
        assert any(o["action"] == action and o["status"] == "done" for o in outcomes), action
    assert not [o for o in outcomes if o["status"] == "failed"]


@pytest.mark.slow
def test_the_unprotected_night_is_much_worse(guarded: Guarded, tmp_path: Path) -> None:
    from coldaisle.sim.run import replay

    bare = replay(guarded.twin.plan, until_s=UNTIL_S)
    assert bare.state.peak_c.max() > guarded.twin.state.peak_c.max() + 5
    assert bare.physics.spin_j > 10 * max(guarded.twin.physics.spin_j, 1.0)
    assert np.count_nonzero(bare.state.lost) > np.count_nonzero(guarded.twin.state.lost)
