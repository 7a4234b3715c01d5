"""Signal a process, or its whole process group, through pidfds, so a recycled PID is never hit.

Each process is judged from its /proc entry (starttime, never-kill list, D state), then pinned:
a pidfd is opened and the starttime read again from the kernel's own /proc. A pidfd names one
process for ever, so once the starttime matches after opening it, the signal cannot reach a
newcomer that inherited the PID. The injected `proc` root is for judging (tests point it at a
captured tree); pinning always reads "/proc", the namespace `pidfd_open` works in.
"""

from __future__ import annotations

import logging
import os
import select
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status, Target
from coldaisle.actions.safety import NeverKill, refusals
from coldaisle.telemetry.clock import Clock, RealClock
from coldaisle.telemetry.procfs import ProcessInfo, group_members

log = logging.getLogger(__name__)

ESCALATE_DRAIN = "escalate=drain"  # in an Outcome's detail: the runner drains the target's node
_SIGNALS = {ActionKind.SIGTERM: signal.SIGTERM, ActionKind.SIGKILL: signal.SIGKILL}
_KERNEL_PROC = "/proc"


class _Stop(Exception):
    """A check ended the action early with this status and detail."""

    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class ProcessSignaller:
    """The real SIGTERM/SIGKILL executor: one process, or its process group, each through its own pidfd."""

    kind = ActionKind.SIGTERM  # also executes SIGKILL decisions: map both kinds to one instance

    def __init__(self, never_kill: NeverKill | None = None, *, proc: str | os.PathLike[str] = "/proc",
                 group: bool | None = None, clock: Clock | None = None, d_state_confirm_s: float = 0.5,
                 kill_wait_s: float = 5.0) -> None:
        self.proc = proc
        self.guard = never_kill or NeverKill(proc=proc)
        self.group = group  # None: each Decision's params["group"] decides (default: the process alone)
        self.clock = clock or RealClock()
        self.d_state_confirm_s = d_state_confirm_s  # a D state must persist this long (IO waits pass)
        self.kill_wait_s = kill_wait_s

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Signal the Decision's process (or group); refusals and failures are Outcomes, never raised."""
        try:
            sig = _SIGNALS.get(decision.action)
            if sig is None:
                raise _Stop(Status.FAILED, f"cannot signal for a {decision.action} action")
            group = self.group if self.group is not None else bool(decision.params.get("group", False))
            status, detail = self._signal(decision.target, sig, group, dry_run)
        except _Stop as stop:
            status, detail = stop.status, stop.detail
        except Exception as exc:
            log.exception("signal %s failed", decision.target.label())
            status, detail = Status.FAILED, f"{type(exc).__name__}: {exc}"
        return Outcome(decision, status, detail, self.clock.time())

    def _signal(self, target: Target, sig: signal.Signals, group: bool, dry_run: bool) -> tuple[Status, str]:
        info = self._identify(target)
        members, spared = self._members(info, group)
        what = _describe(info, members, group, target.node)
        note = _spared(spared)
        if dry_run:
            return Status.DRY_RUN, f"would have sent {sig.name} to {what}{note}"
        with _pinned(members) as fds:
            missed = [p.pid for p in members if p.pid not in fds] + _send(fds, sig)
        if info.pid in missed:
            return Status.DONE, f"pid {info.pid} exited before the signal; nothing sent{note}"
        gone = f"; already gone: {_pids(missed)}" if missed else ""
        return Status.DONE, f"sent {sig.name} to {what}{gone}{note}"

    def _identify(self, target: Target) -> ProcessInfo:
        """The target's process, after the recycled-PID, never-kill and D-state checks."""
        if target.pid is None:
            raise _Stop(Status.FAILED, f"{target.label()}: the target names no pid")
        info = ProcessInfo.read(target.pid, self.proc)
        if info is None or info.state == "Z":
            raise _Stop(Status.DONE, f"pid {target.pid} has already exited; nothing to signal")
        if target.starttime is not None and info.starttime != target.starttime:
            raise _Stop(Status.REFUSED, f"pid was recycled: pid {info.pid} is now {info.comm}, started at tick "
                                        f"{info.starttime}, not {target.starttime}; left alone")
        reason = self.guard.check(info)
        if reason is not None:
            raise _Stop(Status.REFUSED, reason)
        self._confirm_d_state(info, target.node)
        return info

    def _confirm_d_state(self, info: ProcessInfo, node: str) -> None:
        """A process still in D state after `d_state_confirm_s` will not die of a signal: drain instead."""
        if info.state != "D":
            return
        end = self.clock.monotonic() + self.d_state_confirm_s
        while self.clock.monotonic() < end:
            self.clock.sleep(min(0.05, self.d_state_confirm_s))
            now = ProcessInfo.read(info.pid, self.proc)
            if now is None or now.starttime != info.starttime or now.state != "D":
                return
        raise _Stop(Status.FAILED, unkillable(info, node))

    def _members(self, info: ProcessInfo, group: bool) -> tuple[list[ProcessInfo], dict[int, str]]:
        """The processes to signal (the target first) and the group members the never-kill list spares."""
        if not group:
            return [info], {}
        if info.pgid == os.getpgrp():
            raise _Stop(Status.REFUSED, f"process group {info.pgid} is the agent's own")
        others = [p for p in group_members(info.pgid, self.proc) if p.pid != info.pid]
        spared = refusals(others, self.guard)
        return [info, *(p for p in others if p.pid not in spared)], spared

    def terminate(self, target: Target, grace_s: float, clock: Clock | None = None, *,
                  group: bool = False) -> Outcome:
        """SIGTERM, wait on the pidfds up to `grace_s`, then SIGKILL what is left (`coldaisle run`'s stop)."""
        clock = clock or self.clock
        decision = Decision(clock.time(), "terminate", "critical", ActionKind.SIGTERM, target,
                            params={"group": group, "grace_s": grace_s})
        try:
            status, detail = self._terminate(target, grace_s, clock, group)
        except _Stop as stop:
            status, detail = stop.status, stop.detail
        except Exception as exc:
            log.exception("terminate %s failed", target.label())
            status, detail = Status.FAILED, f"{type(exc).__name__}: {exc}"
        return Outcome(decision, status, detail, clock.time())

    def _terminate(self, target: Target, grace_s: float, clock: Clock, group: bool) -> tuple[Status, str]:
        info = self._identify(target)
        members, _ = self._members(info, group)
        what = _describe(info, members, group, target.node)
        with _pinned(members) as fds:
            _send(fds, signal.SIGTERM)
            alive = _wait(fds, grace_s, clock)
            if not alive:
                return Status.DONE, f"{what} exited after SIGTERM"
            _send(alive, signal.SIGKILL)
            alive = _wait(alive, self.kill_wait_s, clock)
        if alive:
            return Status.FAILED, self._stuck(next(iter(alive)), members, target.node)
        return Status.DONE, f"sent SIGKILL to {what} after {grace_s:g} s of grace"

    def _stuck(self, pid: int, members: list[ProcessInfo], node: str) -> str:
        """Why `pid` outlived its SIGKILL, as an `unkillable:` detail that escalates to a drain."""
        now = ProcessInfo.read(pid, self.proc) or next(p for p in members if p.pid == pid)
        if now.state == "D":
            return unkillable(now, node)
        return unkillable(now, node, f"still alive {self.kill_wait_s:g} s after SIGKILL")


