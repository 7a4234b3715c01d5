"""SimBackend: the twin through the very Backend contract NVML serves, with the twin's clock as time."""

from __future__ import annotations

import numpy as np
import pytest

from coldaisle.errors import ColdaisleError, PowerLimitError
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.run import load_plan
from coldaisle.sim.scenario import parse_scenario
from coldaisle.sim.twin import Twin
from coldaisle.telemetry import Backend, Clock
from coldaisle.telemetry.frame import METRIC_NAMES, ThrottleReason

NODE = "infer-01"  # runaway-process: one node of four H100 PCIe; GPU 1's KV cache runs away at 12:05


@pytest.fixture
def twin() -> Twin:
    return Twin(load_plan("runaway-process"))


@pytest.fixture
def backend(twin: Twin) -> SimBackend:
    return SimBackend(twin, NODE)


def test_sim_backend_satisfies_the_backend_protocol(backend: SimBackend) -> None:
    assert isinstance(backend, Backend)
    assert isinstance(backend.twin.clock, Clock)


def test_one_nodes_devices_have_local_indices_nvml_names_and_distinct_uuids(backend: SimBackend) -> None:
    devs = backend.devices()
    assert [d.index for d in devs] == [0, 1, 2, 3]
    assert {d.node for d in devs} == {NODE}
    assert {d.name for d in devs} == {"NVIDIA H100 PCIe"}
    assert len({d.uuid for d in devs}) == 4
    assert all(d.uuid.startswith("GPU-") for d in devs)
    assert len({d.pci_bus_id for d in devs}) == 4
    d = devs[0]
    assert d.memory_total_bytes == 81559 * 2**20
    assert (d.power_min_limit_w, d.power_default_limit_w, d.power_max_limit_w) == (200.0, 350.0, 350.0)
    assert d.slowdown_temperature_c < d.shutdown_temperature_c


def test_a_node_view_only_sees_its_own_gpus() -> None:
    twin = Twin(load_plan("healthy-training"))
    views = [SimBackend(twin, f"train-{n:02d}") for n in (1, 2, 3, 4)]
    uuids = [d.uuid for v in views for d in v.devices()]
    assert len(set(uuids)) == 32
    assert all([d.index for d in v.devices()] == list(range(8)) for v in views)
    whole = SimBackend(twin)
    assert len(whole.devices()) == 32
    assert [d.uuid for d in whole.devices()] == uuids
    assert len({(d.node, d.index) for d in whole.devices()}) == 32  # cluster-wide view: (node, NVML index) is unique


def test_an_unknown_node_is_a_clear_error(twin: Twin) -> None:
    with pytest.raises(ColdaisleError, match="no node named 'infer-09'") as info:
        SimBackend(twin, "infer-09")
    assert "infer-01" in info.value.hint


def test_frame_shapes_and_values(twin: Twin, backend: SimBackend) -> None:
    twin.run_until(120)  # the serving job started at +30 s
    frame = backend.sample()
    assert len(frame) == 4
    for name in METRIC_NAMES:
        assert frame.column(name).shape == (4,), name
    assert frame.throttle_reasons.shape == (4,) and frame.lost.shape == (4,)
    assert not frame.lost.any()
    assert np.isfinite(frame.temperature_c).all()
    np.testing.assert_allclose(frame.power_w, 300.0)
    np.testing.assert_allclose(frame.power_limit_w, 350.0)
    np.testing.assert_allclose(frame.memory_used_bytes, 50 * 2**30)
    np.testing.assert_allclose(frame.memory_total_bytes, 81559 * 2**20)
    assert (frame.utilization_gpu > 50).all() and (frame.utilization_memory > 10).all()
    assert (frame.energy_j > 0).all()
    assert sorted(frame.processes.device.tolist()) == [0, 1, 2, 3]
    assert len(set(frame.processes.pid.tolist())) == 4
    np.testing.assert_allclose(frame.processes.used_memory_bytes, 50 * 2**30)


def test_idle_gpus_say_so_in_their_throttle_reasons(backend: SimBackend) -> None:
    frame = backend.sample()  # before the job starts
    assert len(frame.processes) == 0
    assert ((frame.throttle_reasons & np.uint64(ThrottleReason.GPU_IDLE)) != 0).all()


def test_the_clock_drives_the_twin_and_the_frame_time(twin: Twin, backend: SimBackend) -> None:
    first = backend.sample()
    assert first.wall_time == twin.plan.start_epoch
    twin.clock.sleep(10)
    assert twin.t == 10.0
    second = backend.sample()
    assert second.wall_time - first.wall_time == 10.0
    assert second.monotonic - first.monotonic == 10.0
    twin.clock.sleep(0.4)  # less than a step: time moves, the twin waits for a whole step
    assert twin.t == 10.0 and twin.clock.monotonic() == pytest.approx(10.4)
    twin.clock.sleep(0.6)
    assert twin.t == 11.0


