"""The twin's physics: closed-form steady states, energy booked to the joule, caps, throttling, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coldaisle.sim.resolve import Plan
from coldaisle.sim.run import load_plan, replay
from coldaisle.sim.scenario import parse_scenario
from coldaisle.sim.twin import Twin

SETPOINT_C = 20.0


def solo_scenario(*, fan_min_pct: float, power_w: float, fan_ramp_from: str = "80 C",
                  fan_full_at: str = "95 C") -> str:
    """One GPU on one node, no recirculation, cooling to spare, a job at constant power from t=0."""
    return f"""\
name: closed-form
start: 2024-06-03T10:00:00Z
duration: 1 h
step: 1 s
record_every: 10 s
card:
  model: h100-sxm-80gb
  fan_min_pct: {fan_min_pct}
  fan_ramp_from: {fan_ramp_from}
  fan_full_at: {fan_full_at}
  thermal_mass: 1500 J/K
  resistance_full_fan: 0.03 K/W
  resistance_still_air: 0.15 K/W
topology:
  gpus_per_node: 1
  node_name: "solo-{{n:02d}}"
  host_power: 500 W
facility:
  setpoint: {SETPOINT_C} C
  row_cooling: 50 kW
  recirculation: 0 K/kW
jobs:
  - name: burn
    id: 1
    nodes: solo-01
    compute_power: {power_w} W
    spin_power: {power_w} W
    memory_per_gpu: 10 GiB
"""


def conductance_w_per_k(fan: float, r_full: float = 0.03, r_still: float = 0.15) -> float:
    """physics.py's fan-dependent conductance: still air plus the fan's share of the full-fan gain."""
    return 1.0 / r_still + fan * (1.0 / r_full - 1.0 / r_still)


def solo_twin(**kw: float) -> Twin:
    _, plan = parse_scenario(solo_scenario(**kw))  # type: ignore[arg-type]
    return Twin(plan)


# -- steady state and transient match the closed form ---------------------------------------------------
def test_steady_state_matches_closed_form_at_full_fan() -> None:
    twin = solo_twin(fan_min_pct=100, power_w=500)
    twin.run_until(20 * 60)
    assert twin.state.power_w[0] == pytest.approx(500.0)
    assert twin.state.aisle_c[0] == pytest.approx(SETPOINT_C, abs=1e-6)
    assert twin.state.temp_c[0] == pytest.approx(SETPOINT_C + 500.0 * 0.03, abs=0.1)


@pytest.mark.parametrize(("fan_min_pct", "power_w"), [(50, 400.0), (0, 300.0), (25, 600.0)])
def test_steady_state_with_fan_pinned_uses_the_conductance_formula(fan_min_pct: float, power_w: float) -> None:
    twin = solo_twin(fan_min_pct=fan_min_pct, power_w=power_w)
    twin.run_until(30 * 60)
    fan = fan_min_pct / 100.0
    assert twin.state.fan[0] == pytest.approx(fan)
    expected = SETPOINT_C + power_w / conductance_w_per_k(fan)
    assert twin.state.temp_c[0] == pytest.approx(expected, abs=0.1)


def test_heating_follows_the_exponential_with_time_constant_r_times_c() -> None:
    twin = solo_twin(fan_min_pct=100, power_w=500)
    idle_w = twin.plan.card.idle_w
    t0_c, t_ss_c, tau_s = SETPOINT_C + idle_w * 0.03, SETPOINT_C + 500.0 * 0.03, 0.03 * 1500.0
    assert twin.state.temp_c[0] == pytest.approx(t0_c)
    for t in (10, 45, 90, 200):
        twin.run_until(t)
        expected = t_ss_c + (t0_c - t_ss_c) * math.exp(-t / tau_s)
        assert twin.state.temp_c[0] == pytest.approx(expected, abs=1e-6), t


# -- energy --------------------------------------------------------------------------------------------
def energy_imbalance(plan: Plan, seconds: float) -> tuple[float, float]:
    """(IT energy drawn, |drawn - removed by cooling - change in stored heat|) over `seconds`."""
    twin = Twin(plan)
    stored0 = twin.physics.stored_j(twin.state)
    twin.run_until(seconds)
    ph = twin.physics
    return ph.it_j, abs(ph.it_j - ph.cooling_j - (ph.stored_j(twin.state) - stored0))


def test_energy_is_conserved_within_one_percent_over_an_hour_of_the_incident() -> None:
    it_j, imbalance = energy_imbalance(load_plan("prometheus-unbound"), 3600.0)
    assert it_j > 5e8  # about 300 kW for an hour: the check is not vacuous
    assert imbalance <= 0.01 * it_j


def test_energy_is_conserved_through_faults_on_a_small_cluster() -> None:
    text = """\
