"""The flagship: the unprotected replay of "Prometheus Unbound" reproduces the incident report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from coldaisle.replay.demo import REPORTED_RACK4_SHELF2, sensor_at
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.run import load_plan, replay
from coldaisle.sim.scenario import find_scenario, parse_scenario
from coldaisle.sim.state import Work
from coldaisle.sim.twin import Twin
from coldaisle.telemetry.events import Event

UNTIL_S = 3600.0  # 04:00 covers the deadlock, the heat and the emergency power off
AISLES = [f"cold-aisle-row{r}" for r in (1, 2, 3, 4)]


def at(clock: str) -> float:
    """Seconds after the 03:00 start."""
    h, m = (int(x) for x in clock.split(":"))
    return (h - 3) * 3600.0 + m * 60.0


def hhmm(e: Event) -> str:
    return e.utc.strftime("%H:%M")


@pytest.fixture(scope="module")
def night() -> Twin:
    return replay(load_plan("prometheus-unbound"), until_s=UNTIL_S)


@pytest.fixture(scope="module")
def morning() -> Twin:
    """To 04:25: the relaunch, the bootstrap timeout and node-gpu-102's KV runaway."""
    return replay(load_plan("prometheus-unbound"), until_s=at("04:25"))


@pytest.fixture(scope="module")
def flagship_text() -> str:
    return find_scenario("prometheus-unbound").read_text(encoding="utf-8")


@pytest.mark.parametrize(("minute", "reported_c"), REPORTED_RACK4_SHELF2)
def test_rack4_shelf2_matches_the_report_within_5_c(night: Twin, minute: int, reported_c: float) -> None:
    assert sensor_at(night, "rack4-shelf2", minute * 60.0) == pytest.approx(reported_c, abs=5.0)


def test_the_report_readings_are_the_appendix() -> None:
    """The readings the demo and these tests compare against are the post-mortem's Appendix B, as printed there."""
    text = (Path(__file__).resolve().parents[1] / "data" / "sim" / "incident-appendix-b.txt").read_text()
    printed = [(int(m), float(c)) for m, c in re.findall(r"^– 03:(\d\d): (\d+)°C", text, re.M)]
    assert len(printed) == 6 and tuple(printed) == REPORTED_RACK4_SHELF2


def test_the_cold_aisle_goes_from_18_c_past_40_c_within_six_minutes_of_the_deadlock(night: Twin) -> None:
    for name in AISLES:
        assert sensor_at(night, name, 0.0) == pytest.approx(18.0, abs=0.01)
        assert sensor_at(night, name, at("03:04")) == pytest.approx(18.0, abs=1.0)
        assert sensor_at(night, name, at("03:10")) >= 40.0
    rec = night.recorder
    t, aisle = rec.view("t"), rec.view("aisle_c")
    first_hot = t[np.argmax(aisle.min(axis=1) >= 40.0)]
    assert at("03:04") < first_hot <= at("03:10")


def test_the_twin_knows_the_deadlock_began_at_0304_on_node_gpu_88(night: Twin) -> None:
    truth = [e for e in night.events if e.source == "twin" and e.cls == "collective_deadlock"]
    assert len(truth) == 1
    e = truth[0]
    assert (e.host, hhmm(e), e.fields["gpu"], e.fields["job"]) == ("node-gpu-88", "03:04", 2,
                                                                         "omni-reasoning")
    assert e.fields["ranks"] == 512
    aer = [x for x in night.events if x.cls == "pcie_aer"]
    assert aer and all(x.host == "node-gpu-88" and hhmm(x) == "03:04" for x in aer)


def test_every_other_gpu_busy_waits_and_the_energy_is_counted(night: Twin) -> None:
    twin = replay(load_plan("prometheus-unbound"), until_s=at("03:06"))
    work = twin.state.work
    assert (work == Work.STALLED).sum() == 1
    assert (work == Work.SPIN).sum() == 511
    assert twin.physics.spin_j > 0
    assert night.physics.spin_j > 0.3 * night.physics.it_j  # most of the night's energy was wasted spinning


