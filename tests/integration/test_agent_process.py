"""`coldaisle agent` as a real process: real signals, real HTTP on 127.0.0.1, a real Prometheus scraping it.

Each test starts the installed `coldaisle` command in its own session, so that every process it might
start is ours to find (and to kill at teardown), and waits on the agent's own answers (/healthz, the audit
log) rather than on fixed sleeps. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from promserver import free_port, prometheus_server

COLDAISLE = shutil.which("coldaisle") or str(Path(sys.executable).with_name("coldaisle"))
ENV = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}  # one message per line, no ANSI codes
START_TIMEOUT_S = 20.0


def _nvml_answers() -> bool:
    from coldaisle.errors import BackendUnavailable
    from coldaisle.telemetry.nvml import NvmlBackend

    try:
        NvmlBackend().close()
    except BackendUnavailable:
        return False
    return True


@dataclass
class AgentProcess:
    """A running `coldaisle agent` and where it writes."""

    proc: subprocess.Popen[bytes]
    port: int
    audit: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        """Base URL of its HTTP server."""
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        """Everything it has written to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """The audit log's records so far."""
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()]

    def notes(self) -> list[str]:
        """The text of every audit note so far."""
        return [r["text"] for r in self.records() if r["kind"] == "note"]

    def get(self, path: str) -> tuple[int, bytes]:
        """GET path: (status, body)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_for(self, what: str, ok: Callable[[], bool], timeout: float = 15.0) -> None:
        """Poll `ok()` until true; fail with the agent's stderr if it does not come, or the agent exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            if self.proc.poll() is not None:
                pytest.fail(f"the agent exited ({self.proc.returncode}) waiting for {what}:\n{self.stderr()}")
            time.sleep(0.05)
        pytest.fail(f"no {what} after {timeout:g} s:\n{self.stderr()}\naudit: {self.notes()}")

    def wait_healthy(self) -> None:
        """Until /healthz answers 200."""
        def ok() -> bool:
            try:
                return self.get("/healthz")[0] == 200
            except OSError:
                return False
        self.wait_for("/healthz 200", ok, START_TIMEOUT_S)

    def terminate(self, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took). Fails if it takes longer than `timeout`."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the agent ignored SIGTERM for {timeout:g} s:\n{self.stderr()}")
        return rc, time.monotonic() - t0


