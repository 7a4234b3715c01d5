"""The supervisor against real processes and signals: hangs, runaways, strays, signals, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from coldaisle.errors import ColdaisleError
from coldaisle.guard.procs import RUN_ID_VAR, has_marker
from coldaisle.guard.supervisor import RunResult, Supervisor
from coldaisle.guard.watch import ExitCode, VerdictKind
from coldaisle.telemetry.clock import RealClock

PY = sys.executable


def script(body: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(body)]


def supervise(cmd: list[str], tmp_path: Path, **kw: object) -> tuple[Supervisor, RunResult]:
    opts: dict = {"hang_timeout_s": 2.0, "grace_s": 1.0, "bundle_dir": tmp_path / "bundle", "clock": RealClock(),
                  "interval_s": 0.2, "say": lambda msg: None}
    opts.update(kw)
    sup = Supervisor(cmd, **opts)
    return sup, sup.run()


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll `condition` every 20 ms for up to `timeout_s` (a busy host is slow, never wrong)."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def survivors(run_id: str) -> list[int]:
    """Processes anywhere on the host still carrying the run's marker (the job must leave none)."""
    marker = f"{RUN_ID_VAR}={run_id}"
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and has_marker(int(entry), marker):
            stat = Path(f"/proc/{entry}/stat").read_text(errors="replace")
            if stat.rpartition(")")[2].split()[0] != "Z":
                out.append(int(entry))
    return out


HANGS = """
    import time, coldaisle
    for i in range(3):
        coldaisle.progress(step=i)
        time.sleep(0.1)
    print("stuck now", flush=True)
    def wait_for_peer():
        time.sleep(60)
    wait_for_peer()
"""


def test_hang_is_caught_with_stacks_bundle_and_exit_code(tmp_path: Path) -> None:
    start = time.monotonic()
    sup, result = supervise(script(HANGS), tmp_path)
    assert result.exit_code == ExitCode.HANG
    assert time.monotonic() - start < 2.0 + 0.3 + 2.0 + 1.5  # timeout + startup + detection slack + grace
    bundle = result.bundle
    assert bundle is not None and (bundle / "summary.md").is_file()
    verdict = json.loads((bundle / "verdict.json").read_text())
    assert verdict["verdict"] == "hang" and verdict["exit_code"] == 70
    stacks = list((bundle / "stacks").glob("*.txt"))
    assert stacks
    text = stacks[0].read_text()
    assert "wait_for_peer" in text, text  # py-spy is a test dependency: a missing or failing dump is a failure
    assert "stuck now" in (bundle / "output.log").read_text()
    assert json.loads((bundle / "heartbeats.json").read_text())["ranks"][0]["step"] == 2
    assert survivors(sup.run_id) == []


def test_healthy_job_exits_zero_without_bundle(tmp_path: Path) -> None:
    body = "import coldaisle\nfor i in range(5): coldaisle.progress()\nprint('done')"
    sup, result = supervise(script(body), tmp_path)
    assert (result.exit_code, result.verdict, result.bundle) == (0, None, None)
    assert not (tmp_path / "bundle").exists()
    assert sup.tee.last_lines() == ["[stdout] done"]


def test_job_failing_by_itself_keeps_its_exit_code(tmp_path: Path) -> None:
    _, result = supervise(script("import sys; print('boom', file=sys.stderr); sys.exit(3)"), tmp_path)
    assert result.exit_code == 3
    assert result.verdict is not None and result.verdict.kind == VerdictKind.JOB_FAILED
    assert "[stderr] boom" in (tmp_path / "bundle" / "output.log").read_text()
    assert not list((tmp_path / "bundle" / "stacks").iterdir())  # nothing was stopped: no false alarm


def test_job_killed_by_a_foreign_signal_is_job_failed(tmp_path: Path) -> None:
    _, result = supervise(script("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"), tmp_path)
    assert result.exit_code == ExitCode.JOB_FAILED
    assert "SIGSEGV" in result.job_status


def test_missing_executable_is_127(tmp_path: Path) -> None:
    with pytest.raises(ColdaisleError) as err:
        supervise(["/nonexistent/train-xyz"], tmp_path)
    assert err.value.exit_code == 127


