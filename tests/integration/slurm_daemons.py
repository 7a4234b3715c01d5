"""Starting and stopping real daemons for the Slurm test clusters (single node, and the fleet): each in its own
session, logs kept for failure messages, nothing left behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

STOP_TIMEOUT_S = 15.0  # per daemon, after SIGTERM, before SIGKILL

#: the slurm.conf lines every test cluster shares: no cgroups, accounting, mail or MPI on a test host
TEST_PLUGINS = """ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MailProg=/bin/true"""


@dataclass
class Daemon:
    """One daemon we started, in its own session (so its process group is ours to signal)."""

    name: str
    proc: subprocess.Popen[bytes]
    logs: list[Path]

    def tail(self, lines: int = 40) -> str:
        """Last lines of each of this daemon's logs, labelled, for failure messages."""
        chunks = []
        for log in self.logs:
            try:
                text = log.read_text(errors="replace").splitlines()[-lines:]
            except OSError as exc:
                text = [f"<unreadable: {exc}>"]
            chunks.append(f"--- {self.name}: {log} (last {lines} lines) ---\n" + "\n".join(text))
        return "\n".join(chunks)


def start_daemon(name: str, argv: list[str], env: dict[str, str], logs_dir: Path, extra_logs: list[Path]) -> Daemon:
    out = logs_dir / f"{name}.stdout"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Daemon(name=name, proc=proc, logs=[out, *extra_logs])


def stop_daemon(daemon: Daemon) -> None:
    """SIGTERM the daemon's process group, wait, then SIGKILL whatever is left."""
    if daemon.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.proc.pid, signal.SIGTERM)
        try:
            daemon.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.proc.pid, signal.SIGKILL)
            daemon.proc.wait(timeout=STOP_TIMEOUT_S)
    # children that stayed in the group (none expected without jobs) go too
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(daemon.proc.pid, signal.SIGKILL)


def processes_of(root: Path, pids: set[int]) -> dict[int, str]:
    """Live processes of this cluster: one of our daemons, anything in their sessions (each daemon leads its
    own), or anything with our directory in its argv or environment (slurmscriptd rewrites its argv)."""
    marker = str(root).encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile
            continue
        state, session = stat[0], int(stat[3])
        if state in {"Z", "X"}:  # dead, waiting only for a parent to reap it
            continue
        if pid in pids or session in pids or marker in cmdline or marker in environ:
            argv = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            found[pid] = f"{pid} (session {session}): {argv}"
    return found


def wait_for_socket(path: Path, daemon: Daemon, deadline: float) -> None:
    while time.monotonic() < deadline:
        if path.is_socket():
            return
        if daemon.proc.poll() is not None:
            break
        time.sleep(0.02)
    pytest.fail(f"slurm test cluster: munged did not create {path}\n{daemon.tail()}", pytrace=False)


_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/.]*)=")


def parse_scontrol_oneliner(line: str) -> dict[str, str]:
    """Split `Key=value Key2=value with spaces Key3=v` into a mapping.

    A key is a word directly followed by `=` at the start or after whitespace; a value runs to the next key,
    so `Reason=coldaisle: test [root@2024-01-01T00:00:00]` keeps its spaces.
    """
    line = line.strip()
    matches = list(_KEY.finditer(line))
    out: dict[str, str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        out[match.group(1)] = line[match.end() : end].strip()
    return out
