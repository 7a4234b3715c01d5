"""The GPU watches of `coldaisle run` on the twin: collective spin (the report's 03:04 deadlock) and the
KV-cache runaway on node-gpu-102 (04:15), each caught before harm; a healthy job raises nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coldaisle.guard.gpuwatch import GpuWatch, SpinWatch, job_devices
from coldaisle.guard.watch import VerdictKind
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.run import load_plan, parse_until
from coldaisle.sim.twin import Twin


def watch_until(scenario: str, node: str, start: str, seconds: int, env: dict[str, str] | None = None
                ) -> tuple[int | None, object, SimBackend]:
    """Step the twin one second at a time from `start`; the first verdict and when (seconds after start)."""
    plan = load_plan(scenario)
    twin = Twin(plan)
    t0 = parse_until(start, plan)
    assert t0 is not None
    twin.run_until(t0)
    backend = SimBackend(twin, node=node)
    w = GpuWatch(backend, hang_timeout_s=10, lead_s=6, env=env or {})
    for k in range(seconds):
        twin.clock.advance_to(t0 + k)
        v = w.check(t0 + k, set())
        if v is not None:
            return k, v, backend
    return None, None, backend


def test_the_deadlock_spin_is_a_hang_after_the_timeout() -> None:
    k, v, _ = watch_until("prometheus-unbound", "node-gpu-12", "03:03:30", 120)
    assert k is not None and v.kind == VerdictKind.HANG and v.evidence["signal"] == "gpu_spin"
    assert 30 + 10 <= k <= 30 + 10 + 30  # the spin starts after 03:04 and must hold for the whole timeout
    assert v.evidence["gpus"] == [f"node-gpu-12/gpu{i}" for i in range(4)]
    assert min(v.evidence["power_w"]) > 600  # busy-waiting at full power, as the report says


def test_a_healthy_training_job_never_looks_like_a_spin() -> None:
    k, v, _ = watch_until("healthy-training", "train-01", "+10 min", 300)
    assert k is None and v is None


def test_the_kv_runaway_is_stopped_before_the_card_fills() -> None:
    k, v, backend = watch_until("prometheus-unbound", "node-gpu-102", "04:14:30", 600, {"CUDA_VISIBLE_DEVICES": "2"})
    assert k is not None and v.kind == VerdictKind.RUNAWAY_MEMORY, v
    assert "node-gpu-102/gpu2" in v.reason
    ev = v.evidence
    assert ev["used_bytes"] < ev["limit_bytes"] and 0 < ev["time_to_limit_s"] <= 6
    assert not backend.twin.state.lost[backend.gpus].any()  # in time: no GPU of the node has fallen off the bus


def test_job_devices_by_process_then_visible_devices_then_all() -> None:
    plan = load_plan("prometheus-unbound")
    twin = Twin(plan)
    twin.run_until(parse_until("03:02", plan))
    frame = SimBackend(twin, node="node-gpu-12").sample()
    pid = int(frame.processes.pid[1])
    assert job_devices(frame, {pid}, {}).tolist() == [int(frame.processes.device[1])]
    assert job_devices(frame, {999_999}, {"CUDA_VISIBLE_DEVICES": "1,3"}).tolist() == [1, 3]
    assert job_devices(frame, set(), {"CUDA_VISIBLE_DEVICES": frame.devices[2].uuid}).tolist() == [2]
    assert job_devices(frame, set(), {}).tolist() == [0, 1, 2, 3]


def test_an_unsupported_link_reading_does_not_veto_the_spin() -> None:
    plan = load_plan("prometheus-unbound")
    twin = Twin(plan)
    twin.run_until(parse_until("03:06", plan))
    frame = SimBackend(twin, node="node-gpu-12").sample()
    frame.nvlink_rx_bytes_per_s.flags.writeable = True
    w = SpinWatch(0.0)
    assert w.add(0.0, frame, np.arange(4)) is not None


@pytest.mark.slow
def test_coldaisle_run_on_the_twin_stops_a_job_whose_gpus_spin(tmp_path: Path) -> None:
    got = subprocess.run([sys.executable, "-m", "coldaisle", "run", "--backend", "sim", "--sim-node", "node-gpu-12",
                          "--sim-start", "03:03:55", "--hang-timeout", "5", "--grace", "2", "--no-preflight",
                          "--bundle", str(tmp_path / "b"), "--", "sleep", "120"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert got.returncode == 70, got.stderr
    assert "collective spin on every GPU of the job" in (tmp_path / "b" / "summary.md").read_text()


def test_the_policy_stops_a_job_whose_gpu_keeps_heating_as_thermal() -> None:
    """single-node-fan-failure: gpu3's fan dies at 10:20. The agent would cap it; here nobody does, so the
    default policy's thermal rule reaches its SIGTERM rung (90 s after firing): a thermal verdict (exit 72)."""
    from coldaisle.guard.policywatch import PolicyWatch
    from coldaisle.policy.loader import load_policy

    plan = load_plan("single-node-fan-failure")
    twin = Twin(plan)
    t0 = parse_until("10:19", plan)
    assert t0 is not None
    twin.run_until(t0)
    backend = SimBackend(twin, node="gpu-node-01")
    said: list[str] = []
    policy = PolicyWatch(load_policy("default"), devices=len(backend.devices()), interval_s=1.0,
                         wall=twin.clock.time, say=said.append)
    w = GpuWatch(backend, hang_timeout_s=600, lead_s=6, env={}, policy=policy)
    pids = {int(p) for p in backend.sample().processes.pid}
    for k in range(1800):
        twin.clock.advance_to(t0 + k)
        v = w.check(t0 + k, pids)
        if v is not None:
            break
    assert v is not None and v.kind == VerdictKind.THERMAL, v
    assert v.evidence["rule"] == "thermal-approaching-slowdown" and "gpu3" in v.evidence["target"]
    assert any("thermal-approaching-slowdown fired (notify" in s for s in said)
    temp = backend.sample().temperature_c[3]
    assert temp < backend.devices()[3].shutdown_temperature_c  # stopped before the card shuts itself down
    assert "collective-hang" not in policy.kinds  # hang rules stay with run's own --hang-timeout watches


