"""Acceptance: a real Prometheus server (Debian package `prometheus`) scrapes the agent and returns the GPU metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from coldaisle.agent.exporter import FrameCollector
from coldaisle.agent.server import AgentServer
from coldaisle.sim.backend import SimBackend


@pytest.mark.prometheus
def test_prometheus_scrapes_gpu_metrics(node_backend: SimBackend, prometheus_factory: Callable[..., Any]) -> None:
    frame = node_backend.sample()
    collector = FrameCollector("train-01", dcgm_names=True)
    collector.update(frame)
    with AgentServer(collector.registry, lambda: (True, {}), port=0) as agent:
        prom = prometheus_factory([f"127.0.0.1:{agent.port}"])
        series = prom.wait_for("coldaisle_gpu_temperature_celsius", lambda r: len(r) == len(frame))
        labels = [s["metric"] for s in series]
        assert sorted(int(m["gpu"]) for m in labels) == list(range(len(frame)))
        assert {m["node"] for m in labels} == {"train-01"}
        assert {m["uuid"] for m in labels} == {d.uuid for d in frame.devices}
        by_gpu = {m["gpu"]: float(s["value"][1]) for m, s in zip(labels, series, strict=True)}
        assert by_gpu["0"] == pytest.approx(frame.temperature_c[0])
        # The scrape went through as OpenMetrics (Prometheus asks for it first): counters and the dcgm names too.
        energy = prom.query("coldaisle_gpu_energy_joules_total")
        assert len(energy) == len(frame)
        fb = prom.query('DCGM_FI_DEV_FB_USED{gpu="1"}')
        assert float(fb[0]["value"][1]) == pytest.approx(frame.memory_used_bytes[1] / 2**20)
        procs = prom.query("coldaisle_gpu_process_memory_used_bytes")
        assert {p["metric"]["pid"] for p in procs} == {str(p) for p in frame.processes.pid.tolist()}
        assert all(p["metric"]["job"] == "coldaisle" for p in procs)  # Prometheus's own `job` is untouched
        up = prom.query('up{job="coldaisle"}')
        assert float(up[0]["value"][1]) == 1.0
