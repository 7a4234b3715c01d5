"""deploy/grafana/coldaisle.json: a well-formed dashboard over our catalog, and every query returns data.

Acceptance: every `expr` in the dashboard (panels and template variables) is run against a real Prometheus
(the Debian `prometheus` binary, as in tests/agent) scraping real `coldaisle agent --backend sim` processes
on prometheus-unbound, one per node, each target labelled with its rack as a scrape config would; and an
in-process exporter fed by the real HostProbe of this machine, which is what a real node's agent adds
(host PSI, swap, D state; the simulated agent has no host to read). Grafana's own variables are replaced
the way Grafana would expand them: `$node`/`$rack` -> their "All" regex, `$__rate_interval` -> a window.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import promserver as _helpers
from coldaisle.telemetry.metrics_catalog import names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "coldaisle.json"
COLDAISLE = shutil.which("coldaisle") or str(Path(sys.executable).with_name("coldaisle"))
NODES = ("node-gpu-12", "node-gpu-88")  # racks 1 and 6 of prometheus-unbound; node-gpu-88 has the PCIe fault
DS = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_VARS = {"$__rate_interval": "20s", "$__interval": "5s", "$__range": "5m", "${node}": ".*", "$node": ".*",
                "${rack}": ".*", "$rack": ".*"}



def dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    return json.loads(DASHBOARD.read_text())


def panel_targets(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel."""
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", ())]


def variable_queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(variable name, query) for every query-type template variable."""
    out = []
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append((v["name"], q["query"] if isinstance(q, dict) else q))
    return out


def expand(expr: str) -> str:
    """Grafana's variables as Grafana expands them for "All"."""
    for name, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unexpanded variable in {expr!r}"
    return expr


# -- the JSON itself ---------------------------------------------------------------------------------------------
def test_panels_are_laid_out_and_use_the_datasource_variable() -> None:
    dash = dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["datasource"] == DS, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(t["datasource"] == DS for t in p["targets"])
        assert p.get("description"), f"{p['title']}: say what the panel shows"
    kinds = {v["name"]: v["type"] for v in dash["templating"]["list"]}
    assert kinds == {"datasource": "datasource", "rack": "query", "node": "query"}


def test_every_metric_named_is_in_the_agents_catalog() -> None:
    dash = dashboard()
    exprs = [e for _, e in panel_targets(dash)] + [q for _, q in variable_queries(dash)]
    used = {m for e in exprs for m in re.findall(r"\b(coldaisle_[a-z_]+)\b", e)}
    assert used and not used - names(), f"not exported by the agent: {sorted(used - names())}"
    wanted = {"coldaisle_gpu_temperature_celsius", "coldaisle_gpu_power_watts", "coldaisle_agent_rules_pending",
              "coldaisle_agent_rules_firing", "coldaisle_agent_actions_total",
              "coldaisle_host_pressure_memory_full_ratio"}
    assert wanted <= used  # heat map, power, rules pending/firing, actions taken, host PSI


def test_the_heat_map_and_power_per_rack_are_there() -> None:
    by_title = {p["title"]: p for p in dashboard()["panels"]}
    heat = by_title["Fleet heat map: hottest GPU per node"]
    assert heat["type"] == "status-history" and "max by (node)" in heat["targets"][0]["expr"]
    assert by_title["GPU temperatures across the fleet"]["type"] == "heatmap"
    assert "sum by (rack)" in by_title["GPU power per rack"]["targets"][0]["expr"]


