"""The agent loop on the twin: the production loop, policy and engine driven by simulated time.

A healthy job must draw no Decision at all; a collective hang must be caught quickly with the stalled
rank's node drained and the job stopped; the loop keeps its fixed rate, survives a failing sample, and
remembers an Xid for five minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from coldaisle.actions.interface import ActionKind, Decision
from coldaisle.agent.loop import Agent
from coldaisle.policy.context import Jobs, Nodes
from coldaisle.policy.loader import LoadedPolicy, load_policy, parse_policy
from coldaisle.policy.step import XID_MEMORY_S
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.run import load_plan
from coldaisle.sim.scenario import parse_scenario
from coldaisle.sim.sources import SimJobs, SimNodes
from coldaisle.sim.twin import Twin
from coldaisle.telemetry.frame import Frame


class RecordingRunner:
    """Our action runner's seam, recording what it was asked to do (the twin is left alone)."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    def submit(self, decision: Decision) -> None:
        """Keep the Decision."""
        self.decisions.append(decision)


class FlakyBackend(SimBackend):
    """The whole twin, except that the `fail_on`-th sample() raises (a driver hiccup)."""

    def __init__(self, twin: Twin, fail_on: int) -> None:
        super().__init__(twin)
        self.fail_on, self.calls = fail_on, 0

    def sample(self) -> Frame:
        """Raise on the chosen call, otherwise read the twin."""
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("driver hiccup")
        return super().sample()


class Watched:
    """An Agent over the whole twin with the default (or a given) policy, recording everything it does."""

    def __init__(self, twin: Twin, policy: LoadedPolicy | None = None, *, backend: SimBackend | None = None,
                 interval_s: float = 1.0) -> None:
        self.twin = twin
        self.backend = backend or SimBackend(twin)
        self.runner = RecordingRunner()
        self.notes: list[str] = []
        self.ticks: list[tuple[float, int]] = []  # (monotonic, number of Decisions) per tick
        self.first: Frame | None = None
        self.agent = Agent(self.backend, policy or load_policy("default"), self.runner, twin.clock,
                           interval_s=interval_s, nodes=SimNodes(self.backend), jobs=SimJobs(self.backend),
                           on_tick=self._tick, note=self.notes.append)

    def _tick(self, frame: Frame, nodes: Nodes, jobs: Jobs, decisions: list[Decision]) -> None:
        self.ticks.append((frame.monotonic, len(decisions)))
        self.first = self.first or frame

    def run(self, until: float) -> None:
        self.agent.run(until=until)

    def since_start(self, d: Decision) -> float:
        """Seconds from the scenario start to Decision `d`."""
        return d.time - self.twin.plan.start_epoch


# -- no false alarms -------------------------------------------------------------------------------------
def test_healthy_training_draws_no_decision_in_30_minutes() -> None:
    twin = Twin(load_plan("healthy-training"))
    w = Watched(twin)
    w.run(until=1800.0)
    assert w.runner.decisions == []
    assert w.notes == [] and w.agent.engine.errors == {}
    assert (w.agent.stats.samples, w.agent.stats.errors, w.agent.stats.decisions) == (1800, 0, 0)
    # not vacuous: the job started at +5 min, every GPU computes and has warmed up under load
    last = w.agent.frames[-1]
    assert len(last.processes) == 32
    assert float(np.min(last.power_w)) > 500.0
    assert w.first is not None and w.first.monotonic == 0.0 and len(w.first.processes) == 0
    assert float(np.min(last.temperature_c)) > float(np.max(w.first.temperature_c)) + 10.0
    assert all(v.pending == 0 and v.firing == 0 for v in w.agent.engine.views(twin.clock.monotonic()))


# -- a collective hang ----------------------------------------------------------------------------------
HANG = """\
name: two-node-hang
description: A 2-node job; one rank stalls in a collective at +5 min while its peers spin at near-idle power.
start: 2024-06-03T08:00:00Z
duration: 30 min
step: 1 s
seed: 7
card: {model: h100-sxm-80gb}
topology: {nodes_per_rack: 2, gpus_per_node: 8, node_name: "gpu-{n:02d}"}
jobs:
  - name: pretrain
    id: 4242
    nodes: gpu-01..gpu-02
    start: "+1 min"
    compute_power: 620 W
    spin_power: 90 W
    memory_per_gpu: 60 GiB
timeline:
  - {at: "+5 min", fault: collective_deadlock, node: gpu-02, gpu: 3}
"""
FAULT_S = 300.0


@dataclass
class HangRun:
    """The watched hang and the job's processes (node, pid) just before the fault."""

    watched: Watched
    job_processes: set[tuple[str, int]]


@pytest.fixture(scope="module")
def hang_run() -> HangRun:
    """The hang scenario watched by the default policy until a minute and a half after the fault."""
    twin = Twin(parse_scenario(HANG, "hang.yaml")[1])
    w = Watched(twin)
    w.run(until=FAULT_S)
    frame = w.agent.frames[-1]  # the sample one second before the fault
    procs = {(frame.devices[int(d)].node, int(p)) for d, p in zip(frame.processes.device, frame.processes.pid,
                                                                   strict=True)}
    w.run(until=FAULT_S + 90)
    return HangRun(w, procs)


@pytest.fixture
def hang(hang_run: HangRun) -> Watched:
    return hang_run.watched


def test_collective_hang_fires_within_30_s_of_the_fault(hang: Watched) -> None:
    mine = [d for d in hang.runner.decisions if d.rule == "collective-hang"]
    assert mine, hang.notes
    first = min(hang.since_start(d) for d in mine)
    assert FAULT_S < first <= FAULT_S + 30.0, f"fired {first - FAULT_S:g} s after the fault"
    assert {d.rule for d in hang.runner.decisions} == {"collective-hang"}  # 90 W spin: power rules stay quiet
    assert hang.notes == []


