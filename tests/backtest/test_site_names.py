"""A site that relabelled dcgm-exporter's series (a mapping file says how), and a policy that reads a series the site
does not have (the rule is named, and why; the others are evaluated)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from promdata import T0, dcgm, om_text

from coldaisle.backtest.fleet import job_of_labels
from coldaisle.backtest.mapping import load_mapping
from coldaisle.backtest.prom import Prometheus
from coldaisle.backtest.run import Window, backtest
from coldaisle.errors import ColdaisleError, ConfigError
from coldaisle.policy.loader import parse_policy

TIMES = T0 + 15.0 * np.arange(81)  # 20 minutes
POLICY = """
rules:
  - name: hot-and-drawing
    when: temperature_c > 85 and power_w > 600
    for: 30 s
    actions: [{do: notify}, {do: power_cap, fraction: 0.5}]
  - name: inlet-too-hot
    scope: node
    when: inlet_c > 35
    for: 60 s
    actions: [{do: notify}]
"""
MAPPING = """\
labels: {node: host, gpu: card, uuid: serial, model: product}
series:
  temperature_c: {metric: site_gpu_temp}
  power_w: {metric: site_gpu_power_mw, scale: 0.001}
  inlet_c: {metric: ipmi_temperature_celsius, match: {name: Inlet_Temp}, node_label: bmc}
"""


def _relabelled() -> str:
    """Two nodes, one GPU each, under this site's own names; a BMC exporter with two sensors per node."""
    temp, power, ipmi = [], [], []
    for node in ("b1", "b2"):
        labels = {"host": node, "card": "0", "serial": f"GPU-{node}-0", "product": "NVIDIA H100 80GB HBM3"}
        hot = (TIMES >= T0 + 300) & (node == "b1")
        temp.append((labels, list(zip(TIMES, np.where(hot, 90.0, 60.0), strict=True))))
        power.append((labels, list(zip(TIMES, np.where(hot, 650_000.0, 300_000.0), strict=True))))
        warm = (TIMES >= T0 + 600) & (node == "b2")
        ipmi.append(({"bmc": node, "name": "Inlet_Temp"}, list(zip(TIMES, np.where(warm, 38.0, 22.0), strict=True))))
        ipmi.append(({"bmc": node, "name": "Exhaust_Temp"}, list(zip(TIMES, np.full(TIMES.size, 55.0), strict=True))))
    return om_text({"site_gpu_temp": temp, "site_gpu_power_mw": power, "ipmi_temperature_celsius": ipmi})


@pytest.mark.prometheus
def test_a_mapping_file_reads_a_relabelled_site(tmp_path: Path, prometheus_with) -> None:
    om, mapping = tmp_path / "site.om", tmp_path / "mapping.yaml"
    om.write_text(_relabelled())
    mapping.write_text(MAPPING)
    server = prometheus_with(om)
    lp, window = parse_policy(POLICY, "site.yaml"), Window(T0, T0 + 1200.0, 15.0)
    with pytest.raises(ColdaisleError, match="no GPU series") as err:
        backtest(Prometheus(server.url), lp, load_mapping(None), window)  # dcgm-exporter's names: none here
    assert "DCGM_FI_DEV_GPU_TEMP" in (err.value.hint or "")
    result = backtest(Prometheus(server.url), lp, load_mapping(mapping), window)
    assert not result.skipped and result.gpus == 2
    hot, inlet = (next(f for f in result.firings if f.rule == r) for r in ("hot-and-drawing", "inlet-too-hot"))
    assert (hot.subject, hot.uuid, hot.first) == ("b1/gpu0", "GPU-b1-0", T0 + 330)
    assert hot.evidence["power_w"] == 650.0  # milliwatts, scaled to the policy's watts
    cap = next(a for a in hot.actions if a.do == "power_cap")
    assert cap.target == "b1/gpu0 job node:b1" and cap.status == "would act"  # no job labels: a node is a job
    assert (inlet.subject, inlet.first) == ("b2", T0 + 660)  # the inlet sensor only: the exhaust's 55 C is not it
    assert len(result.firings) == 2


