"""The exporter emits exactly the catalog, in base units, from the latest Frame of the twin."""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from coldaisle.agent.exporter import AgentStats, FrameCollector, HistoryStats
from coldaisle.agent.host import HostProbe
from coldaisle.agent.jobs import JobRef
from coldaisle.guard.straggler import RankScore
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.twin import Twin
from coldaisle.telemetry.frame import ThrottleReason
from coldaisle.telemetry.metrics_catalog import MetricGroup, names

DATA = Path(__file__).resolve().parent.parent / "data" / "agent"


def exposition(registry: CollectorRegistry) -> str:
    """The Prometheus text format of `registry`."""
    return generate_latest(registry).decode()


def scraped_names(text: str) -> set[str]:
    """Metric family names of a text exposition, as scraped (counters with `_total`)."""
    return {f.name + "_total" if f.type == "counter" else f.name for f in text_string_to_metric_families(text)}


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for fam in text_string_to_metric_families(text):
        out += [(dict(s.labels), s.value) for s in fam.samples if s.name == name]
    return out


def _full(node_backend: SimBackend, dcgm: bool = True) -> str:
    c = FrameCollector("train-01", dcgm_names=dcgm)
    c.update(node_backend.sample(), host=HostProbe(DATA / "proc").sample(),
             agent_state=AgentStats(12, 0.004, 1.7e9, 1, 0, {("power_cap", "done"): 2}),
             job_values={"slurm:4242": {"job_progress_age_s": 3.5, "job_latency_p50_s": 0.2,
                                        "job_latency_p99_s": 45.0}},
             history=HistoryStats({("xid", "79", "7d"): 2, ("drain", "", "30d"): 3}, lemon=True),
             job_ranks={"slurm:4242": [RankScore(0, 0.0, 0.35, 0.52, "train-01", "0"),
                                       RankScore(1, 0.29, 0.49, 0.52, "train-01", "1")]})
    return exposition(c.registry)


def test_each_rank_of_a_supervised_job_has_its_straggler_score(node_backend: SimBackend) -> None:
    got = _samples(_full(node_backend), "coldaisle_job_rank_straggler_score")
    assert got == [({"node": "train-01", "workload": "slurm:4242", "rank": "0", "host": "train-01", "gpu": "0"}, 0.0),
                   ({"node": "train-01", "workload": "slurm:4242", "rank": "1", "host": "train-01", "gpu": "1"}, 0.29)]


def test_the_nodes_fault_history_and_lemon_flag_are_series(node_backend: SimBackend) -> None:
    text = _full(node_backend)
    events = {(lab["kind"], lab["code"], lab["window"]): v for lab, v in _samples(text, "coldaisle_node_fault_events")}
    assert events == {("xid", "79", "7d"): 2.0, ("drain", "", "30d"): 3.0}
    assert _samples(text, "coldaisle_node_lemon") == [({"node": "train-01"}, 1.0)]


def test_scrape_emits_exactly_the_catalog(node_backend: SimBackend) -> None:
    c = FrameCollector("train-01")
    c.update(node_backend.sample())
    assert scraped_names(exposition(c.registry)) == names(MetricGroup.GPU, MetricGroup.PROCESS)


def test_scrape_with_host_agent_and_dcgm_emits_the_whole_catalog(node_backend: SimBackend) -> None:
    assert scraped_names(_full(node_backend)) == names()


def test_nothing_before_the_first_update() -> None:
    assert exposition(FrameCollector("n").registry) == ""