def test_collective_hang_drains_exactly_the_stalled_gpus_node(hang: Watched) -> None:
    drains = [d for d in hang.runner.decisions if d.action == ActionKind.DRAIN]
    assert [d.target.node for d in drains] == ["gpu-02"]
    assert drains[0].evidence["stragglers"] == ["gpu-02/gpu3"]
    assert "gpu-02/gpu3" in drains[0].params["reason"]
    assert drains[0].severity == "critical"


def test_collective_hang_sends_sigterm_to_every_process_of_the_job(hang_run: HangRun) -> None:
    hang, expected = hang_run.watched, hang_run.job_processes
    terms = [d for d in hang.runner.decisions if d.action == ActionKind.SIGTERM]
    assert len(expected) == 16
    assert {(d.target.node, d.target.pid) for d in terms} == expected
    assert len(terms) == 16  # once each
    assert {d.target.job for d in terms} == {"pretrain"}
    notify = [d for d in hang.runner.decisions if d.action == ActionKind.NOTIFY]
    assert len(notify) == 1 and notify[0].target.job == "pretrain"
    # notify, drain and sigterm are the first rungs: all at the same sample
    assert len({hang.since_start(d) for d in [*notify, *terms]}) == 1


# -- the loop itself -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("interval", "until", "ticks"), [(1.0, 120.0, 120), (2.5, 600.0, 240), (0.5, 30.0, 60)])
def test_the_loop_ticks_at_its_fixed_rate_on_simulated_time(interval: float, until: float, ticks: int) -> None:
    twin = Twin(load_plan("healthy-training"))
    w = Watched(twin, interval_s=interval)
    w.run(until=until)
    assert w.agent.stats.samples == ticks == len(w.ticks)
    assert [t for t, _ in w.ticks] == pytest.approx([k * interval for k in range(ticks)])
    assert twin.clock.monotonic() == pytest.approx(until)


def test_the_loop_resumes_where_it_stopped() -> None:
    twin = Twin(load_plan("healthy-training"))
    w = Watched(twin)
    w.run(until=10.0)
    w.run(until=25.0)
    assert [t for t, _ in w.ticks] == [float(k) for k in range(25)]


def test_a_sample_that_raises_is_noted_and_the_loop_goes_on() -> None:
    twin = Twin(load_plan("healthy-training"))
    w = Watched(twin, backend=FlakyBackend(twin, fail_on=5))
    w.run(until=60.0)
    assert w.notes == ["tick failed: RuntimeError: driver hiccup"]
    assert (w.agent.stats.errors, w.agent.stats.samples) == (1, 59)
    times = [t for t, _ in w.ticks]
    assert 4.0 not in times and times[-1] == 59.0 and len(times) == 59
    assert twin.clock.monotonic() == 60.0


# -- Xid memory ------------------------------------------------------------------------------------------
XID = """\
name: xid
start: 2024-06-03T08:00:00Z
duration: 20 min
step: 1 s
card: {model: h100-sxm-80gb}
topology: {nodes_per_rack: 1, gpus_per_node: 4, node_name: "x-{n:02d}"}
timeline:
  - {at: "+1 min", fault: gpu_lost, node: x-01, gpu: 2, xid: 79}
"""
XID_POLICY = """\
rules:
  - name: xid-79
    when: xid == 79
    for: 0 s
    cooldown: 0 s
    actions: [{do: power_cap, watts: 300 W}]
  - name: any-xid
    when: known(xid)
    for: 0 s
    actions: [{do: notify}]
"""


def test_an_xid_reads_as_its_code_for_five_minutes_then_nan() -> None:
    twin = Twin(parse_scenario(XID, "xid.yaml")[1])
    w = Watched(twin, parse_policy(XID_POLICY))
    w.run(until=600.0)
    timeline = [(w.since_start(d), d.rule, str(d.action), d.restore, d.target.device)
                for d in w.runner.decisions]
    fault = 60.0
    assert timeline == [
        (fault, "xid-79", "power_cap", False, 2),
        (fault, "any-xid", "notify", False, 2),
        (fault + XID_MEMORY_S + 1, "xid-79", "power_cap", True, 2),  # the first sample past 5 minutes
    ]
    assert XID_MEMORY_S == 300.0
    assert w.notes == []


def test_the_agent_refuses_power_cycles_without_a_bmc_file_and_loads_one_that_enables_them(tmp_path) -> None:
    """`do: power_cycle` reaches the BMC executor: refused (and audited) unless a BMC file enables it."""
    from coldaisle.actions.interface import ActionKind, Decision, Status, Target
    from coldaisle.agent.assemble import RuntimeOptions, assemble
    from coldaisle.sim.open import BackendChoice

    d = Decision(0.0, "wedged", "critical", ActionKind.POWER_CYCLE, Target("train-01"))
    choice = BackendChoice("sim", "healthy-training")
    off = assemble(RuntimeOptions(choice, audit=tmp_path / "a.jsonl"))
    try:
        out = off.runner.submit(d)
        assert out is not None and out.status == Status.REFUSED and "enabled: true" in out.detail
    finally:
        off.close()
    bmc = tmp_path / "bmc.yaml"
    bmc.write_text("enabled: true\nnodes:\n  train-01: {host: 127.0.0.1, user: admin, password_env: IPMI_PASSWORD}\n")
    on = assemble(RuntimeOptions(choice, audit=tmp_path / "b.jsonl", bmc=bmc, enforce=False))
    try:
        out = on.runner.submit(d)
        assert out is not None and out.status == Status.DRY_RUN and "train-01" in out.detail
    finally:
        on.close()
