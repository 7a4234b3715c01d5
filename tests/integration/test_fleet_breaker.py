"""The fleet breaker against a real Slurm of twelve nodes, with one `coldaisle agent` process per node.

Each agent watches its own node of the twin (`--backend sim --node node-gpu-NN`) and drains through the real
Slurm (`--drain slurm`): the GPUs are simulated, the scheduler and its state are real. A wrong rule that matches
every node is shipped to all twelve agents: Slurm's own `sinfo -R` must show at most ceil(share x 12) drains of
coldaisle's, and every other agent must have audited a refusal, whether the agents start one by one or race.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slurm_fleet import SlurmFleet, slurm_fleet

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
N = 12
SHARE = 0.25  # ceil(0.25 * 12) = 3 nodes may be out of service

SCENARIO = """\
name: fleet-12
start: 2024-06-03T12:00:00Z
duration: 2 h
step: 1 s
card: {model: h100-sxm-80gb}
topology: {nodes_per_rack: 12, gpus_per_node: 1, node_name: "node-gpu-{n:02d}"}
jobs:
  - {name: train, id: 7, nodes: node-gpu-01..node-gpu-12, start: "+0 s", compute_power: 500 W, spin_power: 500 W,
     memory_per_gpu: 40 GiB}
"""
WRONG_RULE = f"""\
mode: enforce
drain_max_share: {SHARE}
drain_window: 1 h
rules:
  - name: wrong-rule
    description: a rule that matches every node (a threshold shipped with the wrong unit)
    scope: node
    when: max(power_w) > 1
    for: 0 s
    actions: [{{do: drain, reason: "shipped to every node by mistake"}}]
"""


@dataclass
class Agent:
    """One agent process: its node, its audit log."""

    node: str
    proc: subprocess.Popen[bytes]
    audit: Path
    log: Path

    def records(self) -> list[dict[str, Any]]:
        """The audit log so far."""
        try:
            return [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()]
        except OSError:
            return []

    def drain_outcome(self) -> dict[str, Any] | None:
        """The outcome of this agent's (first) drain, once it has one."""
        return next((r for r in self.records() if r["kind"] == "outcome" and r["action"] == "drain"
                     and not r["restore"]), None)


@pytest.fixture(scope="module")
def fleet() -> Iterator[SlurmFleet]:
    """Twelve real slurmd, idle."""
    with slurm_fleet(N) as f:
        yield f


@pytest.fixture
def agents(fleet: SlurmFleet, tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """`start(node, policy_text, scenario_text, **env)`: one `coldaisle agent` on one node; all stopped after."""
    fleet.reset()
    started: list[Agent] = []

    def start(node: str, policy: str, scenario: str = SCENARIO, speed: float = 1.0, **env: str) -> Agent:
        d = tmp_path / node
        d.mkdir(exist_ok=True)
        (d / "policy.yaml").write_text(policy)
        (d / "scenario.yaml").write_text(scenario)
        log = d / "agent.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "coldaisle", "agent", "--backend", "sim", "--scenario", str(d / "scenario.yaml"),
                 "--node", node, "--drain", "slurm", "--policy", str(d / "policy.yaml"), "--speed", str(speed),
                 "--listen", "127.0.0.1:0", "--audit", str(d / "audit.jsonl"), "--priority", "normal",
                 "--kmsg", "off"], stdout=sink, stderr=subprocess.STDOUT, env={**fleet.env, **env},
                start_new_session=True)
        agent = Agent(node, proc, d / "audit.jsonl", log)
        started.append(agent)
        return agent

    yield start
    for a in started:
        a.proc.terminate()
    for a in started:
        a.proc.wait(timeout=30)
    fleet.reset()


