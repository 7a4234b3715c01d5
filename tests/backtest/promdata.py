"""Backtest test data: OpenMetrics text from explicit samples, and a real Prometheus loaded with it by promtool.

`backfilled(path)` runs `promtool tsdb create-blocks-from openmetrics` (the Debian `prometheus` package) into a
fresh data directory and starts the real `prometheus` binary on it; a missing binary FAILS the test, as in
tests/promserver.py, whose PrometheusServer and readiness wait are reused here.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import promserver as helpers

T0 = 1_716_260_400.0  # 2024-05-21T03:00:00Z, the incident's night


Samples = Sequence[tuple[float, float]]


def om_text(families: dict[str, list[tuple[dict[str, str], Samples]]]) -> str:
    """OpenMetrics text: each family's series with their (unix seconds, value) samples, then `# EOF`."""
    out = []
    for name, series in families.items():
        out.append(f"# TYPE {name} gauge\n")
        for labels, samples in series:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            out += [f"{name}{{{text}}} {_number(v)} {float(t):.3f}\n" for t, v in samples]
    return "".join(out) + "# EOF\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """OpenMetrics' spelling: NaN, +Inf, -Inf, else the shortest exact decimal."""
    v = float(value)
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def dcgm(node: str, gpu: int, model: str = "NVIDIA H100 80GB HBM3", **extra: str) -> dict[str, str]:
    """dcgm-exporter's labels for one GPU."""
    return {"gpu": str(gpu), "UUID": f"GPU-{node}-{gpu}", "device": f"nvidia{gpu}", "modelName": model,
            "Hostname": node, "instance": f"{node}:9400", "job": "dcgm-exporter", **extra}


@contextmanager
def backfilled(openmetrics: Path) -> Iterator[Any]:
    """A real Prometheus serving exactly the samples of `openmetrics` (promtool-made blocks), stopped on exit."""
    promtool, binary = shutil.which("promtool"), shutil.which("prometheus")
    if promtool is None or binary is None:
        pytest.fail("promtool and prometheus are not installed; run scripts/install-test-deps.sh (Debian package "
                    "`prometheus`)", pytrace=False)
    tmp = Path(tempfile.mkdtemp(prefix="coldaisle-backtest-"))
    try:
        made = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics),
                               str(tmp / "data")], check=False, capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, f"promtool refused the file:\n{made.stdout}\n{made.stderr}"
        (tmp / "prometheus.yml").write_text("global: {scrape_interval: 1h}\n")
        port = helpers.free_port()
        with open(tmp / "prometheus.log", "wb") as log:
            proc = subprocess.Popen(
                [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp)
        server = helpers.PrometheusServer(f"http://127.0.0.1:{port}", proc, tmp / "prometheus.log")
        try:
            helpers.wait_ready(server, 30.0)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