name: small-ledger
start: 2024-06-03T10:00:00Z
duration: 1 h
seed: 11
topology: {rows: 2, racks_per_row: 2, nodes_per_rack: 2, gpus_per_node: 3}
facility: {row_cooling: 3 kW, recirculation: 0.3 K/kW}
jobs:
  - {name: j, id: 1, nodes: node-gpu-01..node-gpu-08, compute_power: 300 W, spin_power: 340 W,
     memory_per_gpu: 20 GiB, start: "+1 min"}
timeline:
  - {at: "10:05", fault: pcie_jitter, node: node-gpu-03, gpu: 1}
  - {at: "10:10", fault: fan_failures, until: "10:30", count: 4, rows: [1, 2]}
  - {at: "10:20", fault: cooling_failure, row: 2, remaining: 0 W}
  - {at: "10:40", fault: emergency_power_off, rack: 3}
"""
    _, plan = parse_scenario(text)
    it_j, imbalance = energy_imbalance(plan, 3600.0)
    assert it_j > 0
    assert imbalance <= 0.01 * it_j


# -- power caps ----------------------------------------------------------------------------------------
def steady_healthy(cap_w: float | None) -> Twin:
    twin = Twin(load_plan("healthy-training"))
    if cap_w is not None:
        for g in range(twin.plan.layout.n_gpus):
            assert twin.set_power_limit(g, cap_w) == cap_w
    twin.run_until(40 * 60)
    return twin


def test_a_power_cap_lowers_steady_temperature_by_the_power_difference_times_r() -> None:
    free, capped = steady_healthy(None), steady_healthy(400.0)
    compute_w = free.plan.jobs[0].spec.compute_power
    np.testing.assert_allclose(free.state.power_w, compute_w)
    np.testing.assert_allclose(capped.state.power_w, 400.0)
    phys = free.plan.card.physics
    saved_w = compute_w - 400.0
    # Each run sits exactly at T = inlet + P x R(fan), with the fan speed its own temperature asks for.
    for twin, watts in ((free, compute_w), (capped, 400.0)):
        inlet = twin.recorder.rack_inlet(twin.state)[twin.plan.layout.gpu_rack]
        g = conductance_w_per_k(twin.state.fan, phys.resistance_full_fan, phys.resistance_still_air)
        np.testing.assert_allclose(twin.state.temp_c, inlet + watts / g, atol=0.1)
    # The cooler GPUs slow their fans (higher R), so the drop is (saved power) x R at the capped fan speed
    # at most, plus the lower recirculation rise at the rack inlet; and it is a real drop, not noise.
    r_capped = 1.0 / conductance_w_per_k(capped.state.fan, phys.resistance_full_fan, phys.resistance_still_air)
    inlet_drop = free.plan.scenario.facility.recirculation * saved_w * free.plan.layout.n_gpus / 1e3
    drop = free.state.temp_c - capped.state.temp_c
    assert np.all(capped.state.fan < free.state.fan)
    assert np.all(drop > 0.5 * saved_w * phys.resistance_full_fan)
    assert np.all(drop <= saved_w * r_capped + inlet_drop + 0.1)


@pytest.mark.parametrize("watts", [0.0, 199.0, 701.0, 1e4, -5.0])
def test_set_power_limit_outside_the_cards_range_is_refused(watts: float) -> None:
    twin = Twin(load_plan("healthy-training"))  # H100 SXM: 200..700 W
    before = twin.state.limit_w.copy()
    with pytest.raises(ValueError, match=r"outside 200\.\.700 W"):
        twin.set_power_limit(0, watts)
    np.testing.assert_array_equal(twin.state.limit_w, before)


@pytest.mark.parametrize("watts", [200.0, 700.0])
def test_set_power_limit_accepts_both_ends_of_the_range(watts: float) -> None:
    twin = Twin(load_plan("healthy-training"))
    assert twin.set_power_limit(3, watts) == watts
    assert twin.state.limit_w[3] == watts


# -- thermal throttling --------------------------------------------------------------------------------
THROTTLE = """\
name: throttle-twice
start: 2024-06-03T10:00:00Z
duration: 1 h
card: {model: h100-sxm-80gb, fan_ramp_from: 30 C, fan_full_at: 60 C}
topology: {gpus_per_node: 2, node_name: "hot-{n:02d}", host_power: 500 W}
facility: {setpoint: 22 C, row_cooling: 20 kW, recirculation: 0 K/kW}
jobs:
  - {name: first, id: 1, nodes: hot-01, compute_power: 680 W, spin_power: 700 W, memory_per_gpu: 10 GiB}
  - {name: second, id: 2, nodes: hot-01, start: "10:40", compute_power: 680 W, spin_power: 700 W,
     memory_per_gpu: 10 GiB}
