"""`coldaisle top` driven as a person would: in a real terminal (tmux), keys sent, the screen read back.

Acceptance: on prometheus-unbound the deadlock rule (collective-hang) is seen going from pending, with its
countdown, to firing. Each test runs its own tmux server on a private socket with no user config, and
`remain-on-exit` so the exit status of `coldaisle top` can be read; the server is killed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

COLDAISLE = shutil.which("coldaisle") or str(Path(sys.executable).with_name("coldaisle"))
TOP = [COLDAISLE, "top", "--backend", "sim", "--scenario", "prometheus-unbound", "--node", "node-gpu-12"]
# The pane's size is the terminal's: COLUMNS/LINES (which pytest's environment may carry) would override it.
PANE_ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
HANG = re.compile(r"^\s*collective-hang\s+job\s+critical\s+10 s\s+(?P<state>.+?)\s*$", re.M)


@dataclass
class Tmux:
    """One tmux server with one pane running a command."""

    socket: Path

    def cmd(self, *args: str) -> str:
        """Run a tmux command against this server; its stdout."""
        tmux = shutil.which("tmux")
        assert tmux is not None
        res = subprocess.run([tmux, "-S", str(self.socket), *args], capture_output=True, text=True, timeout=10,
                             check=False, env=PANE_ENV)
        if res.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {res.stderr}")
        return res.stdout

    def screen(self) -> str:
        """What the pane shows now."""
        return self.cmd("capture-pane", "-p", "-t", "top")

    def dead(self) -> int | None:
        """The command's exit status once it has exited (minus the signal that killed it), else None.

        Under load the tmux server can take many seconds to reap its pane's process: the pane then reads
        dead with no status while the process is a zombie. The kernel keeps the zombie's wait status in
        /proc/PID/stat (field 52), so that is read instead of waiting on tmux."""
        out = self.cmd("display-message", "-p", "-t", "top",
                       "#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}:#{pane_pid}")
        dead, status, sig, pid = out.strip().split(":")  # status and signal are empty while the command runs
        if status or sig:
            return int(status) if status else -int(sig)
        if dead != "1":
            return None
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        if fields[0] != "Z" or len(fields) < 50:
            return None
        wait_status = int(fields[49])  # field 52: exit_code, as waitpid(2) reports it
        return os.waitstatus_to_exitcode(wait_status)

    def watch(self, until: Callable[[str], bool], timeout: float) -> list[str]:
        """Every distinct screen until `until(screen)` holds; fails with the last screen on timeout."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.screen()
            if not seen or s != seen[-1]:
                seen.append(s)
            if until(s):
                return seen
            if self.dead() is not None:
                break
            time.sleep(0.03)
        pytest.fail(f"the screen never got there in {timeout:g} s; last screen:\n{seen[-1] if seen else ''}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Callable[[list[str]], Tmux]]:
    """`start(argv)` runs argv in a 150x50 tmux pane; the server is killed at teardown."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed; run scripts/install-test-deps.sh (Debian package `tmux`)", pytrace=False)
    servers: list[Tmux] = []

    def start(argv: list[str]) -> Tmux:
        conf = tmp_path / "tmux.conf"
        conf.write_text("set -g remain-on-exit on\nset -g default-terminal tmux-256color\n")
        t = Tmux(tmp_path / f"tmux-{len(servers)}.sock")
        servers.append(t)
        t.cmd("-f", str(conf), "new-session", "-d", "-s", "top", "-x", "150", "-y", "50", shlex.join(argv))
        return t

    yield start
    for t in servers:
        with contextlib.suppress(AssertionError):  # already gone
            t.cmd("kill-server")


def test_collective_hang_seen_going_from_pending_to_firing(tmux: Callable[[list[str]], Tmux]) -> None:
    t = tmux([*TOP, "--start", "03:04:05", "--speed", "5"])
    seen = t.watch(lambda s: bool((m := HANG.search(s)) and m["state"].startswith("FIRING")), timeout=30)
    states = [m["state"] for s in seen if (m := HANG.search(s))]
    assert states[0] == "ok", states  # 03:04:05: this node's ranks still compute
    pending = [s for s in states if s.startswith("pending")]
    assert pending, states
    countdown = [int(re.fullmatch(r"pending \(1\), fires in (\d+) s", s)[1]) for s in pending]  # type: ignore[index]
    assert countdown == sorted(countdown, reverse=True) and countdown[0] >= 6 and countdown[-1] <= 4, countdown
    assert states.index(pending[0]) < len(states) - 1 and states[-1] == "FIRING (1)"
    firing = seen[-1]
    assert "coldaisle top node-gpu-12" in firing and "ENFORCING" in firing
    assert re.search(r"collective-hang\s+sigterm\s+node-gpu-12/gpu\d pid \d+ job \S+\s+done\s+sent SIGTERM", firing)
    assert firing.count("omni-reasoning") >= 4  # the processes table: each GPU's rank and its job

    t.cmd("send-keys", "-t", "top", "q")
    deadline = time.monotonic() + 10
    while (status := t.dead()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 0
    assert "collective-hang" not in t.screen()  # the alternate screen is gone; the terminal is as it was


def test_ctrl_c_quits_cleanly(tmux: Callable[[list[str]], Tmux]) -> None:
    t = tmux([*TOP, "--start", "03:02", "--speed", "2"])
    t.watch(lambda s: "sample 2" in s, timeout=20)
    t.cmd("send-keys", "-t", "top", "C-c")
    deadline = time.monotonic() + 10
    while (status := t.dead()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 0
    assert "Traceback" not in t.screen()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    return subprocess.run([COLDAISLE, "top", *args], capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def test_without_a_terminal_it_prints_one_screen() -> None:
    res = _cli("--backend", "sim", "--node", "node-gpu-12", "--start", "03:04:15", "--speed", "1000",
               "--duration", "3")
    assert res.returncode == 0, res.stderr
    assert "2024-05-21 03:04:17 UTC" in res.stdout and "sample 3" in res.stdout
    # The ranks have spun since 03:04:11, so the rule is pending from the first sample (03:04:15): 10 s - 2 s.
    assert HANG.search(res.stdout)["state"] == "pending (1), fires in 8 s"  # type: ignore[index]
    assert res.stdout.count("coldaisle top node-gpu-12") == 1


def test_bad_node_is_one_error_line() -> None:
    res = _cli("--backend", "sim", "--node", "node-gpu-999", "--once")
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "node-gpu-999" in errors[0], res.stderr
    assert "Traceback" not in res.stderr


def _nvml_answers() -> bool:
    from coldaisle.errors import BackendUnavailable
    from coldaisle.telemetry.nvml import NvmlBackend

    try:
        NvmlBackend().close()
    except BackendUnavailable:
        return False
    return True


@pytest.mark.skipif(_nvml_answers(), reason="a GPU answers through NVML here: the no-GPU error cannot happen")
def test_no_gpu_points_at_the_simulator() -> None:
    res = _cli("--once")
    assert res.returncode == 3, res.stderr
    hints = [ln for ln in res.stderr.splitlines() if ln.startswith("Hint:")]
    assert len(hints) == 1 and "coldaisle top --backend sim" in hints[0], res.stderr
