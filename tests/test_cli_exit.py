"""Exit codes reach the shell: `raise typer.Exit(n)` inside a command is not swallowed by main()."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCENARIO = """\
name: too-strict
start: 2024-01-01T00:00:00Z
duration: 2 min
topology: {gpus_per_node: 1}
expect:
  - {name: impossible, max_temperature: 10 C}
"""


def test_a_failed_expectation_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "too-strict.yaml"
    path.write_text(SCENARIO)
    r = subprocess.run([sys.executable, "-m", "coldaisle.cli", "sim", "test", "default", str(path)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL" in r.stdout and "impossible" in r.stdout


def test_success_exits_0() -> None:
    r = subprocess.run([sys.executable, "-m", "coldaisle.cli", "version"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0 and r.stdout.strip()


def test_a_usage_error_is_one_message_and_exit_2_not_a_traceback() -> None:
    r = subprocess.run([sys.executable, "-m", "coldaisle.cli", "run", "--hang-timeout", "soon", "--", "true"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2, r.stderr
    assert "Invalid value" in r.stderr and "Traceback" not in r.stderr


def test_an_unknown_backend_is_the_same_usage_error_in_every_command(tmp_path: Path) -> None:
    """Drift caught: agent, run and top exited 2 on `--backend bogus`, preflight 3. One parser now: exit 2."""
    commands = {
        "agent": ["agent", "--backend", "bogus", "--audit", str(tmp_path / "a.jsonl"), "--priority", "normal"],
        "run": ["run", "--no-preflight", "--backend", "bogus", "--", "true"],
        "top": ["top", "--backend", "bogus", "--once"],
        "preflight": ["preflight", "--backend", "bogus"],
    }
    for name, argv in commands.items():
        r = subprocess.run([sys.executable, "-m", "coldaisle.cli", *argv], capture_output=True, text=True,
                           timeout=120, check=False)
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        assert "unknown backend 'bogus'" in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)