timeline:
  - {at: "10:05", fault: fan_failure, node: hot-01, gpu: 1}
  - {at: "10:20", fault: cancel_job, job: first}
"""


@pytest.fixture(scope="module")
def throttled() -> Twin:
    _, plan = parse_scenario(THROTTLE)
    twin = Twin(plan)
    twin.run_until(3600)
    return twin


def test_a_gpu_above_slowdown_draws_less_than_its_demand(throttled: Twin) -> None:
    rec, card = throttled.recorder, throttled.plan.card
    t, temp, power = rec.view("t"), rec.view("gpu_temp_c"), rec.view("gpu_power_w")
    hot = (t > 15 * 60) & (t < 20 * 60)  # fan dead for 10 minutes, job still running
    assert np.all(temp[hot, 1] > card.slowdown_c)
    assert np.all(temp[hot, 1] < card.shutdown_c)
    assert np.all(power[hot, 1] < 680.0 - 50.0)
    phys = card.physics
    shed = 1.0 - phys.throttle_slope * (temp[hot, 1] - card.slowdown_c)
    np.testing.assert_allclose(power[hot, 1], 680.0 * np.maximum(shed, phys.throttle_floor), atol=3.0)
    np.testing.assert_allclose(power[hot, 0], 680.0)  # its neighbour keeps its fan and its full power


def test_thermal_slowdown_is_emitted_once_per_crossing(throttled: Twin) -> None:
    slow = [e for e in throttled.events if e.cls == "thermal_slowdown"]
    assert [e.fields["gpu"] for e in slow] == [1, 1]
    start = throttled.plan.start_epoch
    first, second = (e.time - start for e in slow)
    assert 5 * 60 < first < 20 * 60  # after the fan failure, before the job is cancelled
    assert 40 * 60 < second < 60 * 60  # after it cooled down and the second job started
    assert all(e.fields["temperature_c"] >= e.fields["slowdown_c"] == 87.0 for e in slow)
    assert throttled.state.above_slowdown_s[0] == 0.0
    assert throttled.state.above_slowdown_s[1] > 20 * 60
    assert not throttled.state.lost.any()


# -- determinism ---------------------------------------------------------------------------------------
RECORDED = ("t", "gpu_temp_c", "gpu_power_w", "gpu_memory_bytes", "aisle_c", "rack_inlet_c", "rack_kw",
            "sensor_c", "it_kw", "facility_kw", "pue")
UNTIL_S = 2.5 * 3600  # 05:30: past the cooling failure and the first fan failures


def fan_failure_times(twin: Twin) -> list[tuple[float, str, int]]:
    return [(e.time, e.host, e.fields["gpu"]) for e in twin.events if e.cls == "fan_failure"]


@pytest.fixture(scope="module")
def incident_text() -> str:
    from coldaisle.sim.scenario import find_scenario

    return find_scenario("prometheus-unbound").read_text(encoding="utf-8")


def test_a_fixed_seed_gives_identical_runs(incident_text: str) -> None:
    runs = [replay(parse_scenario(incident_text)[1], until_s=UNTIL_S) for _ in range(2)]
    for name in RECORDED:
        np.testing.assert_array_equal(runs[0].recorder.view(name), runs[1].recorder.view(name), err_msg=name)
    assert runs[0].events == runs[1].events
    assert len(fan_failure_times(runs[0])) >= 1
    assert runs[0].physics.it_j == runs[1].physics.it_j


def test_a_different_seed_changes_fan_failure_times(incident_text: str) -> None:
    assert "seed: 402 " in incident_text
    plans = [parse_scenario(incident_text.replace("seed: 402 ", f"seed: {seed} "))[1] for seed in (402, 403)]
    fans = [[(f.at_s, f.gpu) for f in p.faults if f.fault.fault == "fan_failure"] for p in plans]
    assert len(fans[0]) == len(fans[1]) == 12
    assert fans[0] != fans[1]
    assert all(1.5 * 3600 <= t <= 4.5 * 3600 for t, _ in fans[0] + fans[1])  # 04:30..07:30
    twins = [replay(p, until_s=UNTIL_S) for p in plans]
    seen = [fan_failure_times(t) for t in twins]
    assert seen[0] and seen[0] != seen[1]


def test_physics_step_does_not_depend_on_history_only_on_state() -> None:
    """Two twins stepped through different step counts to the same time agree (clock chunking is invisible)."""
    _, plan = parse_scenario(solo_scenario(fan_min_pct=40, power_w=450, fan_ramp_from="30 C", fan_full_at="60 C"))
    a, b = Twin(plan), Twin(plan)
    a.run_until(600)
    for _ in range(60):
        b.clock.sleep(10)
    assert b.t == a.t == 600
    np.testing.assert_array_equal(a.state.temp_c, b.state.temp_c)
    np.testing.assert_array_equal(a.state.fan, b.state.fan)
