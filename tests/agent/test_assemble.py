"""One node runtime for the agent, `coldaisle top` and the twin's replay: what each gets is the same thing.

Each test here would have caught a drift between the three copies that existed before `assemble()`."""

from __future__ import annotations

import math
from pathlib import Path

from coldaisle.actions.interface import ActionKind, Decision, Status, Target
from coldaisle.agent.assemble import RuntimeOptions, assemble
from coldaisle.policy.loader import parse_policy
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.open import OpenBackend, open_twin
from coldaisle.sim.run import load_plan
from coldaisle.sim.twin import Twin
from coldaisle.telemetry.backend import BackendKind
from coldaisle.top.session import TopOptions, TopSession

KMSG = Path(__file__).resolve().parents[1] / "data" / "agent" / "kmsg.txt"
CYCLE = """\
rules:
  - name: wedged
    when: max(utilization_gpu) >= 0
    scope: node
    for: 0 s
    actions: [{do: power_cycle}]
"""


def _node_like(twin: Twin) -> OpenBackend:
    """A real node's runtime (host /proc, kernel log, node executors) whose GPUs the twin plays."""
    return OpenBackend(BackendKind.NVML, SimBackend(twin, node="infer-01"), twin.clock, "infer-01")


def test_a_power_cycle_rung_is_refused_on_the_twin_exactly_as_on_a_node(tmp_path: Path) -> None:
    """Drift caught: the twin had no power-cycle executor, so a rung a node REFUSED (no BMC file) FAILED there."""
    outcomes = {}
    decision = Decision(0.0, "wedged", "critical", ActionKind.POWER_CYCLE, Target("infer-01"))
    for name, opened in (("twin", open_twin(load_plan("runaway-process"), node="infer-01")),
                         ("node", _node_like(Twin(load_plan("runaway-process"))))):
        rt = assemble(RuntimeOptions(policy=parse_policy(CYCLE), enforce=True, audit=tmp_path / f"{name}.jsonl",
                                     kernel_log=None), opened=opened)
        try:
            out = rt.runner.executors[ActionKind.POWER_CYCLE].execute(decision, dry_run=False)
            outcomes[name] = (out.status, out.detail)
            if name == "twin":  # and through the whole runtime: the rung reaches the twin's BMC, which refuses
                rt.agent.tick()
                cycles = [o for o in rt.runner.outcomes if o.decision.action == ActionKind.POWER_CYCLE]
                assert [(o.status, o.detail) for o in cycles] == [outcomes["twin"]]
        finally:
            rt.close()
    assert outcomes["twin"] == outcomes["node"] and outcomes["twin"][0] == Status.REFUSED, outcomes


def test_top_and_the_agent_see_the_same_host_signals_on_a_node(tmp_path: Path) -> None:
    """Drift caught: top's own copy of the local node lacked `kernel_gpu_errors`, so kernel-log rules saw NaN."""
    seen = {}
    twin = Twin(load_plan("runaway-process"))
    agent = assemble(RuntimeOptions(audit=tmp_path / "agent" / "audit.jsonl", kernel_log=str(KMSG), enforce=False),
                     opened=_node_like(twin))
    top = TopSession(TopOptions(audit=tmp_path / "top" / "audit.jsonl", enforce=False), kernel_log=str(KMSG),
                     opened=_node_like(Twin(load_plan("runaway-process"))))
    try:
        for name, rt in (("agent", agent), ("top", top.rt)):
            rt.on_tick(lambda _f, nodes, _j, _d, name=name: seen.setdefault(name, dict(nodes.values)))
            rt.agent.tick()
    finally:
        agent.close()
        top.close()
    assert set(seen["agent"]) == set(seen["top"])
    assert "kernel_gpu_errors" in seen["top"] and not math.isnan(float(seen["top"]["kernel_gpu_errors"][0]))


def test_the_twin_and_the_node_get_the_same_kinds_of_executor(tmp_path: Path) -> None:
    """Every action a rule can order has an executor on both, so no rung FAILS for want of one."""
    kinds = {}
    for name, opened in (("twin", open_twin(load_plan("runaway-process"))),
                         ("node", _node_like(Twin(load_plan("runaway-process"))))):
        rt = assemble(RuntimeOptions(audit=tmp_path / f"{name}.jsonl", kernel_log=None), opened=opened)
        kinds[name] = set(rt.runner.executors)
        rt.close()
    assert kinds["twin"] == kinds["node"] == set(ActionKind)


def test_an_unknown_target_node_fails_cleanly_on_the_twin(tmp_path: Path) -> None:
    opened = open_twin(load_plan("runaway-process"))
    rt = assemble(RuntimeOptions(audit=tmp_path / "a.jsonl", enforce=True), opened=opened)
    try:
        out = rt.runner.submit(Decision(0.0, "r", "critical", ActionKind.DRAIN, Target("nope")))
        assert out is not None and out.status == Status.FAILED and "no node named 'nope'" in out.detail
    finally:
        rt.close()