def unkillable(info: ProcessInfo, node: str, why: str = "D state (uninterruptible sleep)") -> str:
    """The detail of a process no signal will end; its `escalate=drain` asks the runner to drain the node."""
    return f"unkillable: {why}: process {info.pid} ({info.comm}) on {node} cannot be killed; {ESCALATE_DRAIN}"


def _send(fds: dict[int, int], sig: signal.Signals) -> list[int]:
    """Send `sig` through each pidfd; returns the pids that exited in between (ESRCH)."""
    gone = []
    for pid, fd in fds.items():
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            gone.append(pid)
    return gone


@contextmanager
def _pinned(members: list[ProcessInfo]) -> Iterator[dict[int, int]]:
    """pid -> pidfd for each member still the same process (starttime re-read after opening); closed after."""
    fds: dict[int, int] = {}
    try:
        for p in members:
            try:
                fd = os.pidfd_open(p.pid)
            except ProcessLookupError:
                continue
            now = ProcessInfo.read(p.pid, _KERNEL_PROC)
            if now is None or now.starttime != p.starttime or now.state == "Z":
                os.close(fd)
                continue
            fds[p.pid] = fd
        yield fds
    finally:
        for fd in fds.values():
            os.close(fd)


def _wait(fds: dict[int, int], timeout_s: float, clock: Clock) -> dict[int, int]:
    """Wait until every pidfd reports its process exited, or `timeout_s`; returns those still alive."""
    alive = dict(fds)
    poller = select.poll()
    by_fd = {fd: pid for pid, fd in alive.items()}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    end = clock.monotonic() + timeout_s
    simulated = not isinstance(clock, RealClock)
    while alive:
        left = end - clock.monotonic()
        slice_s = min(max(left, 0.0), 0.1) if simulated else max(left, 0.0)
        for fd, _ in poller.poll(int(slice_s * 1000)):
            alive.pop(by_fd[fd], None)
            poller.unregister(fd)
        if left <= 0:
            break
        if simulated:
            clock.sleep(slice_s)
    return alive


def _describe(info: ProcessInfo, members: list[ProcessInfo], group: bool, node: str) -> str:
    """`pid 12851 (python3) on node-gpu-88`, or the group and its members."""
    if not group:
        return f"pid {info.pid} ({info.comm}) on {node}"
    listed = ", ".join(f"{p.pid} ({p.comm})" for p in members[:8]) + (" ..." if len(members) > 8 else "")
    return f"process group {info.pgid} on {node}: {len(members)} processes, pids {listed}"


def _spared(spared: dict[int, str]) -> str:
    return "; spared: " + "; ".join(spared.values()) if spared else ""


def _pids(pids: list[int]) -> str:
    return ", ".join(str(p) for p in pids)