def test_job_ignoring_sigterm_is_killed_after_grace(tmp_path: Path) -> None:
    body = """
        import signal, time, coldaisle
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        coldaisle.progress()
        time.sleep(60)
    """
    start = time.monotonic()
    sup, result = supervise(script(body), tmp_path, hang_timeout_s=1.0)
    assert result.exit_code == ExitCode.HANG
    assert result.job_status == "killed by SIGKILL"
    assert any("1 needed SIGKILL" in a for a in result.actions)
    assert time.monotonic() - start < 10
    assert survivors(sup.run_id) == []


DAEMONISES = """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.closerange(0, 3)
            time.sleep(60)
        os._exit(0)
    time.sleep(0.5)
    print("parent leaves", flush=True)
"""


def test_daemonised_child_is_found_and_killed(tmp_path: Path) -> None:
    sup, result = supervise(script(DAEMONISES), tmp_path)
    assert result.exit_code == 0
    assert any("outlived the job" in a for a in result.actions)
    assert survivors(sup.run_id) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_signal_to_the_supervisor_reaches_every_process(tmp_path: Path, sig: signal.Signals) -> None:
    job = """
        import os, time, subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("ready", flush=True)
        time.sleep(60)
    """
    runner = f"""
        import sys
        from pathlib import Path
        from coldaisle.guard.supervisor import Supervisor
        from coldaisle.telemetry.clock import RealClock
        sup = Supervisor({script(job)!r}, hang_timeout_s=30, grace_s=1, bundle_dir=Path({str(tmp_path / "b")!r}),
                         clock=RealClock(), interval_s=0.1)
        print("RUNID", sup.run_id, flush=True)
        sys.exit(sup.run().exit_code)
    """
    proc = subprocess.Popen(script(runner), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]
    assert proc.stdout.readline().strip() == "ready"
    assert wait_for(lambda: len(survivors(run_id)) == 2, 20), survivors(run_id)  # the job and its child
    proc.send_signal(sig)
    assert proc.wait(60) == 128 + sig
    assert survivors(run_id) == []


GROWS = """
    import signal, sys, time
    from pathlib import Path
    def checkpoint(signum, frame):
        Path(sys.argv[1]).write_text("saved")
        sys.exit(0)
    signal.signal(signal.SIGTERM, checkpoint)
    chunks = []
    while True:
        chunks.append(b"x" * (8 << 20))  # 8 MiB every 0.1 s, touched
        time.sleep(0.1)
"""


def test_runaway_memory_is_stopped_before_the_limit_and_can_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    limit = 400 * 2**20
    sup, result = supervise([*script(GROWS), str(ckpt)], tmp_path, memory_limit_bytes=limit, hang_timeout_s=60)
    assert result.exit_code == ExitCode.RUNAWAY_MEMORY
    assert ckpt.read_text() == "saved"
    evidence = result.verdict.evidence if result.verdict else {}
    assert 0 < evidence["used_bytes"] < limit
    assert evidence["growth_bytes_per_s"] > 10 * 2**20
    assert survivors(sup.run_id) == []


SLOW_WRITE = """
    import os, time, coldaisle
    for i in range(3):
        coldaisle.progress(step=i)
        time.sleep(0.1)
    r, w = os.pipe()  # a checkpoint "disk" that stops accepting data: write() blocks, as on a stuck NFS
    os.set_blocking(w, True)
    def save_checkpoint():
        while True:
            os.write(w, b"x" * 65536)
    save_checkpoint()
"""


def test_a_rank_blocked_writing_is_an_io_stall_not_a_hang(tmp_path: Path) -> None:
    said: list[str] = []
    sup, res = supervise(script(SLOW_WRITE), tmp_path, io_timeout_s=4.0, say=said.append)
    assert res.exit_code == ExitCode.IO_STALL and res.verdict is not None and res.verdict.kind == VerdictKind.IO_STALL
    assert any("not a collective hang" in s for s in said), said
    assert "in I/O" in res.verdict.reason and res.verdict.evidence["io_ranks"]
    assert survivors(sup.run_id) == []
