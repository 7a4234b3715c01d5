"""Simulated executors on the twin: SIGTERM after the job's grace, D state escalating to a drain, drains."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldaisle.actions import audit
from coldaisle.actions.audit import AuditLog
from coldaisle.actions.interface import ActionKind, Decision, Status, Target
from coldaisle.actions.runner import ActionRunner
from coldaisle.sim.executors import SimDrain, SimSignaller
from coldaisle.sim.run import load_plan
from coldaisle.sim.twin import Twin

NODE = "gpu-node-01"


@pytest.fixture
def twin() -> Twin:
    """The fan-failure node with its job running."""
    tw = Twin(load_plan("single-node-fan-failure"))
    tw.clock.sleep(120)
    return tw


def _signal(pid: int, action: ActionKind = ActionKind.SIGTERM) -> Decision:
    return Decision(0.0, "runaway-python", "critical", action, Target(NODE, 0, pid=pid))


def test_sigterm_kills_after_the_jobs_grace(twin: Twin) -> None:
    pid = int(twin.workload.pid[0])
    signaller = SimSignaller(twin)
    dry = signaller.execute(_signal(pid), dry_run=True)
    assert dry.status == Status.DRY_RUN and dry.detail == f"would have sent SIGTERM to pid {pid} (python3) on {NODE}"
    outcome = signaller.execute(_signal(pid), dry_run=False)
    assert outcome.status == Status.DONE and "terminating" in outcome.detail
    assert twin.workload.pid[0] == pid  # still shutting down
    twin.clock.sleep(twin.plan.jobs[0].spec.term_grace + 1)
    assert pid not in twin.workload.pid
    again = signaller.execute(_signal(pid, ActionKind.SIGKILL), dry_run=False)
    assert again.status == Status.DONE and "already exited" in again.detail


def test_d_state_escalates_to_a_drain_of_the_node(twin: Twin, tmp_path: Path) -> None:
    pid = int(twin.workload.pid[0])
    twin.workload.dstate[0] = True  # the kernel has it in uninterruptible sleep
    log = AuditLog(tmp_path / "audit.jsonl", clock=twin.clock)
    runner = ActionRunner({ActionKind.SIGKILL: SimSignaller(twin), ActionKind.DRAIN: SimDrain(twin)}, log,
                          dry_run=False, clock=twin.clock)

    outcome = runner.submit(_signal(pid, ActionKind.SIGKILL))

    assert outcome.status == Status.FAILED and outcome.detail.startswith("unkillable: D state")
    assert bool(twin.state.node_drained[0])
    drain = runner.outcomes[-1]
    assert drain.decision.action == ActionKind.DRAIN and drain.status == Status.DONE
    assert drain.decision.params["reason"] == (f"runaway-python: process {pid} in D state cannot be killed; "
                                               f"draining node {NODE}")
    assert twin.workload.pid[0] == pid  # still there: no signal ends it
    kinds = [(r["kind"], r.get("action"), r.get("status")) for r in audit.read(tmp_path / "audit.jsonl")]
    assert kinds == [("decision", "sigkill", None), ("outcome", "sigkill", "failed"), ("note", None, None),
                     ("decision", "drain", None), ("outcome", "drain", "done")]


def test_sim_drain_leaves_a_persons_drain_alone(twin: Twin) -> None:
    drainer = SimDrain(twin)
    drain = Decision(0.0, "gpu-hot", "critical", ActionKind.DRAIN, Target(NODE), params={"reason": "gpu3 hot"})
    undrain = Decision(0.0, "gpu-hot", "critical", ActionKind.DRAIN, Target(NODE), restore=True)
    twin.drain(0, "maintenance", by="alice")
    out = drainer.execute(drain, dry_run=False)
    assert out.status == Status.DONE and "already drained by a person" in out.detail
    assert drainer.execute(undrain, dry_run=False).status == Status.REFUSED
    assert bool(twin.state.node_drained[0])


def test_sim_drain_and_undrain_our_own(twin: Twin) -> None:
    drainer = SimDrain(twin)
    drain = Decision(0.0, "gpu-hot", "critical", ActionKind.DRAIN, Target(NODE), params={"reason": "gpu3 hot"})
    assert drainer.execute(drain, dry_run=True).status == Status.DRY_RUN and not twin.state.node_drained[0]
    assert drainer.execute(drain, dry_run=False).detail == f"drained {NODE} (coldaisle: gpu3 hot)"
    assert twin.events[-1].fields == {"reason": "coldaisle: gpu3 hot", "by": "coldaisle"}
    undrain = Decision(0.0, "gpu-hot", "critical", ActionKind.DRAIN, Target(NODE), restore=True)
    assert drainer.execute(undrain, dry_run=False).status == Status.DONE
    assert not twin.state.node_drained[0]


def test_power_cycle_on_the_twin_is_refused_as_on_a_node_unless_enabled(twin: Twin) -> None:
    """Without a BMC file a node refuses power cycles; the twin's simulated BMC gives the same Outcome."""
    from coldaisle.actions.bmc import BmcFile, IpmiPowerCycle
    from coldaisle.sim.executors import SimPowerCycle

    d = Decision(0.0, "lemon", "critical", ActionKind.POWER_CYCLE, Target(NODE))
    on_twin = SimPowerCycle(twin).execute(d, dry_run=False)
    on_node = IpmiPowerCycle(BmcFile()).execute(d, dry_run=False)
    assert (on_twin.status, on_twin.detail) == (on_node.status, on_node.detail) == (Status.REFUSED, on_node.detail)
    assert bool(twin.state.node_up[0])


def test_power_cycle_on_the_twin_cuts_power_and_brings_the_node_back(twin: Twin) -> None:
    from coldaisle.sim.executors import SimPowerCycle

    cycle = SimPowerCycle(twin, enabled=True, off_s=60.0)
    d = Decision(0.0, "lemon", "critical", ActionKind.POWER_CYCLE, Target(NODE))
    assert cycle.execute(d, dry_run=True).status == Status.DRY_RUN and bool(twin.state.node_up[0])
    out = cycle.execute(d, dry_run=False)
    assert out.status == Status.DONE and "back on in 60 s" in out.detail
    gpus = twin.plan.layout.gpus_of_node(0)
    assert not twin.state.node_up[0] and twin.state.lost[gpus].all()  # the job's processes went with the power
    twin.clock.sleep(59)
    assert not twin.state.node_up[0]
    twin.clock.sleep(2)
    assert twin.state.node_up[0] and not twin.state.lost[gpus].any()
    assert [e.fields["state"] for e in twin.events if e.cls == "power_cycle"] == ["cycle", "on"]
    unknown = Decision(0.0, "lemon", "critical", ActionKind.POWER_CYCLE, Target("nope"))
    assert cycle.execute(unknown, dry_run=False).status == Status.FAILED