# -- against a real Prometheus -------------------------------------------------------------------------------------
def _rack_of(node: str) -> str:
    from coldaisle.sim.run import load_plan

    lay = load_plan("prometheus-unbound").layout
    return f"r{int(lay.node_rack[lay.node_index[node]]) + 1:02d}"


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    def alive() -> None:
        if proc.poll() is not None:
            pytest.fail(f"the agent exited ({proc.returncode}):\n{log.read_text(errors='replace')}")

    _helpers.wait_ok(f"http://127.0.0.1:{port}/healthz", 30.0, alive,
                     lambda: f"the agent on port {port} never became healthy:\n{log.read_text(errors='replace')}")


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[dict[str, int]]:
    """One `coldaisle agent --backend sim` per node of NODES (60x real time); node -> port."""
    procs: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    env = {**os.environ, "NO_COLOR": "1"}
    try:
        for node in NODES:
            port = _helpers.free_port()
            log = tmp_path / f"{node}.log"
            with open(log, "wb") as f:
                procs.append(subprocess.Popen(
                    [COLDAISLE, "agent", "--backend", "sim", "--scenario", "prometheus-unbound", "--node", node,
                     "--speed", "60", "--listen", f"127.0.0.1:{port}", "--audit", str(tmp_path / f"{node}.jsonl"),
                     "--priority", "normal"], stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True))
            ports[node] = port
        for (node, port), proc in zip(ports.items(), procs, strict=True):
            _wait_healthy(port, proc, tmp_path / f"{node}.log")
        yield ports
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def host_exporter() -> Iterator[int]:
    """What a real node's agent adds: host PSI, swap and D state from this machine's /proc (and one GPU frame)."""
    from coldaisle.agent.exporter import AgentStats, FrameCollector
    from coldaisle.agent.host import HostProbe
    from coldaisle.agent.server import AgentServer
    from coldaisle.sim.backend import SimBackend
    from coldaisle.sim.run import load_plan
    from coldaisle.sim.twin import Twin

    twin = Twin(load_plan("healthy-training"))
    twin.clock.sleep(600)
    collector = FrameCollector(socket.gethostname())
    with HostProbe() as probe:
        probe.sample()  # rates (swap-in, interrupts) need a previous reading, as on a running agent
        time.sleep(0.2)
        collector.update(SimBackend(twin, "train-01").sample(), host=probe.sample(), agent_state=AgentStats(1))
    with AgentServer(collector.registry, lambda: (True, {}), port=0) as server:
        yield server.port


@contextmanager
def _prometheus(targets: list[tuple[int, str]]) -> Iterator[Any]:
    """A real Prometheus scraping each (port, rack) every second, the rack as a target label."""
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "coldaisle", "scrape_interval": "1s", "scrape_timeout": "1s",
                                  "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"rack": rack}}
                                                     for port, rack in targets]}]}
    tmp = Path(tempfile.mkdtemp(prefix="coldaisle-grafana-"))
    try:
        (tmp / "prometheus.yml").write_text(json.dumps(config))
        with _helpers.running(tmp / "prometheus.yml", tmp / "tsdb", retention="1h", ready_timeout=20.0) as server:
            yield server
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _label_values(prom: Any, query: str) -> list[str]:
    """Grafana's `label_values(selector, label)`, as its Prometheus datasource asks the series API."""
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    assert m, f"unsupported variable query {query!r}"
    return list(prom.api(f"label/{m[2]}/values", **{"match[]": expand(m[1])}))


@pytest.mark.prometheus
def test_every_dashboard_query_returns_data(agents: dict[str, int], host_exporter: int) -> None:
    dash = dashboard()
    targets = [(port, _rack_of(node)) for node, port in agents.items()] + [(host_exporter, "lab")]
    with _prometheus(targets) as prom:
        prom.wait_for('count(up{job="coldaisle"} == 1)', lambda r: bool(r) and r[0]["value"][1] == "3", timeout=20)
        # node-gpu-88's PCIe fault at 03:04 (4 simulated minutes = 4 s at 60x) makes its agent act.
        prom.wait_for('coldaisle_agent_actions_total{node="node-gpu-88", action="drain"}', bool, timeout=30)
        for name, query in variable_queries(dash):
            values = _label_values(prom, query)
            want = {"rack": {_rack_of(n) for n in NODES}, "node": set(NODES)}[name]
            assert want <= set(values), f"variable {name}: {values}"
        empty = []
        for title, expr in panel_targets(dash):
            q = expand(expr)
            deadline = time.monotonic() + 15
            while not (result := prom.query(q)) and time.monotonic() < deadline:
                time.sleep(0.5)
            if not result:
                empty.append(f"{title}: {q}")
        assert not empty, "queries that returned no data:\n" + "\n".join(empty)

        by_rack = {s["metric"]["rack"]: float(s["value"][1]) for s in prom.query(
            expand(next(e for t, e in panel_targets(dash) if t == "GPU power per rack")))}
        per_node = {s["metric"]["node"]: float(s["value"][1]) for s in prom.query(
            'sum by (node) (coldaisle_gpu_power_watts)')}
        assert by_rack[_rack_of("node-gpu-88")] == pytest.approx(per_node["node-gpu-88"])
        actions = prom.query(expand(next(e for t, e in panel_targets(dash) if t == "Actions since each agent started")))
        assert {(a["metric"]["node"], a["metric"]["action"]) for a in actions} >= {("node-gpu-88", "drain")}
        psi = prom.query('coldaisle_host_pressure_cpu_some_ratio')
        assert [p["metric"]["node"] for p in psi] == [socket.gethostname()]
