"""The HTTP server over real sockets on 127.0.0.1: /metrics (text and OpenMetrics), /healthz, errors."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from coldaisle.agent.exporter import FrameCollector
from coldaisle.agent.server import AgentServer
from coldaisle.sim.backend import SimBackend


class _Health:
    def __init__(self) -> None:
        self.ok, self.age = True, 0.4

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        return self.ok, {"last_sample_age_s": self.age}


@pytest.fixture
def served(node_backend: SimBackend) -> Iterator[tuple[AgentServer, _Health]]:
    collector = FrameCollector("train-01")
    collector.update(node_backend.sample())
    health = _Health()
    server = AgentServer(collector.registry, health, port=0)
    server.start()
    try:
        yield server, health
    finally:
        server.stop()


def _get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_metrics_in_prometheus_text_format(served: tuple[AgentServer, _Health]) -> None:
    server, _ = served
    assert server.host == "127.0.0.1" and server.port > 0
    status, ctype, body = _get(f"{server.url}/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert body.count("coldaisle_gpu_temperature_celsius{") == 8


def test_metrics_honour_openmetrics_accept(served: tuple[AgentServer, _Health]) -> None:
    server, _ = served
    status, ctype, body = _get(f"{server.url}/metrics", "application/openmetrics-text; version=1.0.0")
    assert status == 200 and ctype.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n") and "# UNIT coldaisle_gpu_power_watts watts" in body


def test_openmetrics_can_be_turned_off(node_backend: SimBackend) -> None:
    collector = FrameCollector("train-01")
    collector.update(node_backend.sample())
    with AgentServer(collector.registry, lambda: (True, {}), port=0, openmetrics=False) as server:
        _, ctype, _ = _get(f"{server.url}/metrics", "application/openmetrics-text; version=1.0.0")
    assert ctype.startswith("text/plain; version=0.0.4")


def test_healthz_ok_and_unhealthy(served: tuple[AgentServer, _Health]) -> None:
    server, health = served
    status, ctype, body = _get(f"{server.url}/healthz")
    assert (status, ctype, json.loads(body)) == (200, "application/json", {"ok": True, "last_sample_age_s": 0.4})
    health.ok, health.age = False, 42.0
    status, _, body = _get(f"{server.url}/healthz")
    assert status == 503 and json.loads(body) == {"ok": False, "last_sample_age_s": 42.0}


def test_unknown_path_and_broken_health(served: tuple[AgentServer, _Health]) -> None:
    server, _ = served
    assert _get(f"{server.url}/nope")[0] == 404

    def broken() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("boom")

    server.health = broken
    assert server._httpd is not None
    server._httpd.health = broken
    status, _, body = _get(f"{server.url}/healthz")
    assert status == 500 and "boom" in body
    assert _get(f"{server.url}/metrics")[0] == 200  # still serving


def test_concurrent_scrapes_while_updating(served: tuple[AgentServer, _Health], node_backend: SimBackend) -> None:
    server, _ = served
    collector = FrameCollector("train-01")
    server._httpd.registry = collector.registry  # type: ignore[union-attr]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            collector.update(node_backend.sample())

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        bodies = [_get(f"{server.url}/metrics")[2] for _ in range(20)]
    finally:
        stop.set()
        thread.join()
    assert all(b.count("coldaisle_gpu_power_watts{") == 8 for b in bodies if b)


def test_stop_releases_the_port(node_backend: SimBackend) -> None:
    collector = FrameCollector("n")
    with AgentServer(collector.registry, lambda: (True, {}), port=0) as server:
        port = server.port
        assert _get(f"{server.url}/healthz")[0] == 200
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
    again = AgentServer(collector.registry, lambda: (True, {}), port=port)
    again.start()  # the same port binds again at once
    again.stop()
