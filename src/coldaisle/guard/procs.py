"""The job's processes as /proc shows them: its session, strays that carry our run marker, their memory.

A job may leave its process group (setsid, double fork), but it keeps the environment it inherited,
so every process whose environ holds `COLDAISLE_RUN_ID=<id>` is ours too. Reads take a `proc` root
so tests can point them elsewhere; a process that exits while being read is simply skipped.
"""

from __future__ import annotations

import os

from coldaisle.telemetry.procfs import ProcessInfo, pids, read_environ, rss_bytes

RUN_ID_VAR = "COLDAISLE_RUN_ID"


def has_marker(pid: int, marker: str, proc: str | os.PathLike[str] = "/proc") -> bool:
    """Whether `pid`'s initial environment holds `marker` (a whole `NAME=value` entry)."""
    env = read_environ(pid, proc)
    name, _, value = marker.partition("=")
    return env is not None and env.get(name) == value


def job_processes(session: int, run_id: str, proc: str | os.PathLike[str] = "/proc",
                  exclude: frozenset[int] = frozenset()) -> list[ProcessInfo]:
    """Every live process of the job: members of its session, and any process carrying its run id."""
    marker = f"{RUN_ID_VAR}={run_id}"
    out = []
    for pid in pids(proc):
        if pid in exclude:
            continue
        info = ProcessInfo.read(pid, proc)
        if info is None or info.state == "Z" or info.kernel_thread:
            continue
        if info.session == session or has_marker(pid, marker, proc):
            out.append(info)
    return sorted(out, key=lambda p: p.pid)


def total_rss_bytes(processes: list[ProcessInfo], proc: str | os.PathLike[str] = "/proc") -> int:
    """Host memory the whole job holds: the sum of its processes' RSS (shared pages count once per process)."""
    return sum(rss_bytes(p.pid, proc) for p in processes)