def _wait(what: str, ok: Callable[[], Any], timeout: float, agents: list[Agent]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := ok():
            return value
        time.sleep(0.2)
    logs = "\n".join(f"--- {a.node}\n{a.log.read_text()[-1500:]}" for a in agents)
    raise AssertionError(f"{what} not reached in {timeout:g} s\n{logs}")


def _refused(agent: Agent) -> bool:
    """The agent audited a refusal of its drain by the fleet breaker, with the counts it saw."""
    notes = [r for r in agent.records() if r.get("text") == "fleet breaker refused a drain"]
    outcome = agent.drain_outcome()
    return bool(notes) and notes[0]["fleet"] == N and outcome is not None and outcome["status"] == "refused"


def _check_cap(fleet: SlurmFleet, started: list[Agent]) -> None:
    limit = math.ceil(SHARE * N)
    drained = fleet.drained_by_coldaisle()
    assert len(drained) <= limit, fleet.reasons()
    assert len(drained) == limit  # the breaker lets exactly its share through, not fewer
    for a in started:
        if a.node in drained:
            assert a.drain_outcome()["status"] == "done", a.records()  # type: ignore[index]
        else:
            assert _refused(a), (a.node, a.records())


def test_twelve_agents_one_after_another_drain_no_more_than_the_share(fleet: SlurmFleet, agents: Any) -> None:
    started = []
    for node in fleet.nodes:
        a = agents(node, WRONG_RULE)
        started.append(a)
        _wait(f"{node}'s drain outcome", a.drain_outcome, 60, started)
    _check_cap(fleet, started)


def test_twelve_agents_racing_still_drain_no_more_than_the_share(fleet: SlurmFleet, agents: Any) -> None:
    """All start at once, so several decide within the same second: the oldest drains stay, the rest are undone."""
    started = [agents(node, WRONG_RULE) for node in fleet.nodes]
    _wait("every agent's drain outcome", lambda: all(a.drain_outcome() for a in started), 120, started)
    time.sleep(3)  # an undo lands a moment after its refusal is audited
    _check_cap(fleet, started)


def test_an_unreachable_scheduler_refuses_the_drain_and_alerts(fleet: SlurmFleet, agents: Any, tmp_path: Path) -> None:
    conf = tmp_path / "dead-slurm.conf"
    conf.write_text(fleet.conf.read_text().replace("SlurmctldPort=", "SlurmctldPort=1"))  # a port nobody serves
    a = agents("node-gpu-01", WRONG_RULE, SLURM_CONF=str(conf))
    outcome = _wait("the drain outcome", a.drain_outcome, 60, [a])
    assert outcome["status"] == "refused" and "fail safe" in outcome["detail"], outcome
    alerts = [r for r in a.records() if r["kind"] == "decision" and r["action"] == "notify"
              and "drain of node-gpu-01 refused" in r["params"]["reason"]]
    assert len(alerts) == 1 and "fail safe" in alerts[0]["params"]["reason"], a.records()
    sent = [r for r in a.records() if r["kind"] == "outcome" and r["action"] == "notify"]
    assert [r["status"] for r in sent] == ["done"]  # the alert went out
    assert fleet.drained_by_coldaisle() == []


FLAP = SCENARIO.replace("""jobs:
  - {name: train, id: 7, nodes: node-gpu-01..node-gpu-12, start: "+0 s", compute_power: 500 W, spin_power: 500 W,
     memory_per_gpu: 40 GiB}
""", """jobs:
  - {name: hot-1, id: 1, nodes: node-gpu-01, start: "+0 s", compute_power: 500 W, spin_power: 500 W,
     memory_per_gpu: 40 GiB}
  - {name: hot-2, id: 2, nodes: node-gpu-01, start: "+60 s", compute_power: 500 W, spin_power: 500 W,
     memory_per_gpu: 40 GiB}
  - {name: person, id: 3, nodes: node-gpu-02, start: "+0 s", compute_power: 500 W, spin_power: 500 W,
     memory_per_gpu: 40 GiB}
timeline:
  - {at: "+20 s", fault: cancel_job, job: hot-1}
  - {at: "+80 s", fault: cancel_job, job: hot-2}
""")
HEALING = """\
mode: enforce
drain_max_share: 0.25
max_resumes_per_day: 1
rules:
  - name: hot
    scope: node
    when: max(power_w) > 300
    for: 0 s
    cooldown: 0 s
    resume_after: 10 s
    actions: [{do: drain, reason: "drawing over 300 W"}]
"""


def test_a_recovered_node_resumes_a_flapping_one_does_not_and_a_person_s_drain_stays(fleet: SlurmFleet,
                                                                                     agents: Any) -> None:
    person = "replacing the GPU baseboard, ticket 4242"
    fleet.run("scontrol", "update", "NodeName=node-gpu-02", "State=DRAIN", f"Reason={person}")
    flapping = agents("node-gpu-01", HEALING, FLAP, speed=4.0)
    held = agents("node-gpu-02", HEALING, FLAP, speed=4.0)

    def resumes() -> list[dict[str, Any]]:
        return [r for r in flapping.records() if r["kind"] == "outcome" and r["action"] == "drain" and r["restore"]]

    _wait("the first drain", lambda: "node-gpu-01" in fleet.drained_by_coldaisle(), 60, [flapping])
    first = _wait("a resume after the job ended", resumes, 90, [flapping])  # cause clear 10 s + GPU preflight
    why = [r["params"]["reason"] for r in flapping.records() if r["kind"] == "decision" and r["restore"]]
    assert first[0]["status"] == "done" and why == ["hot: clear for 10 s and GPU preflight passed"]
    _wait("the second drain (hot-2 started)", lambda: "node-gpu-01" in fleet.drained_by_coldaisle(), 90, [flapping])
    _wait("the flapping verdict", lambda: fleet.reasons().get("node-gpu-01", "").startswith("coldaisle: flapping"),
          120, [flapping])
    assert len(resumes()) == 1  # no second resume: it stays drained, and its reason says why
    assert "resumed 1 times in 24 h" in fleet.reasons()["node-gpu-01"]
    assert any(r.get("text") == "healing stopped: flapping node stays drained" for r in flapping.records())
    assert fleet.reasons()["node-gpu-02"] == person  # never resumed, never overwritten
    outcome = held.drain_outcome()
    assert outcome is not None and "already drained by a person" in outcome["detail"], held.records()
    assert not [r for r in held.records() if r["kind"] == "outcome" and r.get("restore")]
    assert os.path.exists(flapping.audit.with_name("node-history.json"))


def test_health_checks_on_every_node_at_once_drain_no_more_than_the_share(fleet: SlurmFleet, tmp_path: Path) -> None:
    """Slurm runs HealthCheckProgram on every node at the same moment: a fault that looks the same everywhere (a
    driver update that loses a GPU on every node) must not drain the fleet. Health reads the agent's breaker
    settings from the state file and drains under the same cap; an open breaker refuses outright."""
    from coldaisle.agent.state import AgentState, GpuState, write_state

    fleet.reset()
    lost = GpuState(index=0, uuid="GPU-0", name="NVIDIA H100 80GB HBM3", lost=True, temperature_c=float("nan"),
                    slowdown_c=87.0, power_w=float("nan"), memory_used_bytes=float("nan"),
                    memory_total_bytes=8.5e10, sample_age_s=0.0)

    def health(node: str, **state: Any) -> subprocess.Popen[str]:
        path = tmp_path / f"{node}.json"
        write_state(path, AgentState(node=node, written_at=time.time(), sample_time=time.time(), interval_s=1.0,
                                     samples=5, errors=0, gpus=(lost,), drain_max_share=SHARE, **state))
        return subprocess.Popen([sys.executable, "-m", "coldaisle", "health", "--slurm", "--node", node, "--state",
                                 str(path)], env=fleet.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    try:
        runs = {node: health(node) for node in fleet.nodes}
        out = {node: p.communicate(timeout=60)[0] for node, p in runs.items()}
        assert all(p.returncode == 2 for p in runs.values()), out  # CRITICAL on every node, drained or not
        drained = fleet.drained_by_coldaisle()
        assert len(drained) == math.ceil(SHARE * N), (fleet.reasons(), out)
        assert all(fleet.reasons()[n].startswith("coldaisle: health: gpu0 lost") for n in drained)
        for node in set(fleet.nodes) - set(drained):
            assert f"slurm {node}: refused: " in out[node] and "fleet breaker" in out[node], out[node]
        fleet.reset()
        r = health("node-gpu-01", breaker_open=True)
        text = r.communicate(timeout=60)[0]
        assert "the agent's fleet breaker is open" in text and fleet.drained_by_coldaisle() == [], text
    finally:
        fleet.reset()
