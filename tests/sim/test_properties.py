"""Invariants of the twin on random clusters, rooms, jobs and faults (hypothesis)."""

from __future__ import annotations

from typing import Any

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coldaisle.sim.scenario import parse_scenario
from coldaisle.sim.twin import Twin

CARDS = {"h100-pcie-80gb": (50.0, 350.0), "h100-sxm-80gb": (70.0, 700.0), "a100-sxm-80gb": (55.0, 400.0)}
SETPOINT_C = 18.0
RUN_S = 240.0


def node_name(n: int) -> str:
    return f"node-gpu-{n:02d}"


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A valid scenario document: random topology, room (cooling may be far too small), jobs and faults."""
    rows, racks, nodes, gpus = (draw(st.integers(1, hi)) for hi in (3, 3, 4, 8))
    n_nodes, n_racks = rows * racks * nodes, rows * racks
    card = draw(st.sampled_from(sorted(CARDS)))
    idle_w, tdp_w = CARDS[card]
    power = st.floats(idle_w, tdp_w).map(lambda w: f"{w:.1f} W")
    node = st.integers(1, n_nodes)
    jobs = []
    for j in range(draw(st.integers(0, 2))):
        a, b = sorted((draw(node), draw(node)))
        jobs.append({"name": f"job{j}", "id": j + 1, "nodes": f"{node_name(a)}..{node_name(b)}",
                     "start": f"+{draw(st.integers(0, 60))} s", "compute_power": draw(power),
                     "spin_power": draw(power), "memory_per_gpu": f"{draw(st.integers(1, 79))} GiB",
                     "pipeline_stages": draw(st.integers(1, 4)), "stage_delay": "1 s",
                     "nccl_timeout": draw(st.sampled_from([None, "30 s", "10 min"]))})
    faults = []
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(1, int(RUN_S) - 10))
        gpu = {"node": node_name(draw(node)), "gpu": draw(st.integers(0, gpus - 1))}
        kind = draw(st.sampled_from(["fan_failure", "gpu_lost", "pcie_jitter", "collective_deadlock",
                                     "kv_growth", "cooling_failure", "emergency_power_off", "portable_cooling",
                                     "cancel_job", "xid", "link_down", "node_down", "thermal_interface",
                                     "rank_crash"]))
        if kind == "cancel_job" and not jobs:
            kind = "fan_failure"
        entry: dict[str, Any] = {"at": at, "fault": kind}
        if kind in ("fan_failure", "gpu_lost", "pcie_jitter", "collective_deadlock", "thermal_interface",
                    "rank_crash"):
            entry |= gpu
        elif kind == "xid":
            entry |= gpu | {"xid": draw(st.sampled_from([48, 94, 119, 13]))}
        elif kind in ("link_down", "node_down"):
            entry |= {"node": gpu["node"]}
        elif kind == "kv_growth":
            entry |= gpu | {"tokens": draw(st.integers(1, 400_000)), "tokens_per_second": "2000 /s",
                            "bytes_per_token": f"{draw(st.integers(16, 1024))} KiB",
                            "spill_to_hang": f"{draw(st.integers(5, 60))} s", "hang_to_lost": "150 s"}
        elif kind == "cooling_failure":
            entry |= {"row": draw(st.integers(1, rows)), "remaining": f"{draw(st.integers(0, 5000))} W"}
        elif kind == "portable_cooling":
            entry |= {"row": draw(st.integers(1, rows)), "capacity": f"{draw(st.integers(1, 50))} kW"}
        elif kind == "emergency_power_off":
            entry |= {"rack": draw(st.integers(1, n_racks))}
        else:
            entry |= {"job": draw(st.sampled_from([j["name"] for j in jobs]))}
        faults.append(entry)
    faults.sort(key=lambda f: f["at"])
    for f in faults:
        f["at"] = f"+{f['at']} s"
    return {
        "name": "random", "start": "2024-06-03T10:00:00Z", "duration": "10 min",
        "step": f"{draw(st.sampled_from([1, 2, 5]))} s", "record_every": "10 s", "seed": draw(st.integers(0, 99)),
        "card": {"model": card, "fan_min_pct": draw(st.integers(0, 100))},
        "topology": {"rows": rows, "racks_per_row": racks, "nodes_per_rack": nodes, "gpus_per_node": gpus,
                     "shelves_per_rack": draw(st.integers(1, nodes)), "host_power": f"{draw(st.integers(0, 900))} W"},
        "facility": {"setpoint": f"{SETPOINT_C} C",
                     "row_cooling": f"{draw(st.sampled_from([0.2, 1.0, 5.0, 30.0, 200.0]))} kW",
                     "recirculation": f"{draw(st.floats(0.0, 0.5)):.3f} K/kW"},
        "jobs": jobs,
        "timeline": faults,
    }


def check_state(twin: Twin, coldest_air_c: float) -> None:
    s, total = twin.state, twin.plan.card.memory_total_bytes
    for name in ("temp_c", "power_w", "fan", "memory_bytes", "energy_j", "aisle_c", "rack_kw"):
        assert np.isfinite(getattr(s, name)).all(), name
    assert (s.power_w >= 0).all()
    assert (s.power_w <= s.limit_w + 1e-9).all()
    assert (s.memory_bytes >= 0).all()
    assert (s.memory_bytes <= total).all()
    assert ((s.fan >= 0) & (s.fan <= 1)).all()
    # Cooling removes heat only down to the setpoint; nothing else in the room is colder than the air.
    assert (s.aisle_c >= SETPOINT_C - 1e-6).all()
    assert (s.temp_c >= coldest_air_c - 1e-6).all()
    assert not s.power_w[s.lost].any()


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(doc=scenarios())
def test_the_twin_never_produces_impossible_states(doc: dict[str, Any]) -> None:
    _, plan = parse_scenario(yaml.safe_dump(doc, sort_keys=False), "random.yaml")
    twin = Twin(plan)
    stored0 = twin.physics.stored_j(twin.state)
    coldest = float(twin.state.aisle_c.min())
    check_state(twin, coldest)
    while twin.t < RUN_S:
        twin.step()
        coldest = min(coldest, float(twin.state.aisle_c.min()))
        check_state(twin, coldest)
    ph = twin.physics
    drawn = ph.it_j
    assert drawn >= 0 and ph.cooling_j >= 0 and ph.spin_j >= 0
    assert abs(drawn - ph.cooling_j - (ph.stored_j(twin.state) - stored0)) <= 0.01 * drawn + 1e-3
    rec = twin.recorder
    assert rec.n == int(RUN_S // rec.every) + 1
    assert np.isfinite(rec.view("gpu_temp_c")).all()
    assert np.isfinite(rec.view("sensor_c")).all()
    assert (np.diff(rec.view("t")) > 0).all()
    assert all(plan.start_epoch <= e.time <= plan.start_epoch + twin.t + 1.0 for e in twin.events)


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(doc=scenarios(), chunks=st.lists(st.floats(0.5, 40.0), min_size=1, max_size=8))
def test_how_the_clock_is_advanced_does_not_change_a_fixed_step_run(doc: dict[str, Any], chunks: list[float]) -> None:
    """On fixed steps, a twin advanced by sleeps of any length matches one run straight to the same time."""
    _, plan = parse_scenario(yaml.safe_dump(doc | {"max_step": doc["step"]}, sort_keys=False), "random.yaml")
    slept, straight = Twin(plan), Twin(plan)
    for c in chunks:
        slept.clock.sleep(c)
    straight.run_until(slept.t)
    assert slept.t == straight.t
    np.testing.assert_array_equal(slept.state.temp_c, straight.state.temp_c)
    np.testing.assert_array_equal(slept.state.power_w, straight.state.power_w)
    assert slept.events == straight.events


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(doc=scenarios(), chunks=st.lists(st.floats(0.5, 200.0), min_size=1, max_size=4))
def test_long_steps_stay_within_a_tenth_of_a_degree_of_fixed_steps(doc: dict[str, Any], chunks: list[float]) -> None:
    """However the clock is advanced, the adaptive twin keeps every recorded temperature within 0.1 C of fixed
    steps, and logs the same events at the same instants."""
    _, adaptive = parse_scenario(yaml.safe_dump(doc, sort_keys=False), "random.yaml")
    _, fixed = parse_scenario(yaml.safe_dump(doc | {"max_step": doc["step"]}, sort_keys=False), "random.yaml")
    a, f = Twin(adaptive), Twin(fixed)
    for c in chunks:
        a.clock.sleep(min(c, adaptive.duration_s - a.clock.monotonic()))
    a.run_until(adaptive.duration_s)
    f.run_until(fixed.duration_s)
    assert a.t == f.t and a.recorder.n == f.recorder.n
    for series in ("gpu_temp_c", "aisle_c", "rack_inlet_c"):
        np.testing.assert_allclose(a.recorder.view(series), f.recorder.view(series), atol=0.1, rtol=0)
    assert [(e.time, e.host, e.cls, e.fields.get("gpu")) for e in a.events] == \
        [(e.time, e.host, e.cls, e.fields.get("gpu")) for e in f.events]
