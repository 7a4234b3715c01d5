"""`coldaisle sim run --openmetrics`: the twin's history as dcgm-exporter's (and coldaisle's) series, which promtool
loads into a real Prometheus where the backtest and the shipped Grafana dashboard both read it.

runaway-process (one node, four GPUs, half an hour): a KV cache grows until GPU 1 of infer-01 spills, hangs and
falls off the bus (Xid 79) when nothing protects it.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coldaisle.replay.openmetrics import recorded_run
from coldaisle.sim.run import load_plan

COLDAISLE = shutil.which("coldaisle") or str(Path(sys.executable).with_name("coldaisle"))
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "coldaisle.json"
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+) (\d+\.\d{3})$')


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COLDAISLE, *args], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})


@pytest.fixture(scope="module")
def unprotected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "runaway.om"
    done = _run("sim", "run", "runaway-process", "--openmetrics", str(path), "--scrape-interval", "15s")
    assert done.returncode == 0, done.stderr
    assert "promtool tsdb create-blocks-from openmetrics" in done.stderr
    return path


def _samples(path: Path) -> dict[str, list[tuple[dict[str, str], float, float]]]:
    """family -> (labels, value, time) for every sample line; also checks each family's lines are together."""
    out: dict[str, list[tuple[dict[str, str], float, float]]] = {}
    family, closed = None, set()
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF"
    for line in lines[:-1]:
        if line.startswith("# TYPE "):
            if family is not None:
                closed.add(family)
            family = line.split()[2]
            assert family not in closed, f"{family} appears twice"
            continue
        if line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, line
        assert m[1].removesuffix("_total") == family, f"{m[1]} under # TYPE {family}"
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m[2]))
        out.setdefault(family, []).append((labels, float(m[3]), float(m[4])))
    return out


def test_the_export_is_dcgm_exporters_series_a_lost_gpu_falls_silent(unprotected: Path) -> None:
    fams = _samples(unprotected)
    plan = load_plan("runaway-process")
    temp = fams["DCGM_FI_DEV_GPU_TEMP"]
    labels = temp[0][0]
    assert {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "instance", "job"} <= set(labels)
    assert labels["modelName"] == "NVIDIA H100 PCIe" and labels["Hostname"] == "infer-01"
    times = sorted({t for _, _, t in temp})
    assert times[0] == plan.start_epoch and {b - a for a, b in itertools.pairwise(times)} == {15.0}
    gpu1 = [(t, v) for lb, v, t in temp if lb["gpu"] == "1"]
    lost = [(t, v) for lb, v, t in fams["coldaisle_gpu_lost"] if lb["gpu"] == "1" and v == 1.0]
    assert lost, "the runaway never took the GPU off the bus: the scenario changed"
    assert max(t for t, _ in gpu1) < min(t for t, _ in lost)  # no DCGM sample once it is lost
    assert {v for lb, v, _ in fams["DCGM_FI_DEV_XID_ERRORS"] if lb["gpu"] == "1"} == {0.0}  # DCGM lost it first
    assert 79.0 in {v for lb, v, _ in fams["coldaisle_gpu_last_xid"] if lb["gpu"] == "1"}  # the agent's kernel log
    jobs = {lb.get("hpc_job") for lb, _, _ in fams["DCGM_FI_DEV_GPU_UTIL"]}
    assert jobs == {None, "55"}  # before the job starts (+30 s) and while it runs
    used = {(lb["gpu"], t): v for lb, v, t in fams["DCGM_FI_DEV_FB_USED"]}
    free = {(lb["gpu"], t): v for lb, v, t in fams["DCGM_FI_DEV_FB_FREE"]}
    assert {used[k] + free[k] for k in used} == {plan.card.memory_total_bytes / 2**20}  # MiB, as dcgm-exporter
    assert fams["DCGM_FI_DEV_SLOWDOWN_TEMP"][0][1] == plan.card.slowdown_c