def test_gpu_series_carry_node_gpu_uuid_and_base_units(node_backend: SimBackend) -> None:
    frame = node_backend.sample()
    text = _full(node_backend, dcgm=False)
    temps = _samples(text, "coldaisle_gpu_temperature_celsius")
    assert sorted(int(lab["gpu"]) for lab, _ in temps) == list(range(8))
    assert {lab["node"] for lab, _ in temps} == {"train-01"}
    assert {lab["uuid"] for lab, _ in temps} == {d.uuid for d in frame.devices}
    util = dict((lab["gpu"], v) for lab, v in _samples(text, "coldaisle_gpu_utilization_ratio"))
    assert util["0"] == pytest.approx(frame.utilization_gpu[0] / 100) and 0 <= util["0"] <= 1
    clock = dict((lab["gpu"], v) for lab, v in _samples(text, "coldaisle_gpu_sm_clock_hertz"))
    assert clock["0"] == pytest.approx(frame.sm_clock_mhz[0] * 1e6)
    energy = dict((lab["gpu"], v) for lab, v in _samples(text, "coldaisle_gpu_energy_joules_total"))
    assert energy["3"] == pytest.approx(frame.energy_j[3])


def test_host_and_agent_series(node_backend: SimBackend) -> None:
    text = _full(node_backend, dcgm=False)
    assert _samples(text, "coldaisle_host_pressure_io_some_ratio") == [({"node": "train-01"}, 0.4561)]
    assert _samples(text, "coldaisle_agent_actions_total") == [
        ({"node": "train-01", "action": "power_cap", "status": "done"}, 2.0)]
    assert _samples(text, "coldaisle_host_interrupts_per_second") == []  # first sample: no rate yet, not NaN


