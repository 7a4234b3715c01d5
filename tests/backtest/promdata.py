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
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; run scripts/install-test-deps.sh (Debian package `prometheus`)",
                    pytrace=False)
    tmp = Path(tempfile.mkdtemp(prefix="coldaisle-backtest-"))
    try:
        made = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics),
                               str(tmp / "data")], check=False, capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, f"promtool refused the file:\n{made.stdout}\n{made.stderr}"
        (tmp / "prometheus.yml").write_text("global: {scrape_interval: 1h}\n")
        with helpers.running(tmp / "prometheus.yml", tmp / "data", retention="100y", ready_timeout=30.0) as server:
            yield server
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