@pytest.mark.prometheus
def test_the_command_line_backtests_the_export_in_a_real_prometheus(unprotected: Path, prometheus_with,
                                                                     tmp_path: Path) -> None:
    server = prometheus_with(unprotected)
    plan = load_plan("runaway-process")
    start, end = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in
                  (plan.start_epoch, plan.start_epoch + plan.duration_s))
    done = _run("policy", "backtest", "default", "--prometheus", server.url, "--start", start, "--end", end,
                "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["schema"] == "coldaisle.backtest/1" and out["fleet"] == {"gpus": 4, "nodes": 1}
    skipped = {s["rule"]: s["why"] for s in out["not_evaluated"]}
    assert "memory-runaway" in skipped and "15 s step" in skipped["memory-runaway"]  # its 5 s and 10 s windows
    assert "not evaluated: memory-runaway" in done.stderr
    lost = [f for f in out["firings"] if f["rule"] == "gpu-lost-or-critical-xid"]
    # the runaway ends in a kernel panic at 12:11:01: the node and all four of its GPUs go silent
    assert sorted((f["subject"], f["gpu"], f["job"]) for f in lost) == [
        (f"infer-01/gpu{g}", g, "slurm:55") for g in range(4)]
    assert {f["first"] for f in lost} == {"2024-06-03T12:11:15Z"}  # coldaisle_gpu_lost, at the next scrape
    assert [(a["do"], a["status"]) for a in lost[0]["actions"]] == [("notify", "would act"), ("drain", "would act")]
    html = tmp_path / "backtest.html"
    done = _run("policy", "backtest", "default", "--prometheus", server.url, "--start", start, "--end", end,
                "--html", str(html))
    assert done.returncode == 0, done.stderr
    page = html.read_text()
    assert "gpu-lost-or-critical-xid" in page and "<svg" in page and "infer-01/gpu1" in page
    assert "12:11:15" in page


def test_bad_options_are_named_with_exit_code_2() -> None:
    done = _run("policy", "backtest", "default", "--prometheus", "http://127.0.0.1:9", "--start", "soon")
    assert done.returncode == 2 and "--start 'soon' is not a time" in done.stderr
    done = _run("policy", "backtest", "default", "--prometheus", "http://127.0.0.1:9", "--start", "now-1h",
                "--selector", "cluster=a")
    assert done.returncode == 2 and "is not a list of PromQL label matchers" in done.stderr
    done = _run("policy", "backtest", "default", "--prometheus", "http://127.0.0.1:9", "--start", "now-1h")
    assert done.returncode == 1 and "cannot reach Prometheus at http://127.0.0.1:9" in done.stderr


GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "${node}": ".*", "$node": ".*", "${rack}": ".*",
                "$rack": ".*"}
#: panels whose series the twin cannot give: the host's own signals and the agent's per-process health
NOT_ON_THE_TWIN = ("coldaisle_host_", "coldaisle_gpu_process_", "coldaisle_agent_samples_total",
                   "coldaisle_agent_sample_duration", "coldaisle_agent_last_sample", "coldaisle_gpu_throttled")


def test_the_actions_counter_counts_every_outcome_not_only_those_the_runner_keeps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner keeps only its latest Outcomes (for /metrics); the export's counter sees each one as it happens."""
    import functools

    import coldaisle.replay.protected as protected_module

    monkeypatch.setattr(protected_module, "RuntimeOptions",
                        functools.partial(protected_module.RuntimeOptions, keep_outcomes=1))
    path = tmp_path / "protected.om"
    _, g = recorded_run(load_plan("runaway-process"), path, policy="default", every_s=15.0,
                        audit_path=tmp_path / "audit.jsonl")
    assert g is not None and len(g.runner.outcomes) == 1 < sum(g.runner.counts.values())
    samples = _samples(path)["coldaisle_agent_actions"]
    end = max(ts for _, _, ts in samples)
    counted: dict[tuple[str, str], int] = {}
    for labels, value, ts in samples:
        if ts == end:
            key = (labels["action"], labels["status"])
            counted[key] = counted.get(key, 0) + int(value)
    assert counted == dict(g.runner.counts)


@pytest.mark.slow
@pytest.mark.prometheus
def test_the_shipped_dashboard_reads_a_protected_export(tmp_path: Path, prometheus_with) -> None:
    plan = load_plan("prometheus-unbound")
    path = tmp_path / "night.om"
    recorded_run(plan, path, policy="default", every_s=15.0, until_s=420.0, audit_path=tmp_path / "audit.jsonl")
    server = prometheus_with(path)
    at = plan.start_epoch + 420.0
    dash = json.loads(DASHBOARD.read_text())
    exprs = [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", ())]
    checked, empty = 0, []
    for title, panel_expr in exprs:
        if any(name in panel_expr for name in NOT_ON_THE_TWIN):
            continue
        expr = panel_expr
        for var, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(var, value)
        result = server.api("query", query=expr, time=f"{at:.0f}")["result"]
        checked += 1
        if not result:
            empty.append(f"{title}: {expr}")
    assert not empty, "dashboard queries with no data on the export:\n" + "\n".join(empty)
    assert checked >= 15
    racks = server.api("label/rack/values", **{"match[]": "coldaisle_gpu_power_watts"})
    assert racks == [f"r{i:02d}" for i in range(1, 9)]
    drains = server.api("query", query='coldaisle_agent_actions_total{action="drain",node="node-gpu-88"}',
                        time=f"{at:.0f}")["result"]
    assert drains and float(drains[0]["value"][1]) >= 1  # the straggler's drain, as the agent counted it