def test_set_power_limit_goes_through_to_the_twin(twin: Twin, backend: SimBackend) -> None:
    twin.run_until(120)
    backend.set_power_limit(2, 250.0)
    g = twin.plan.layout.gpu(0, 2)
    assert twin.state.limit_w[g] == 250.0
    twin.clock.sleep(5)
    frame = backend.sample()
    assert frame.power_limit_w[2] == 250.0
    assert frame.power_w[2] == pytest.approx(250.0)
    assert frame.power_w[0] == pytest.approx(300.0)
    assert frame.throttle_reasons[2] & np.uint64(ThrottleReason.SW_POWER_CAP)
    assert not frame.throttle_reasons[0] & np.uint64(ThrottleReason.SW_POWER_CAP)


@pytest.mark.parametrize("watts", [199.0, 351.0, 0.0])
def test_set_power_limit_outside_the_range_raises_power_limit_error(backend: SimBackend, watts: float) -> None:
    with pytest.raises(PowerLimitError, match=r"GPU 1.*outside 200\.\.350 W"):
        backend.set_power_limit(1, watts)
    assert backend.sample().power_limit_w[1] == 350.0


def test_lost_gpus_are_nan_and_flagged_and_xid_79_is_reported_once(twin: Twin, backend: SimBackend) -> None:
    xids = []
    lost_at = None
    for _ in range(30):  # 15 minutes, sampled every 30 s
        twin.clock.sleep(30)
        frame = backend.sample()
        xids.extend(frame.events)
        if frame.lost.any() and lost_at is None:
            lost_at = twin.t
            for name in ("temperature_c", "power_w", "utilization_gpu", "memory_used_bytes", "fan_pct"):
                assert np.isnan(frame.column(name)[frame.lost]).all(), name
            assert len(frame.processes) == 0 or not np.isin(frame.processes.device, np.flatnonzero(frame.lost)).any()
    assert lost_at is not None
    assert [(e.device, e.kind, e.xid) for e in xids] == [(1, "xid", 79)]
    start = twin.plan.start_epoch
    assert 5 * 60 < xids[0].time - start <= lost_at
    final = backend.sample()
    assert final.lost.all()  # the node panicked: every GPU of it is gone
    assert not final.events
    assert np.isnan(final.temperature_c).all()


@pytest.mark.parametrize("device", [4, -1, 99])
def test_set_power_limit_on_a_device_that_does_not_exist_raises_power_limit_error(
        backend: SimBackend, device: int) -> None:
    """As NvmlBackend does: no IndexError, and never a silent wrap-around to the last GPU."""
    with pytest.raises(PowerLimitError):
        backend.set_power_limit(device, 250.0)
    assert (backend.sample().power_limit_w == 350.0).all()


def test_set_power_limit_on_a_lost_gpu_raises_power_limit_error(twin: Twin, backend: SimBackend) -> None:
    """NvmlBackend refuses a cap on a GPU that is gone; the twin must not report it as done."""
    twin.run_until(20 * 60)  # the node panicked at about 12:11
    assert backend.sample().lost.all()
    with pytest.raises(PowerLimitError):
        backend.set_power_limit(0, 250.0)


TWO_NODES = """\
name: two-nodes
start: 2024-06-03T10:00:00Z
duration: 10 min
topology: {{nodes_per_rack: 2, gpus_per_node: 2}}
timeline:
  - {{at: "+1 min", fault: gpu_lost, node: {node}, gpu: 1}}
"""


@pytest.mark.parametrize(("node", "cluster_device"), [("node-gpu-01", 1), ("node-gpu-02", 3)])
def test_an_xid_reaches_the_right_device_of_every_view(node: str, cluster_device: int) -> None:
    twin = Twin(parse_scenario(TWO_NODES.format(node=node))[1])
    views = {name: SimBackend(twin, name) for name in ("node-gpu-01", "node-gpu-02")}
    whole = SimBackend(twin)
    twin.clock.sleep(120)
    for name, view in views.items():
        frame = view.sample()
        assert [(e.device, e.xid) for e in frame.events] == ([(1, 79)] if name == node else [])
        assert frame.lost.tolist() == [False, name == node]
    fw = whole.sample()
    assert [(e.device, e.xid) for e in fw.events] == [(cluster_device, 79)]
    assert np.flatnonzero(fw.lost).tolist() == [cluster_device]
    assert np.isnan(fw.temperature_c[cluster_device])
    assert np.isfinite(np.delete(fw.temperature_c, cluster_device)).all()
