"""Scenario files: every shipped one loads; a malformed one names file, line and field, and nothing runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coldaisle.errors import ConfigError
from coldaisle.sim.run import load_plan, parse_until
from coldaisle.sim.scenario import find_scenario, load_scenario, parse_scenario, scenario_dir

SHIPPED = sorted(p.stem for p in scenario_dir().glob("*.yaml"))

# Line numbers below refer to this text (line 1 is `name: tiny`).
BASE = """\
name: tiny
start: 2024-06-03T10:00:00Z
duration: 1 h
card:
  model: h100-sxm-80gb
  tdp: 700 W
topology:
  gpus_per_node: 2
  nodes_per_rack: 2
jobs:
  - name: train
    id: 1
    nodes: node-gpu-01..node-gpu-02
    compute_power: 500 W
    spin_power: 600 W
    memory_per_gpu: 10 GiB
timeline:
  - {at: "10:05", fault: fan_failure, node: node-gpu-01}
  - at: "10:10"
    fault: fan_failure
    node: node-gpu-02
"""
SECOND_JOB = """\
  - name: train
    id: 2
    nodes: node-gpu-01
    compute_power: 500 W
    spin_power: 600 W
    memory_per_gpu: 10 GiB
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


#: case -> (scenario text, line, field, words the message must contain)
MALFORMED: dict[str, tuple[str, int, str, str]] = {
    "unknown key": (edit("  tdp: 700 W\n", "  tdp: 700 W\n  colour: red\n"), 7, "card.colour", "unknown key"),
    "unknown key in a timeline entry": (edit("    node: node-gpu-02\n", "    node: node-gpu-02\n    rpm: 3\n"),
                                        22, "timeline[1].rpm", "unknown key"),
    "wrong unit": (edit("spin_power: 600 W", "spin_power: 600 C"), 15, "jobs[0].spin_power",
                   "'C' is not a unit of power"),
    "missing unit": (edit("tdp: 700 W", "tdp: 700"), 6, "card.tdp", "has no unit"),
    "wrong unit in a timeline entry": (
        edit('{at: "10:05", fault: fan_failure, node: node-gpu-01}',
             '{at: "10:05", fault: kv_growth, node: node-gpu-01, tokens: 5, tokens_per_second: 3 W, '
             "bytes_per_token: 1 MiB}"), 18, "timeline[0].tokens_per_second", "not a unit of rate"),
    "node that does not exist (timeline)": (edit("node: node-gpu-01}", "node: node-gpu-07}"), 18,
                                            "timeline[0].node", "no node named 'node-gpu-07'"),
    "node that does not exist (job)": (edit("node-gpu-01..node-gpu-02", "node-gpu-01..node-gpu-09"), 13,
                                       "jobs[0].nodes", "no node named 'node-gpu-09'"),
    "time out of order": (edit('at: "10:10"', 'at: "10:04"'), 19, "timeline[1].at", "time order"),
    "time outside the run": (edit('at: "10:10"', 'at: "11:30"'), 19, "timeline[1].at", "outside the scenario"),
    "not a time of day": (edit('at: "10:10"', 'at: "25:10"'), 19, "timeline[1].at", "not a time of day"),
    "duplicate job name": (edit("timeline:\n", SECOND_JOB + "timeline:\n"), 17, "jobs[1].name", "used twice"),
    "unknown GPU model": (edit("h100-sxm-80gb", "h100-sxm-80g"), 5, "card.model", "unknown GPU model"),
    "power above the card's TDP": (edit("compute_power: 500 W", "compute_power: 900 W"), 14,
                                   "jobs[0].compute_power", "TDP (700 W)"),
    "GPU index beyond the node": (edit("node: node-gpu-01}", "node: node-gpu-01, gpu: 2}"), 18,
                                  "timeline[0].gpu", "0..1"),
    "missing required field": (edit("    spin_power: 600 W\n", ""), 11, "jobs[0].spin_power", "Field required"),
    "duplicate key": (edit("  tdp: 700 W\n", "  tdp: 700 W\n  tdp: 350 W\n"), 7, "card.tdp", "duplicate key"),
    "value out of range": (edit("  gpus_per_node: 2\n", "  gpus_per_node: 40\n"), 8, "topology.gpus_per_node",
                           "less than or equal to 16"),
}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_scenario_loads(name: str) -> None:
    scenario, plan = load_scenario(find_scenario(name))
    assert scenario.name == name
    assert plan.layout.n_gpus > 0 and plan.jobs
    assert all(0 <= f.at_s <= plan.duration_s for f in plan.faults)
    assert [f.at_s for f in plan.faults] == sorted(f.at_s for f in plan.faults)


def test_the_shipped_scenarios_include_the_flagship() -> None:
    assert {"prometheus-unbound", "healthy-training", "single-node-fan-failure", "runaway-process"} <= set(SHIPPED)
    plan = load_plan("prometheus-unbound")
    assert plan.layout.n_gpus == 512 and plan.layout.n_racks == 8
    assert plan.card.tdp_w == 700.0 and plan.card.name == "NVIDIA H100 PCIe"


