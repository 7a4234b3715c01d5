"""`coldaisle sim run` and `coldaisle demo` as a user runs them: a real process, real files, real JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from coldaisle.replay.summary import SCHEMA


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    return subprocess.run([sys.executable, "-m", "coldaisle.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180, check=False)


def parse_iso(text: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    proc = cli("sim", "run", "single-node-fan-failure", "--json", cwd=tmp_path_factory.mktemp("run"))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_sim_run_json_has_the_documented_schema(summary: dict[str, Any]) -> None:
    assert summary["schema"] == SCHEMA == "coldaisle.sim.summary/1"
    assert summary["scenario"] == "single-node-fan-failure"
    assert summary["simulated_s"] == 3600.0
    assert parse_iso(summary["end"]) > parse_iso(summary["start"])
    assert summary["cluster"]["gpus"] == 8 and summary["cluster"]["card"] == "NVIDIA H100 80GB HBM3"
    for key in ("jobs", "nodes_down", "nodes_drained", "energy", "events", "gpus", "sensors"):
        assert key in summary


def test_sim_run_json_has_a_sensor_reading_every_simulated_minute(summary: dict[str, Any]) -> None:
    readings = summary["sensors"]["node-hottest"]["readings"]
    assert summary["sensors"]["node-hottest"]["unit"] == "celsius"
    times = [parse_iso(t) for t, _ in readings]
    assert len(readings) >= 60
    assert times[0] == parse_iso(summary["start"]) and times[-1] == parse_iso(summary["end"])
    assert all((b - a).total_seconds() <= 60 for a, b in pairwise(times))
    assert all(isinstance(v, float) for _, v in readings)


def test_sim_run_json_has_every_gpus_peak_and_the_hot_one(summary: dict[str, Any]) -> None:
    peaks = summary["gpus"]["peak_temperature_c"]
    assert sorted(peaks) == [f"gpu-node-01/gpu{i}" for i in range(8)]
    assert summary["gpus"]["hottest"]["gpu"] == "gpu-node-01/gpu3"
    assert peaks["gpu-node-01/gpu3"] > summary["cluster"]["slowdown_c"] > max(
        v for k, v in peaks.items() if k != "gpu-node-01/gpu3")
    assert list(summary["gpus"]["seconds_above_slowdown"]) == ["gpu-node-01/gpu3"]


def test_sim_run_json_events_have_iso_times_in_order(summary: dict[str, Any]) -> None:
    events = summary["events"]
    times = [parse_iso(e["time"]) for e in events]
    assert times == sorted(times)
    classes = [e["class"] for e in events]
    assert {"job_start", "fan_failure", "thermal_slowdown"} <= set(classes)
    fan = next(e for e in events if e["class"] == "fan_failure")
    assert (fan["time"], fan["host"], fan["fields"]["gpu"]) == ("2024-06-03T10:20:00Z", "gpu-node-01", 3)
    assert all(e["severity"] in ("debug", "info", "warning", "error", "critical") for e in events)


@pytest.mark.parametrize("record_every", ["40 s", "7 s", "25 s"])
def test_sensor_readings_stay_at_most_a_minute_apart_whatever_the_recording_interval(
        tmp_path: Path, record_every: str) -> None:
    path = tmp_path / "sparse.yaml"
    path.write_text(f"""\
name: sparse
start: 2024-06-03T10:00:00Z
duration: 10 min
record_every: {record_every}
sensors:
  - {{name: hot, kind: gpu_max, rack: 1}}
""", encoding="utf-8")
    proc = cli("sim", "run", str(path), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    times = [parse_iso(t) for t, _ in json.loads(proc.stdout)["sensors"]["hot"]["readings"]]
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    assert max(gaps) <= 60.0, gaps


def test_sim_run_until_stops_early(tmp_path: Path) -> None:
    proc = cli("sim", "run", "single-node-fan-failure", "--json", "--until", "+10min", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["simulated_s"] == 600.0
    assert data["end"] == "2024-06-03T10:10:00Z"
    assert not [e for e in data["events"] if e["class"] == "fan_failure"]  # that was due at 10:20
    assert len(data["sensors"]["node-hottest"]["readings"]) == 11


def test_sim_run_until_a_clock_time(tmp_path: Path) -> None:
    proc = cli("sim", "run", "single-node-fan-failure", "--json", "--until", "10:30", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["end"] == "2024-06-03T10:30:00Z"


def test_sim_run_writes_every_nodes_logs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    proc = cli("sim", "run", "runaway-process", "--logs", str(logs), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)  # the logs note goes to stderr and leaves the JSON intact
    kern = (logs / "infer-01" / "kern.log").read_text(encoding="utf-8")
    assert "Xid" in kern and "79" in kern
    assert "GPU has fallen off the bus" in kern
    assert "blocked for more than 120 seconds" in kern
    assert "Kernel panic" in kern
    assert (logs / "slurmctld.log").read_text(encoding="utf-8").strip()
    assert (logs / "infer-01" / "job-serve.err").exists()
    assert (logs / "sensors.csv").exists()
    assert not [p for p in logs.rglob("*") if p.is_file() and "twin" in p.name]  # ground truth stays out


def test_sim_run_prints_a_report_without_json(tmp_path: Path) -> None:
    proc = cli("sim", "run", "single-node-fan-failure", "--until", "+25min", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "single-node-fan-failure" in proc.stdout
    assert "fan failure" in proc.stdout


def test_sim_run_of_an_unknown_scenario_name_is_an_error(tmp_path: Path) -> None:
    proc = cli("sim", "run", "no-such-scenario", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("Error: ")
    assert "no-such-scenario.yaml" in proc.stderr


def test_demo_writes_a_self_contained_html_report(tmp_path: Path) -> None:
    html_path = tmp_path / "out" / "demo.html"
    html_path.parent.mkdir()
    proc = cli("demo", "--until", "03:30", "--html", str(html_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = html_path.read_text(encoding="utf-8")
    assert "<svg" in html
    assert "prometheus-unbound" in html
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.IGNORECASE)
    assert not [u for u in links if re.match(r"(?i)\s*(https?:)?//", u)]
    assert not re.search(r"(?i)@import|url\(\s*['\"]?https?:", html)
    assert str(html_path) in proc.stdout.replace("\n", "")
