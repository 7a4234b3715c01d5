"""Starting the job: its environment, its own session, its output tee'd, and our signals passed on to it.

The job gets a heartbeat directory (COLDAISLE_HEARTBEAT), a run id (COLDAISLE_RUN_ID, which survives setsid
and double forks, so strays are found in /proc) and, unless the user chose otherwise, PyTorch's NCCL Flight
Recorder settings. No shell: the command is an argv; a missing or non-executable program is a clear error
(127, 126) before anything starts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from coldaisle.errors import ColdaisleError
from coldaisle.guard import flight
from coldaisle.guard.heartbeat import ENV_VAR
from coldaisle.guard.output import OutputTee
from coldaisle.guard.procs import RUN_ID_VAR
from coldaisle.guard.watch import ExitCode
from coldaisle.telemetry.clock import Clock

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# PyTorch Flight Recorder (docs: torch_nccl_environment_variables): keep a ring of collectives, dump on timeout.
FLIGHT_RECORDER = {"TORCH_NCCL_TRACE_BUFFER_SIZE": "2000", "TORCH_NCCL_DUMP_ON_TIMEOUT": "1"}
FLIGHT_RECORDER_FILE = "TORCH_NCCL_DEBUG_INFO_TEMP_FILE"


def child_env(base: Mapping[str, str], work: Path, run_id: str) -> dict[str, str]:
    """The job's environment: `base` plus the heartbeat, run id and Flight Recorder defaults under `work`."""
    env = dict(base)
    (work / "heartbeat").mkdir()
    (work / "flight").mkdir()
    env[ENV_VAR] = str(work / "heartbeat")
    env[RUN_ID_VAR] = run_id
    for name, value in FLIGHT_RECORDER.items():
        env.setdefault(name, value)
    env.setdefault(FLIGHT_RECORDER_FILE, str(work / "flight" / "nccl_trace_rank_"))
    env[flight.DIR_VAR] = str(work / "flight")  # ranks answer dump requests here (guard/flight.py)
    return env


def start(cmd: Sequence[str], env: Mapping[str, str], tee: OutputTee,
          sinks: tuple[BinaryIO, BinaryIO]) -> subprocess.Popen[bytes]:
    """Popen in a new session (no shell), pipes tee'd to `sinks`; a command that cannot start is a clear error."""
    check_executable(cmd[0], env.get("PATH", os.defpath))
    try:
        proc = subprocess.Popen(cmd, env=dict(env), start_new_session=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as exc:
        code = ExitCode.NOT_FOUND if isinstance(exc, FileNotFoundError) else ExitCode.NOT_EXECUTABLE
        raise ColdaisleError(f"cannot start {cmd[0]}: {exc.strerror or exc}", exit_code=int(code)) from None
    assert proc.stdout is not None and proc.stderr is not None
    tee.follow("stdout", proc.stdout, sinks[0])
    tee.follow("stderr", proc.stderr, sinks[1])
    return proc


def check_executable(program: str, path: str) -> None:
    """Fail before starting anything when the command cannot run: 127 not found, 126 not executable."""
    found = program if os.sep in program else shutil.which(program, path=path)
    if found is None or not os.path.exists(found):
        raise ColdaisleError(f"command not found: {program}", exit_code=int(ExitCode.NOT_FOUND),
                             hint="check the spelling, or give the full path after `--`")
    if os.path.isdir(found) or not os.access(found, os.X_OK):
        raise ColdaisleError(f"not executable: {found}", exit_code=int(ExitCode.NOT_EXECUTABLE),
                             hint=f"chmod +x {found}, or run it through its interpreter")


class Forwarding:
    """Ctrl-C, SIGTERM (Slurm's scancel) and SIGHUP passed on to the job's process group while it runs.

    The handlers are in place before the job starts, so a signal that arrives while it is being started is
    passed on as soon as it exists (never lost, never killing the supervisor). The first one forwarded starts
    the grace: once it has run out, the supervisor stops waiting."""

    def __init__(self, clock: Clock, grace_s: float) -> None:
        self.clock, self.grace_s = clock, grace_s
        self.signal: signal.Signals | None = None
        self.deadline = 0.0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def expired(self) -> bool:
        """A signal was forwarded and its grace is over."""
        return self.signal is not None and self.clock.monotonic() >= self.deadline

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        """The job now exists: signals go to its group, including one that arrived while it was started."""
        self._proc = proc
        if self.signal is not None:
            self._send(self.signal)

    def _send(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def _on_signal(self, signum: int, _frame: object) -> None:
        sig = signal.Signals(signum)
        if self.signal is None:
            self.deadline = self.clock.monotonic() + self.grace_s
        self.signal = sig
        self._send(sig)

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Install the handlers (main thread only: Python allows no other) for the duration of the run."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in FORWARDED}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