def test_rack4_is_powered_off_at_0320_because_it_was_hot(night: Twin) -> None:
    epo = [e for e in night.events if e.cls == "emergency_power_off"]
    assert len(epo) == 1
    assert (hhmm(epo[0]), epo[0].fields["rack"], epo[0].fields["by"]) == ("03:20", 4, "sre")
    hottest = float(epo[0].fields["reason"].split()[2])
    assert hottest > 90.0
    lay = night.plan.layout
    rack4 = lay.node_rack == 3
    assert not night.state.node_up[rack4].any()
    assert night.state.node_up[~rack4].all()
    assert {lay.node_names[n] for n in np.flatnonzero(rack4)} == {f"node-gpu-{n}" for n in range(49, 65)}


def test_the_power_off_is_conditional_on_the_heat(flagship_text: str) -> None:
    text = flagship_text.replace("if_any_gpu_above: 90 C", "if_any_gpu_above: 99 C")
    assert text != flagship_text
    twin = replay(parse_scenario(text)[1], until_s=at("03:25"))
    assert not [e for e in twin.events if e.cls == "emergency_power_off"]
    spared = [e for e in twin.events if e.cls == "emergency_power_off_not_needed"]
    assert len(spared) == 1 and spared[0].fields["rack"] == 4
    assert twin.state.node_up.all()


def test_the_0412_bootstrap_timeout_names_node_gpu_44_and_its_peer(morning: Twin) -> None:
    boot = [e for e in morning.events if e.cls == "nccl_bootstrap_timeout"]
    assert len(boot) == 1
    e = boot[0]
    assert (e.host, e.fields["peer"], e.fields["port"], hhmm(e)) == ("node-gpu-44", "node-gpu-45", 54321,
                                                                             "04:12")
    assert e.source == "nccl"
    assert e.fields["job"] == "omni-serve"


def test_node_gpu_102_goes_swap_hung_task_xid79_panic_in_that_order(morning: Twin) -> None:
    chain = [e for e in morning.events if e.host == "node-gpu-102" and e.source == "kernel"]
    classes = [e.cls for e in chain]
    order = ["host_swap", "hung_task", "xid", "kernel_panic"]
    assert [c for c in classes if c in order] == order
    times = {e.cls: e.time for e in chain}
    assert times["host_swap"] < times["hung_task"] < times["xid"] <= times["kernel_panic"]
    xid = next(e for e in chain if e.cls == "xid")
    assert xid.fields["xid"] == 79 and xid.fields["gpu"] == 2
    assert "gpu_fell_off_bus" in classes
    pids = {e.fields["pid"] for e in chain if "pid" in e.fields}
    assert len(pids) == 1  # the one python3 process of the runaway request
    node = morning.plan.layout.node_index["node-gpu-102"]
    assert not morning.state.node_up[node]
    truth = [e.cls for e in morning.events if e.host == "node-gpu-102" and e.source == "twin"]
    assert truth.index("kv_growth_start") < truth.index("process_d_state")


def test_the_hang_signature_does_not_depend_on_power(flagship_text: str, night: Twin) -> None:
    """Spinning near idle power: SMs still read ~100 % busy, memory ~0 %, and nothing gets hot."""
    assert flagship_text.count("spin_power: 700 W") == 2
    cool_plan = parse_scenario(flagship_text.replace("spin_power: 700 W", "spin_power: 90 W"))[1]
    signatures = []
    for plan in (load_plan("prometheus-unbound"), cool_plan):
        twin = replay(plan, until_s=at("03:10"))
        frame = SimBackend(twin).sample()
        spinning = twin.state.work == Work.SPIN
        assert spinning.sum() == 511
        assert (frame.utilization_gpu[spinning] >= 99.0).all()
        assert (frame.utilization_memory[spinning] <= 1.0).all()
        assert (frame.nvlink_rx_bytes_per_s[spinning] == 0).all()
        signatures.append((frame.utilization_gpu, frame.utilization_memory, twin.state.temp_c.max()))
    (hot_gpu, hot_mem, hot_max), (cool_gpu, cool_mem, cool_max) = signatures
    np.testing.assert_array_equal(hot_gpu, cool_gpu)
    np.testing.assert_array_equal(hot_mem, cool_mem)
    assert hot_max > 60.0
    assert cool_max < 35.0
    assert sensor_at(night, "rack4-shelf2", at("03:10")) - cool_max > 30.0
