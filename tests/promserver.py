"""A real Prometheus for integration tests: the Debian `prometheus` binary on 127.0.0.1, and a free port.

`prometheus_server(targets)` starts it with a temporary config and TSDB, waits until it is ready, and always
terminates it; tests that start it their own way (a backfilled TSDB) reuse `PrometheusServer`, `free_port`
and `wait_ready`. A missing binary FAILS the test: CI installs it with scripts/install-test-deps.sh, and a
skipped integration test would hide that it never ran. Importable from every test folder (tests/ is on the
path through tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrometheusServer:
    """A running Prometheus: its base URL, process, and a small HTTP API client."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path> and return `data` (raises on an API error)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=5) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus API error: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the result vector."""
        return list(self.api("query", query=promql)["result"])

    def wait_for(self, promql: str, ok: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0
                 ) -> list[dict[str, Any]]:
        """Poll `promql` until `ok(result)`; fail with the server log tail on timeout."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self._alive()
            result = self.query(promql)
            if ok(result):
                return result
            time.sleep(0.25)
        pytest.fail(f"Prometheus never satisfied {promql!r} in {timeout:g} s; last result {result}\n"
                    f"{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")


def _config(targets: Sequence[str], interval: str) -> str:
    """prometheus.yml scraping `targets` (host:port) every `interval`; JSON is valid YAML."""
    return json.dumps({
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": "coldaisle", "scrape_interval": interval, "scrape_timeout": interval,
                            "static_configs": [{"targets": list(targets)}]}],
    }, indent=2)


@contextmanager
def prometheus_server(scrape_targets: Sequence[str], *, scrape_interval: str = "1s",
                      ready_timeout: float = 20.0) -> Iterator[PrometheusServer]:
    """Run the real `prometheus` binary scraping `scrape_targets`; stopped (terminate + wait) on exit."""
    tmp = Path(tempfile.mkdtemp(prefix="coldaisle-prometheus-"))
    try:
        config = tmp / "prometheus.yml"
        config.write_text(_config(scrape_targets, scrape_interval))
        with running(config, tmp / "tsdb", retention="1h", ready_timeout=ready_timeout,
                     extra=("--log.level=info",)) as server:
            yield server
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def running(config: Path, tsdb: Path, *, retention: str, ready_timeout: float,
            extra: Sequence[str] = ()) -> Iterator[PrometheusServer]:
    """The `prometheus` binary with `config` and the TSDB `tsdb`, on a free port of 127.0.0.1, once it is ready;
    terminated (killed if it lingers) on exit. Its log is `prometheus.log` beside the config."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the `prometheus` binary is not installed; run scripts/install-test-deps.sh (Debian package "
                    "`prometheus`)", pytrace=False)
    port, log = free_port(), config.with_name("prometheus.log")
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
             f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.retention.time={retention}", *extra],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=config.parent)
    server = PrometheusServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_ready(server, ready_timeout)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_ready(server: PrometheusServer, timeout: float) -> None:
    """Until the server answers /-/ready (fails the test with its log tail after `timeout` seconds)."""
    wait_ok(f"{server.url}/-/ready", timeout, server._alive,
            lambda: f"prometheus not ready after {timeout:g} s:\n{server.log_tail()}")


def wait_ok(url: str, timeout: float, alive: Callable[[], None], why: Callable[[], str]) -> None:
    """Until `url` answers 200; `alive()` fails the test as soon as the process behind it has exited, and after
    `timeout` seconds the test fails with `why()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(why())