XID_SCENARIO = """\
name: xid
start: 2024-06-03T08:00:00Z
duration: 10 min
step: 1 s
card: {model: h100-sxm-80gb}
topology: {nodes_per_rack: 1, gpus_per_node: 4, node_name: "x-{n:02d}"}
timeline:
  - {at: "+1 min", fault: gpu_lost, node: x-01, gpu: 2, xid: 48}
"""
XID_RULE = """\
rules:
  - name: double-bit-ecc
    when: xid == 48
    for: 0 s
    actions: [{do: notify}]
"""


def test_an_xid_rule_fires_under_coldaisle_run() -> None:
    """Drift caught: run's policy watch once built its context without the Xid column, so `xid` rules never fired.

    Now the agent and `coldaisle run` share one policy step: the Xid the twin's GPU reports reaches both rules."""
    from coldaisle.guard.policywatch import PolicyWatch
    from coldaisle.policy.loader import parse_policy
    from coldaisle.sim.scenario import parse_scenario

    twin = Twin(parse_scenario(XID_SCENARIO, "xid.yaml")[1])
    backend = SimBackend(twin, node="x-01")
    said: list[str] = []
    watch = PolicyWatch(parse_policy(XID_RULE), devices=4, interval_s=1.0, wall=twin.clock.time, say=said.append)
    first_said = None
    for t in range(0, 120):
        twin.clock.advance_to(float(t))
        assert watch.check(backend.sample(), np.arange(4), set()) is None  # a notify rung stops nothing
        if said and first_said is None:
            first_said = t
    assert first_said == 60, said  # the fault's minute, not before
    assert said == ["policy rule double-bit-ecc fired (notify on x-01/gpu2 job supervised-job): the node agent "
                    "acts on it; coldaisle run stops the job only when a rule orders it"]