def test_dcgm_aliases_only_when_enabled_and_in_dcgm_units(node_backend: SimBackend) -> None:
    frame = node_backend.sample()
    plain = FrameCollector("train-01")
    plain.update(frame)
    assert not any(n.startswith("DCGM_") for n in scraped_names(exposition(plain.registry)))
    dcgm = FrameCollector("train-01", dcgm_names=True)
    dcgm.update(frame)
    text = exposition(dcgm.registry)
    used = {lab["gpu"]: (lab, v) for lab, v in _samples(text, "DCGM_FI_DEV_FB_USED")}
    lab, mib = used["2"]
    assert mib == pytest.approx(frame.memory_used_bytes[2] / 2**20)
    assert set(lab) == {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname"}
    assert lab["UUID"] == frame.devices[2].uuid and lab["device"] == "nvidia2" and lab["Hostname"] == "train-01"
    free = dict((lab["gpu"], v) for lab, v in _samples(text, "DCGM_FI_DEV_FB_FREE"))
    assert free["2"] == pytest.approx((frame.memory_total_bytes[2] - frame.memory_used_bytes[2]) / 2**20)
    util = dict((lab["gpu"], v) for lab, v in _samples(text, "DCGM_FI_DEV_GPU_UTIL"))
    assert util["2"] == pytest.approx(frame.utilization_gpu[2])  # percent, not a ratio
    energy = dict((lab["gpu"], v) for lab, v in _samples(text, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"))
    assert energy["2"] == pytest.approx(frame.energy_j[2] * 1e3)  # mJ
    assert "# TYPE DCGM_FI_DEV_GPU_TEMP gauge" in text


def test_lost_gpu_exports_lost_and_omits_nan(twin: Twin, node_backend: SimBackend) -> None:
    g = int(node_backend.gpus[6])
    twin.lose_gpu(g, twin.t, xid=79)
    c = FrameCollector("train-01", dcgm_names=True)
    c.update(node_backend.sample())
    text = exposition(c.registry)
    assert "NaN" not in text
    lost = dict((lab["gpu"], v) for lab, v in _samples(text, "coldaisle_gpu_lost"))
    assert lost["6"] == 1.0 and lost["0"] == 0.0
    assert "6" not in {lab["gpu"] for lab, _ in _samples(text, "coldaisle_gpu_temperature_celsius")}
    assert "6" not in {lab["gpu"] for lab, _ in _samples(text, "DCGM_FI_DEV_FB_USED")}
    assert dict((lab["gpu"], v) for lab, v in _samples(text, "coldaisle_gpu_last_xid"))["6"] == 79
    assert dict((lab["gpu"], v) for lab, v in _samples(text, "DCGM_FI_DEV_XID_ERRORS"))["6"] == 79
    assert dict((lab["gpu"], v) for lab, v in _samples(text, "coldaisle_gpu_xid_errors_total"))["6"] == 1
    c.update(node_backend.sample())  # the Xid is not counted again on the next Frame
    again = exposition(c.registry)
    assert dict((lab["gpu"], v) for lab, v in _samples(again, "coldaisle_gpu_xid_errors_total"))["6"] == 1


def _xids(c: FrameCollector) -> tuple[dict[str, float], dict[str, float]]:
    text = exposition(c.registry)
    return (dict((lab["gpu"], v) for lab, v in _samples(text, "coldaisle_gpu_last_xid")),
            dict((lab["gpu"], v) for lab, v in _samples(text, "coldaisle_gpu_xid_errors_total")))


def test_an_xid_seen_only_in_the_kernel_log_is_exported(twin: Twin, node_backend: SimBackend) -> None:
    """A GPU that fell off the bus is reported by the kernel log, not by NVML: /metrics must show it."""
    c = FrameCollector("train-01")
    frame = node_backend.sample()
    assert not [e for e in frame.events if e.kind == "xid"]
    c.note_xid(3, 79, frame.monotonic)
    c.update(frame)
    last, count = _xids(c)
    assert last["3"] == 79 and count["3"] == 1
    c.update(node_backend.sample())
    assert _xids(c) == (last, count)  # noted once, counted once
    c.note_xid(3, 79, frame.monotonic + 60.0)  # the same Xid again a minute later: a second one
    c.update(node_backend.sample())
    assert _xids(c)[1]["3"] == 2
    c.note_xid(99, 79, frame.monotonic)  # a device this node does not have: ignored, nothing breaks
    c.update(node_backend.sample())
    assert _xids(c)[1]["3"] == 2


def test_an_xid_from_nvml_and_the_kernel_log_is_counted_once(twin: Twin, node_backend: SimBackend) -> None:
    g = int(node_backend.gpus[6])
    c = FrameCollector("train-01")
    c.note_xid(6, 79, twin.clock.monotonic() - 1.0)  # the kernel line came first, NVML's event a second later
    twin.lose_gpu(g, twin.t, xid=79)
    c.update(node_backend.sample())
    last, count = _xids(c)
    assert last["6"] == 79 and count["6"] == 1 and not any(v for k, v in count.items() if k != "6")
    twin.clock.sleep(2.0)
    c.note_xid(6, 79, twin.clock.monotonic() + 30.0)  # 30 s later it is another Xid, not the same one twice
    c.update(node_backend.sample())
    assert _xids(c)[1]["6"] == 2


def test_process_series_vanish_when_the_process_ends(twin: Twin, node_backend: SimBackend) -> None:
    c = FrameCollector("train-01")
    frame = node_backend.sample()
    victim = int(frame.processes.pid[frame.processes.device == 3][0])
    c.update(frame, jobs={victim: JobRef("101", None, "/slurm/uid_1000/job_101/step_0")})
    before = _samples(exposition(c.registry), "coldaisle_gpu_process_memory_used_bytes")
    mine = [lab for lab, _ in before if lab["pid"] == str(victim)]
    assert mine == [{"node": "train-01", "gpu": "3", "uuid": frame.devices[3].uuid, "pid": str(victim),
                     "slurm_job": "101", "pod_uid": ""}]
    assert twin.signal(twin.plan.layout.node_index["train-01"], victim, "SIGKILL") == "killed"
    c.update(node_backend.sample())
    after = _samples(exposition(c.registry), "coldaisle_gpu_process_memory_used_bytes")
    assert str(victim) not in {lab["pid"] for lab, _ in after}
    assert "coldaisle_gpu_process_memory_used_bytes" in scraped_names(exposition(c.registry))


def test_throttle_reasons_one_series_per_active_reason(node_backend: SimBackend) -> None:
    sampled = node_backend.sample()
    reasons = sampled.throttle_reasons.copy()  # a Frame's columns may be shared, read-only: change a copy
    reasons[1] = ThrottleReason.HW_THERMAL_SLOWDOWN | ThrottleReason.SW_POWER_CAP
    frame = dataclasses.replace(sampled, throttle_reasons=reasons)
    c = FrameCollector("train-01")
    c.update(frame)
    text = exposition(c.registry)
    active = sorted((lab["gpu"], lab["reason"]) for lab, _ in _samples(text, "coldaisle_gpu_throttled"))
    assert active == [("1", "hw_thermal_slowdown"), ("1", "sw_power_cap")]
    mask = dict((lab["gpu"], v) for lab, v in _samples(text, "coldaisle_gpu_throttle_reasons"))
    assert mask["1"] == float(0x44)


def test_unsupported_readings_are_omitted(node_backend: SimBackend) -> None:
    import dataclasses

    frame = node_backend.sample()
    frame = dataclasses.replace(frame, unsupported=frozenset({("fan_pct", 4)}))
    c = FrameCollector("train-01")
    c.update(frame)
    gpus = {lab["gpu"] for lab, _ in _samples(exposition(c.registry), "coldaisle_gpu_fan_speed_ratio")}
    assert gpus == {str(i) for i in range(8)} - {"4"}


def test_openmetrics_exposition_is_valid(node_backend: SimBackend) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

    c = FrameCollector("train-01", dcgm_names=True)
    c.update(node_backend.sample())
    text = openmetrics(c.registry).decode()
    families = list(parse_om(text))
    assert {f.name for f in families} >= {"coldaisle_gpu_energy_joules", "coldaisle_gpu", "DCGM_FI_DEV_GPU_TEMP"}
    assert "# UNIT coldaisle_gpu_temperature_celsius celsius" in text


def test_update_is_cheap_and_scrape_of_a_cluster_is_bounded(twin: Twin) -> None:
    cluster = SimBackend(twin)  # all 32 GPUs of the healthy scenario
    frame = cluster.sample()
    c = FrameCollector("sim", dcgm_names=True)
    t0 = time.perf_counter()
    for _ in range(1000):
        c.update(frame)
    assert (time.perf_counter() - t0) / 1000 < 1e-3
    assert len(_samples(exposition(c.registry), "coldaisle_gpu_power_watts")) == 32
    assert not np.isnan(frame.power_w).any() and not math.isnan(float(frame.power_w.sum()))


@pytest.mark.prometheus
def test_promtool_accepts_the_native_exposition(node_backend: SimBackend) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; run scripts/install-test-deps.sh", pytrace=False)
    text = _full(node_backend, dcgm=False)
    done = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30,
                          check=False)
    output = (done.stdout + done.stderr).decode()
    # promtool reads the `d` of `d_state` as "days"; the name is the one the policy's PromQL export uses.
    findings = [line for line in output.splitlines()
                if line.strip() and not line.startswith("coldaisle_host_processes_d_state ")]
    assert findings == [], f"promtool's lint found naming problems:\n{output}"
    assert done.returncode == 0 or "abbreviated units" in output


def test_job_series_carry_progress_age_and_latency_quantiles(node_backend: SimBackend) -> None:
    """The report's p99 of 45 s, from a serving job's coldaisle.latency() calls, as a scrapeable series."""
    text = _full(node_backend, dcgm=False)
    want = [({"node": "train-01", "workload": "slurm:4242"}, 3.5)]
    assert _samples(text, "coldaisle_job_progress_age_seconds") == want
    assert [v for _, v in _samples(text, "coldaisle_job_latency_p50_seconds")] == [0.2]
    assert [v for _, v in _samples(text, "coldaisle_job_latency_p99_seconds")] == [45.0]