@pytest.mark.prometheus
def test_a_rule_that_reads_a_series_the_site_lacks_is_named_and_the_others_run(tmp_path: Path,
                                                                               prometheus_with) -> None:
    om = tmp_path / "dcgm.om"
    om.write_text(om_text({"DCGM_FI_DEV_GPU_TEMP": [(dcgm("c1", 0), [(t, 91.0) for t in TIMES])]}))
    server = prometheus_with(om)
    window = Window(T0, T0 + 1200.0, 15.0)
    lacking = parse_policy("""
rules:
  - name: memory-idle-but-hot
    when: utilization_memory < 5 and temperature_c > 90
    actions: [{do: notify}]
""", "lacking.yaml")
    with pytest.raises(ColdaisleError) as err:
        backtest(Prometheus(server.url), lacking, load_mapping(None), window)
    msg = err.value.message
    assert "memory-idle-but-hot" in msg and "utilization_memory" in msg
    assert "DCGM_FI_DEV_MEM_COPY_UTIL" in msg and "coldaisle_gpu_memory_utilization_ratio" in msg
    assert "mapping" in (err.value.hint or "")
    both = parse_policy("""
rules:
  - name: memory-idle-but-hot
    when: utilization_memory < 5 and temperature_c > 90
    actions: [{do: notify}]
  - name: hot
    when: temperature_c > 90
    actions: [{do: notify}]
""", "both.yaml")
    result = backtest(Prometheus(server.url), both, load_mapping(None), window)
    assert [s.rule for s in result.skipped] == ["memory-idle-but-hot"]
    assert [(f.rule, f.subject, f.first) for f in result.firings] == [("hot", "c1/gpu0", T0)]


def test_mapping_file_errors_name_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: {node: host}\nseries:\n  temprature_c: {metric: x}\n")
    with pytest.raises(ConfigError) as err:
        load_mapping(bad)
    assert err.value.message.startswith(f"{bad}:3: series.temprature_c:")
    assert err.value.hint == "did you mean 'temperature_c'?"
    bad.write_text("series:\n  process_power_w: {metric: x}\n")
    with pytest.raises(ConfigError, match=r":2: series.process_power_w: process_power_w is per process"):
        load_mapping(bad)
    bad.write_text("series:\n  power_w: {metric: x, scale: -1}\n")
    with pytest.raises(ConfigError, match=r":2: series.power_w.scale: "):
        load_mapping(bad)
    bad.write_text("labels: {nodes: host}\n")
    with pytest.raises(ConfigError, match=r":1: labels.nodes: unknown key"):
        load_mapping(bad)
    bad.write_text("unknown: [job_progress_age_s, inlet_cc]\n")
    with pytest.raises(ConfigError, match=r":1: unknown\[1\]: 'inlet_cc' is not a name"):
        load_mapping(bad)


def test_jobs_are_slurm_jobs_or_pods_as_dcgm_exporter_labels_them() -> None:
    site = load_mapping(None)
    assert job_of_labels(dcgm("n1", 0, hpc_job="4242"), site) == "slurm:4242"
    assert job_of_labels(dcgm("n1", 0, pod="trainer-0", namespace="ml"), site) == "pod:ml/trainer-0"
    assert job_of_labels(dcgm("n1", 0), site) == ""


def test_a_mapped_name_replaces_the_built_in_series_and_unknown_names_are_kept(tmp_path: Path) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text(MAPPING + "unknown: [job_progress_age_s]\n")
    site = load_mapping(ok)
    assert site.labels.node == ["host"] and site.labels.job == ["hpc_job", "slurm_job"]
    (power,) = site.sources["power_w"].candidates
    assert (power.metric, power.scale) == ("site_gpu_power_mw", 0.001)
    assert site.sources["inlet_c"].kind == "gauge" and site.node_labels == {"ipmi_temperature_celsius": ("bmc",)}
    assert site.unknown == {"job_progress_age_s"}
    assert site.sources["temperature_c"].candidates[0].metric == "site_gpu_temp"
    assert load_mapping(None).sources["temperature_c"].candidates[0].metric == "DCGM_FI_DEV_GPU_TEMP"
