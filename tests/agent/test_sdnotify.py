"""sd_notify against a real datagram socket the test binds, and the agent pinging it only while it ticks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldaisle.agent.sdnotify import SdNotify
from coldaisle.telemetry.clock import SimClock

SCENARIO = Path(__file__).resolve().parents[1] / "health" / "data" / "healthy-node.yaml"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket, as systemd's NOTIFY_SOCKET is."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def _recv_all(sock: socket.socket, for_s: float) -> list[str]:
    """Every message that arrives within `for_s` seconds."""
    out, end = [], time.monotonic() + for_s
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return out


def test_messages_reach_the_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    clock = SimClock()
    sd = SdNotify.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000"}, clock=clock)
    assert sd.enabled and sd.watchdog_s == 20.0
    assert sd.ready("node-1: 8 GPUs")
    assert sock.recv(4096) == b"READY=1\nSTATUS=node-1: 8 GPUs"
    assert sd.tick() and sock.recv(4096) == b"WATCHDOG=1"
    assert not sd.tick()  # rate-limited to a quarter of WatchdogSec
    clock.sleep(5.0)
    assert sd.tick() and sock.recv(4096) == b"WATCHDOG=1"
    assert sd.stopping() and sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket_names_start_with_at() -> None:
    name = f"coldaisle-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        assert SdNotify.from_env({"NOTIFY_SOCKET": "@" + name}).status("ok")
        assert sock.recv(4096) == b"STATUS=ok"
    finally:
        sock.close()


def test_no_socket_no_watchdog_no_error(tmp_path: Path) -> None:
    sd = SdNotify.from_env({})
    assert not sd.enabled and not sd.ready() and not sd.tick()
    other = SdNotify.from_env({"NOTIFY_SOCKET": str(tmp_path / "n"), "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"},
                              pid=2)
    assert other.watchdog_s is None  # the watchdog belongs to another process
    gone = SdNotify.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert not gone.ready() and gone.errors == 1  # never raises into the agent


def test_the_agent_is_ready_then_pings_while_it_ticks(notify_socket: tuple[socket.socket, str],
                                                      tmp_path: Path) -> None:
    sock, path = notify_socket
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}  # WatchdogSec=0.4: a ping per 0.1 s
    proc = subprocess.Popen([sys.executable, "-m", "coldaisle", "agent", "--backend", "sim", "--scenario",
                             str(SCENARIO), "--node", "gpu-node-01", "--interval", "0.1", "--speed", "1",
                             "--listen", "127.0.0.1:0", "--audit", str(tmp_path / "audit.jsonl"),
                             "--priority", "normal"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sock.settimeout(20)
        first = sock.recv(4096).decode()
        assert first.startswith("READY=1\nSTATUS=gpu-node-01: 2 GPUs"), first
        t0 = time.monotonic()
        pings = [m for m in _recv_all(sock, 0.5) if m == "WATCHDOG=1"]
        assert len(pings) >= 3, pings
        os.kill(proc.pid, 19)  # SIGSTOP: a wedged agent (no ticks) ...
        _recv_all(sock, 0.3)  # (drain what was in flight)
        assert _recv_all(sock, 1.0) == []  # ... sends no WATCHDOG=1, so systemd would restart it
        os.kill(proc.pid, 18)  # SIGCONT
        assert "WATCHDOG=1" in _recv_all(sock, 0.5)
        proc.terminate()
        proc.wait(10)
        assert "STOPPING=1" in _recv_all(sock, 0.5)
        assert time.monotonic() - t0 < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "coldaisle-agent.service"


def _unit_for_here(tmp_path: Path, text: str | None = None) -> Path:
    """The shipped unit with ExecStart pointing at this environment's coldaisle (verify checks it exists)."""
    exe = Path(sys.executable).with_name("coldaisle")
    unit = tmp_path / "coldaisle-agent.service"
    unit.write_text((text or UNIT.read_text()).replace("/usr/local/bin/coldaisle", str(exe)))
    return unit


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          check=False)


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    cp = _verify(_unit_for_here(tmp_path))
    assert cp.returncode == 0 and cp.stdout == "" and cp.stderr == "", cp.stdout + cp.stderr
    # verify only warns about a misspelt key or a bad value: this is what the empty output above rules out
    typo = _verify(_unit_for_here(tmp_path, UNIT.read_text().replace("CPUWeight=", "CPUWeigth=")))
    assert "Unknown key 'CPUWeigth'" in typo.stderr


def test_the_unit_says_what_the_agent_needs(tmp_path: Path) -> None:
    settings = {}
    for line in UNIT.read_text().splitlines():
        key, eq, value = line.partition("=")
        if eq and not line.startswith("#"):
            settings[key.strip()] = value.strip()
    assert settings["Type"] == "notify" and settings["WatchdogSec"] == "30s" and settings["Restart"] == "always"
    assert settings["NoNewPrivileges"] == "yes" and settings["ProtectSystem"] == "strict"
    assert int(settings["CPUWeight"]) > 100 and settings["CPUSchedulingPolicy"] == "rr"
    assert int(settings["OOMScoreAdjust"]) < 0
    assert "ProtectKernelLogs" not in settings and "RestrictRealtime" not in settings  # kmsg, SCHED_RR
    cp = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(_unit_for_here(tmp_path))],
                        capture_output=True, text=True, timeout=60, check=False)
    level = float(cp.stdout.rsplit("Overall exposure level for coldaisle-agent.service:", 1)[1].split()[0])
    assert level <= 4.0, cp.stdout  # systemd's own score: "OK" up to 4.9 (a root agent cannot reach "SAFE")