def _session_members(sid: int) -> list[int]:
    """Pids of live processes in session `sid` (the agent was started as its leader)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """`start(*args)` runs `coldaisle agent --backend sim ... *args`; every agent is killed at teardown."""
    started: list[AgentProcess] = []

    def start(*args: str, wait: bool = True) -> AgentProcess:
        port, n = free_port(), len(started)
        audit, err = tmp_path / f"audit-{n}.jsonl", tmp_path / f"agent-{n}.stderr"
        cmd = [COLDAISLE, "agent", "--backend", "sim", "--listen", f"127.0.0.1:{port}", "--audit", str(audit),
               *args]
        with open(err, "wb") as f:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f,
                                    env=ENV, start_new_session=True)
        agent = AgentProcess(proc, port, audit, err)
        started.append(agent)
        if wait:
            agent.wait_healthy()
        return agent

    yield start
    for agent in started:
        if agent.proc.poll() is None:
            os.killpg(agent.proc.pid, signal.SIGKILL)
            agent.proc.wait(timeout=10)


def _cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COLDAISLE, *args], capture_output=True, text=True, env=ENV, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def _policy(path: Path, rules: list[tuple[str, str]]) -> Path:
    """A policy file with one notify-only device rule per (name, condition)."""
    lines = ["mode: dry-run", "rules:"]
    for name, when in rules:
        lines += [f"  - name: {name}", "    scope: device", f"    when: {when}", "    for: 5 s",
                  "    actions:", "      - {do: notify}"]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- tests ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(_nvml_answers(), reason="a GPU answers through NVML here: the no-GPU error cannot happen")
def test_no_gpu_and_no_sim_is_a_clear_error(tmp_path: Path) -> None:
    res = _cli("agent", "--listen", f"127.0.0.1:{free_port()}", "--audit", str(tmp_path / "audit.jsonl"))
    assert res.returncode == 3, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    hints = [ln for ln in res.stderr.splitlines() if ln.startswith("Hint:")]
    assert len(errors) == 1 and "NVML" in errors[0], res.stderr
    assert len(hints) == 1 and "--backend sim" in hints[0], res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.prometheus
def test_sim_agent_is_scraped_by_prometheus_and_stops_on_sigterm(start_agent: Callable[..., AgentProcess]) -> None:
    agent = start_agent("--scenario", "healthy-training", "--speed", "30")
    status, body = agent.get("/healthz")
    assert status == 200 and json.loads(body)["ok"] is True
    status, body = agent.get("/metrics")
    temps = [ln for ln in body.decode().splitlines() if ln.startswith("coldaisle_gpu_temperature_celsius{")]
    assert status == 200 and len(temps) == 32, temps
    assert "ENFORCING" in agent.stderr(), agent.stderr()  # the simulator enforces unless told --dry-run

    with prometheus_server([f"127.0.0.1:{agent.port}"], scrape_interval="1s") as prom:
        result = prom.wait_for('count(coldaisle_gpu_temperature_celsius{job="coldaisle"})',
                               lambda r: bool(r) and r[0]["value"][1] == "32", timeout=20)
        assert result[0]["value"][1] == "32"
        up = prom.query('up{job="coldaisle"}')
        assert up and up[0]["value"][1] == "1"

    members = _session_members(agent.proc.pid)
    assert members == [agent.proc.pid], f"the agent started other processes: {members}"
    rc, took = agent.terminate(timeout=5.0)
    assert rc == 0, agent.stderr()
    assert took < 5.0
    notes = agent.notes()
    assert notes[0] == "agent started" and notes[-1] == "agent stopped", notes
    assert agent.records()[0]["mode"] == "enforce"
    assert _session_members(agent.proc.pid) == [], "a process of the agent's session survived it"


def test_broken_policy_refuses_to_start(tmp_path: Path) -> None:
    bad = _policy(tmp_path / "bad.yaml", [("hot", "no_such_metric > 80")])
    res = _cli("agent", "--backend", "sim", "--policy", str(bad), "--listen", f"127.0.0.1:{free_port()}",
               "--audit", str(tmp_path / "audit.jsonl"))
    assert res.returncode == 2, res.stderr
    assert f"Error: {bad}:5: rules[0].when: " in res.stderr, res.stderr
    assert "no_such_metric" in res.stderr
    assert not (tmp_path / "audit.jsonl").exists() or "agent started" not in (tmp_path / "audit.jsonl").read_text()


def test_sighup_reloads_the_policy_and_keeps_a_good_one(tmp_path: Path,
                                                        start_agent: Callable[..., AgentProcess]) -> None:
    policy = _policy(tmp_path / "policy.yaml", [("hot", "temperature_c > 95")])
    agent = start_agent("--scenario", "healthy-training", "--speed", "30", "--policy", str(policy))

    _policy(policy, [("hot", "no_such_metric > 95")])
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_for("a failed-reload note", lambda: any("reload failed" in n for n in agent.notes()))
    assert agent.proc.poll() is None
    assert agent.get("/healthz")[0] == 200
    failed = next(r for r in agent.records() if "reload failed" in r.get("text", ""))
    assert "keeping the running policy" in failed["text"] and "no_such_metric" in failed["error"]
    agent.wait_for("the failure on stderr", lambda: "policy reload failed" in agent.stderr())

    _policy(policy, [("hot", "temperature_c > 95"), ("warm", "temperature_c > 90")])
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait_for("a reloaded note", lambda: "policy reloaded" in agent.notes())
    reloaded = next(r for r in agent.records() if r.get("text") == "policy reloaded")
    assert reloaded["rules"] == 2
    assert agent.get("/healthz")[0] == 200
    rc, _ = agent.terminate()
    assert rc == 0, agent.stderr()


def test_reset_by_hand(start_agent: Callable[..., AgentProcess]) -> None:
    agent = start_agent("--scenario", "healthy-training", "--speed", "30")
    res = _cli("agent", "reset", "--url", agent.url)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"reset": "all", "restores": 0}
    agent.wait_for("the reset in the audit log", lambda: "state reset by hand" in agent.notes())
    note = next(r for r in agent.records() if r.get("text") == "state reset by hand")
    assert note["rule"] == "all"

    res = _cli("agent", "reset", "--rule", "nope", "--url", agent.url)
    assert res.returncode != 0
    assert "Error:" in res.stderr and "nope" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert agent.get("/healthz")[0] == 200


def test_dry_run_decides_and_audits_but_acts_on_nothing(start_agent: Callable[..., AgentProcess]) -> None:
    agent = start_agent("--scenario", "runaway-process", "--speed", "60", "--duration", "600", "--dry-run")
    start_line = agent.stderr()
    assert "dry-run" in start_line and "ENFORCING" not in start_line, start_line
    assert agent.records()[0]["mode"] == "dry-run"

    def runaway_stopped_on_paper() -> bool:
        done = {(r["action"], r["status"]) for r in agent.records()
                if r["kind"] == "outcome" and r["rule"] == "memory-runaway"}
        return {("sigterm", "dry_run"), ("sigkill", "dry_run")} <= done

    agent.wait_for("memory-runaway dry-run outcomes", runaway_stopped_on_paper, timeout=25)
    rc, _ = agent.terminate()
    assert rc == 0, agent.stderr()
    outcomes = [r for r in agent.records() if r["kind"] == "outcome"]
    acted = [o for o in outcomes if o["action"] in ("sigterm", "sigkill", "drain", "power_cap")
             and o["status"] == "done"]
    assert acted == [], acted
    assert all(o["status"] == "dry_run" for o in outcomes if o["rule"] == "memory-runaway")
    sigterm = next(o for o in outcomes if o["action"] == "sigterm")
    assert sigterm["detail"].startswith("would have sent SIGTERM to pid")
