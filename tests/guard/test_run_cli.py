"""`coldaisle run` end to end: its exit codes reach the shell and bad input ends in one `Error:` line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def coldaisle_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coldaisle.cli", "run", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_missing_executable_is_127_with_one_error_line() -> None:
    got = coldaisle_run("--", "no-such-program-xyz", "--flag")
    assert got.returncode == 127
    assert got.stderr.startswith("Error: command not found: no-such-program-xyz")


def test_job_exit_code_and_output_pass_through(tmp_path: Path) -> None:
    got = coldaisle_run("--bundle", str(tmp_path / "b"), "--", sys.executable, "-c",
                        "import sys; print('out'); sys.exit(4)")
    assert (got.returncode, got.stdout) == (4, "out\n")


def test_hang_exits_70(tmp_path: Path) -> None:
    job = "import coldaisle, time; coldaisle.progress(); time.sleep(30)"
    got = coldaisle_run("--hang-timeout", "1", "--grace", "1", "--bundle", str(tmp_path / "b"), "--",
                        sys.executable, "-c", job)
    assert got.returncode == 70
    assert (tmp_path / "b" / "summary.md").is_file()


def test_bad_memory_limit_is_a_usage_error() -> None:
    got = coldaisle_run("--memory-limit", "lots", "--", "true")
    assert got.returncode == 2 and "Error: --memory-limit" in got.stderr


def test_preflight_failure_refuses_to_start_the_job_unless_overridden(tmp_path: Path) -> None:
    import os

    marker = tmp_path / "started"
    job = ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    env = {**os.environ, "NCCL_SOCKET_IFNAME": "no-such-if0"}  # selects no interface here: NCCL cannot start
    got = subprocess.run([sys.executable, "-m", "coldaisle", "run", *job], capture_output=True, text=True,
                         timeout=60, check=False, env=env)
    assert got.returncode == 2 and "preflight failed: the job was not started" in got.stderr
    assert "NCCL_SOCKET_IFNAME" in got.stderr and not marker.exists()
    got = subprocess.run([sys.executable, "-m", "coldaisle", "run", "--no-preflight", *job], capture_output=True,
                         text=True, timeout=60, check=False, env=env)
    assert got.returncode == 0 and marker.exists()


def test_a_job_whose_plan_does_not_fit_is_refused_with_74(tmp_path: Path) -> None:
    """The incident's deployment (1T dense fp16, 32 pipeline stages, a 100k-token request) never starts."""
    marker = tmp_path / "started"
    job = tmp_path / "job.yaml"
    job.write_text("model: megatron-1t\ngpu: h100-pcie-80gb\ngpus: 512\npp: 32\ncontext: 100000\ndtype: fp16\n")
    got = coldaisle_run("--plan", str(job), "--no-preflight", "--", sys.executable, "-c",
                        f"open({str(marker)!r}, 'w').close()")
    assert got.returncode == 74 and "does not fit" in got.stderr and not marker.exists()
    job.write_text(job.read_text().replace("pp: 32", "pp: 128"))
    got = coldaisle_run("--plan", str(job), "--no-preflight", "--", sys.executable, "-c",
                        f"open({str(marker)!r}, 'w').close()")
    assert got.returncode == 0 and marker.exists() and "plan fits" in got.stderr
