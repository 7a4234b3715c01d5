"""Stop a set of processes for good: pin each with a pidfd, SIGTERM, wait out the grace, SIGKILL the rest.

Unlike `ProcessSignaller.terminate`, which stops one process or one process group, this takes the
processes one by one: a job's strays live in other groups and sessions, and its leader may be gone
while the rest of the group lives on. A pidfd names one process for ever, so a recycled PID is never hit.
"""

from __future__ import annotations

import os
import select
import signal
from contextlib import suppress
from dataclasses import dataclass

from coldaisle.telemetry.clock import Clock
from coldaisle.telemetry.procfs import ProcessInfo

_KILL_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class ReapResult:
    """Who got which signal, for the bundle and the user: pids that ended on SIGTERM, needed SIGKILL, or stayed."""

    terminated: tuple[int, ...]
    killed: tuple[int, ...]
    unkillable: tuple[int, ...]


def pin(processes: list[ProcessInfo]) -> dict[int, int]:
    """pid -> pidfd for each process that is still the one we saw (starttime read again after opening)."""
    fds: dict[int, int] = {}
    for p in processes:
        try:
            fd = os.pidfd_open(p.pid)
        except OSError:
            continue
        now = ProcessInfo.read(p.pid)
        if now is None or now.starttime != p.starttime or now.state == "Z":
            os.close(fd)
            continue
        fds[p.pid] = fd
    return fds


def send(fds: dict[int, int], sig: signal.Signals) -> None:
    """Signal each pinned process; one that exited meanwhile is not an error."""
    for fd in fds.values():
        with suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, sig)


def wait_exit(fds: dict[int, int], timeout_s: float, clock: Clock) -> dict[int, int]:
    """Poll the pidfds until each process has exited or `timeout_s` passed; returns those still alive."""
    alive = dict(fds)
    end = clock.monotonic() + timeout_s
    while alive:
        left = end - clock.monotonic()
        if left <= 0:
            break
        poller = select.poll()
        for fd in alive.values():
            poller.register(fd, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(int(min(left, 0.1) * 1000))}
        alive = {pid: fd for pid, fd in alive.items() if fd not in ready and not _zombie(pid)}
    return alive


def reap(processes: list[ProcessInfo], grace_s: float, clock: Clock, first: signal.Signals = signal.SIGTERM
         ) -> ReapResult:
    """SIGTERM (or `first`) every process, SIGKILL whatever outlives `grace_s`; never raises for a gone pid."""
    fds = pin(processes)
    try:
        send(fds, first)
        alive = wait_exit(fds, grace_s, clock) if first != signal.SIGKILL else fds
        send(alive, signal.SIGKILL)
        stuck = wait_exit(alive, _KILL_WAIT_S, clock)
    finally:
        for fd in fds.values():
            os.close(fd)
    killed = tuple(sorted(set(alive) - set(stuck)))
    return ReapResult(tuple(sorted(set(fds) - set(alive))), killed, tuple(sorted(stuck)))


def _zombie(pid: int) -> bool:
    """A zombie has exited: its pidfd may not report it when nobody reaps it (an orphan in a container)."""
    info = ProcessInfo.read(pid)
    return info is None or info.state == "Z"