def test_the_base_text_of_these_tests_is_valid() -> None:
    _, plan = parse_scenario(BASE)
    assert [f.at_s for f in plan.faults] == [300.0, 600.0]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_scenario_names_file_line_and_field(case: str, tmp_path: Path) -> None:
    text, line, field, words = MALFORMED[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    err = info.value
    assert str(err).startswith(f"{path}:{line}: {field}: "), str(err)
    assert words in str(err)
    assert (err.file, err.line, err.field, err.exit_code) == (str(path), line, field, 2)


def test_an_unknown_gpu_model_gets_a_did_you_mean_hint() -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario(edit("h100-sxm-80gb", "h100-sxm-80g"), "s.yaml")
    assert info.value.hint == "did you mean 'h100-sxm-80gb'?"


def test_a_missing_node_hint_names_the_clusters_nodes() -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario(edit("node: node-gpu-01}", "node: node-gpu-7}"), "s.yaml")
    assert info.value.hint == "the cluster has node-gpu-01..node-gpu-02"


def test_a_yaml_syntax_error_names_its_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario(edit("  tdp: 700 W\n", "  tdp: 700 W: 3\n"), "s.yaml")
    assert str(info.value).startswith("s.yaml:6: not valid YAML: ")
    assert info.value.line == 6


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_scenario(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file") as info:
        load_scenario(tmp_path / "nope.yaml")
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("at", "seconds"), [("10:05", 300.0), ("10:05:30", 330.0)])
def test_an_unquoted_clock_time_is_a_time_not_a_base_60_integer(at: str, seconds: float) -> None:
    text = edit('{at: "10:05",', f"{{at: {at},").replace('at: "10:10"', "at: 10:50")
    _, plan = parse_scenario(text)
    assert [f.at_s for f in plan.faults] == [seconds, 3000.0]


def test_the_incident_reads_its_unquoted_style_times_as_clock_times() -> None:
    text = find_scenario("prometheus-unbound").read_text(encoding="utf-8")
    text = text.replace('at: "03:04"', "at: 03:04").replace('start: "04:10"', "start: 04:10")
    _, plan = parse_scenario(text)
    assert plan.faults[0].at_s == 240.0
    assert plan.jobs[1].start_s == 70 * 60.0


@pytest.mark.parametrize("spec", ["+5 min", "+300 s", "10:05", "10:05:00"])
def test_timeline_times_in_every_documented_form_resolve(spec: str) -> None:
    _, plan = parse_scenario(edit('at: "10:05"', f'at: "{spec}"'))
    assert plan.faults[0].at_s == 300.0


@pytest.mark.parametrize("spec", ['"2024-06-03T10:05:00Z"', "2024-06-03T10:05:00Z", "2024-06-03 10:05:00"])
def test_an_iso_timestamp_is_accepted_as_a_time(spec: str) -> None:
    """resolve_time's docstring and every time error's hint offer "2024-05-21T03:04:00Z"; it must work."""
    _, plan = parse_scenario(edit('at: "10:05"', f"at: {spec}"))
    assert plan.faults[0].at_s == 300.0


def test_an_iso_until_is_accepted() -> None:
    plan = load_plan("single-node-fan-failure")
    assert parse_until("+10 min", plan) == 600.0
    assert parse_until("10:30", plan) == 1800.0
    assert parse_until("2024-06-03T10:30:00Z", plan) == 1800.0


def test_a_zero_duration_names_the_duration_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario(edit("duration: 1 h", "duration: 0 s"), "s.yaml")
    assert (info.value.line, info.value.field) == (3, "duration")


# -- through the command line: exit 2, `Error:` with file:line, and nothing ran -------------------------
def run_cli(*args: str, cwd: Path, columns: int | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "coldaisle.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("case", ["unknown key", "wrong unit", "node that does not exist (timeline)",
                                  "time out of order"])
def test_the_cli_refuses_a_malformed_scenario_before_running_anything(case: str, tmp_path: Path) -> None:
    text, line, field, _ = MALFORMED[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    logs = tmp_path / "logs"
    proc = run_cli("sim", "run", str(path), "--json", "--logs", str(logs), cwd=tmp_path, columns=1000)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert not logs.exists()
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"Error: {path}:{line}: {field}: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_cli_prints_the_hint_after_the_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(edit("h100-sxm-80gb", "h100-sxm-80g"), encoding="utf-8")
    proc = run_cli("sim", "run", str(path), cwd=tmp_path, columns=1000)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"Error: {path}:5: card.model: unknown GPU model 'h100-sxm-80g'",
                                        "Hint: did you mean 'h100-sxm-80gb'?"]


def test_the_cli_error_line_is_not_wrapped_in_a_narrow_or_piped_console(tmp_path: Path) -> None:
    """CI logs and editors find `file:line:` on the `Error:` line; a hard wrap at 80 columns breaks that."""
    deep = tmp_path / "scenarios-under-review" / "a-rather-long-folder-name"
    deep.mkdir(parents=True)
    path = deep / "bad.yaml"
    path.write_text(MALFORMED["duplicate job name"][0], encoding="utf-8")
    proc = run_cli("sim", "run", str(path), cwd=tmp_path, columns=None)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"Error: {path}:17: jobs[1].name: job name 'train' is used twice"


def test_the_cli_error_shows_user_text_verbatim_even_when_it_looks_like_markup(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(edit("node: node-gpu-01}", 'node: "[red]node-gpu-01"}'), encoding="utf-8")
    proc = run_cli("sim", "run", str(path), cwd=tmp_path, columns=1000)
    assert proc.returncode == 2
    assert "no node named '[red]node-gpu-01'" in proc.stderr, proc.stderr
