"""The metric catalog is complete (every Frame column) and follows Prometheus naming practice."""

from __future__ import annotations

import re

from coldaisle.telemetry.frame import METRIC_NAMES
from coldaisle.telemetry.metrics_catalog import (
    BY_NAME,
    CATALOG,
    DCGM_LABELS,
    FRAME_COLUMNS,
    MetricGroup,
    MetricType,
    names,
)

_BASE_UNITS = {"celsius", "watts", "joules", "bytes", "ratio", "hertz", "bytes_per_second", "seconds", ""}


def test_every_frame_column_has_a_metric() -> None:
    assert set(FRAME_COLUMNS) == set(METRIC_NAMES)
    sources = {m.source for m in CATALOG if m.group is MetricGroup.GPU}
    assert set(METRIC_NAMES) <= sources


def test_names_are_unique() -> None:
    assert len(BY_NAME) == len(CATALOG)


def test_native_names_follow_prometheus_practice() -> None:
    for m in CATALOG:
        if m.group is MetricGroup.DCGM:
            continue
        assert re.fullmatch(r"coldaisle_(gpu|host|agent|job|node)_[a-z0-9_]+", m.name), m.name
        assert m.unit in _BASE_UNITS, m
        assert m.name.endswith("_total") == (m.kind is MetricType.COUNTER), m.name
        if m.unit:
            assert m.family.endswith(f"_{m.unit}"), m.name
        assert "percent" not in m.name and "mhz" not in m.name, m.name
        assert set(m.labels) >= {"node"}, m.name
        assert "job" not in m.labels and "instance" not in m.labels, "labels Prometheus sets on every target"


def test_percent_and_megahertz_are_converted_to_base_units() -> None:
    assert BY_NAME["coldaisle_gpu_utilization_ratio"].scale == 0.01
    assert BY_NAME["coldaisle_gpu_fan_speed_ratio"].scale == 0.01
    assert BY_NAME["coldaisle_gpu_sm_clock_hertz"].scale == 1e6
    assert BY_NAME["coldaisle_gpu_energy_joules_total"].kind is MetricType.COUNTER


def test_dcgm_aliases_keep_dcgm_exporter_names_labels_and_units() -> None:
    dcgm = {m.name: m for m in CATALOG if m.group is MetricGroup.DCGM}
    assert {"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
            "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK",
            "DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
            "DCGM_FI_DEV_XID_ERRORS"} <= set(dcgm)
    assert all(m.labels == DCGM_LABELS for m in dcgm.values())
    assert dcgm["DCGM_FI_DEV_FB_USED"].scale == 2.0**-20  # MiB
    assert dcgm["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].scale == 1e3  # mJ
    assert dcgm["DCGM_FI_DEV_GPU_UTIL"].scale == 1.0  # percent, as DCGM reports it
    assert all(not m.name.endswith("_total") or m.kind is not MetricType.COUNTER for m in dcgm.values())


def test_names_selects_groups() -> None:
    assert names(MetricGroup.GPU) & names(MetricGroup.DCGM) == frozenset()
    assert names() == frozenset(BY_NAME)
