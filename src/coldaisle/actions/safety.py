"""What an action may touch and how often: the never-kill list and rate limits (the drain cap: fleet.py).

Process facts come from `telemetry.procfs` under a `/proc` root passed in (default "/proc"), so tests point it
at a captured tree.
"""

from __future__ import annotations

import os
import pwd
from collections import deque
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass

from coldaisle.telemetry.clock import Clock, RealClock
from coldaisle.telemetry.procfs import ProcessInfo

DEFAULT_NEVER_KILL = ("sshd", "sshd-session", "systemd", "systemd-journald", "coldaisle", "slurmd",
                      "slurmstepd", "kubelet", "containerd", "dockerd")
_COMM_MAX = 15  # TASK_COMM_LEN - 1: the kernel truncates comm to this many bytes


@dataclass(frozen=True, slots=True)
class KillPolicy:
    """Who may be signalled: the never-kill names and which other users' processes are fair game."""

    never_kill: tuple[str, ...] = DEFAULT_NEVER_KILL
    allow_users: frozenset[int | str] = frozenset()  # uids or user names whose processes may be signalled
    allow_other_users: bool = False  # any uid (a root agent guarding a shared node)


class NeverKill:
    """Refuses pid 1, kernel threads, named daemons, the agent and its ancestors, and other users' work."""

    def __init__(self, policy: KillPolicy | None = None, *, proc: str | os.PathLike[str] = "/proc",
                 agent_pid: int | None = None, agent_uid: int | None = None) -> None:
        self.policy = policy or KillPolicy()
        self.proc = proc
        self.agent_pid = os.getpid() if agent_pid is None else agent_pid
        self.agent_uid = os.getuid() if agent_uid is None else agent_uid
        self._names = {n[:_COMM_MAX] for n in self.policy.never_kill} | set(self.policy.never_kill)
        self._uids = {_to_uid(u) for u in self.policy.allow_users} - {None}

    def check(self, p: ProcessInfo) -> str | None:
        """Why `p` must not be signalled, or None when the policy allows it."""
        return next(self._reasons(p), None)

    def _reasons(self, p: ProcessInfo) -> Iterator[str]:
        """Every rule `p` breaks, most fundamental first (lazily: the first one is enough)."""
        if p.pid == 1:
            yield "pid 1 (init) is never signalled"
        if p.kernel_thread:
            yield f"pid {p.pid} ({p.comm}) is a kernel thread"
        if p.pid == self.agent_pid:
            yield f"pid {p.pid} is the agent itself"
        if p.pid in self.ancestors():
            yield f"pid {p.pid} ({p.comm}) is an ancestor of the agent"
        name = _protected_name(p, self._names)
        if name:
            yield f"pid {p.pid} ({name}) is on the never-kill list"
        if p.uid != self.agent_uid and not self.policy.allow_other_users and p.uid not in self._uids:
            yield f"pid {p.pid} belongs to {_user(p.uid)}, another user, and the policy does not allow it"

    def ancestors(self) -> set[int]:
        """The agent's parent, grandparent ... up to pid 1 (a supervisor must never be killed under it)."""
        out: set[int] = set()
        pid = self.agent_pid
        while pid > 1 and len(out) < 64:
            info = ProcessInfo.read(pid, self.proc)
            if info is None:
                break
            pid = info.ppid
            out.add(pid)
        return out


def _protected_name(p: ProcessInfo, names: set[str]) -> str | None:
    """The never-kill name `p` runs as: its comm, or argv[0]'s base name ("sshd: alice@pts/0" is sshd)."""
    if p.comm in names:
        return p.comm
    if p.cmdline:
        argv0 = os.path.basename(p.cmdline[0].split(" ")[0]).rstrip(":")
        if argv0 in names:
            return argv0
    return None


def _to_uid(user: int | str) -> int | None:
    if isinstance(user, int) or user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


class RateLimiter:
    """At most `max_per_window` actions per key in any sliding `window_s` seconds."""

    def __init__(self, max_per_window: int, window_s: float, clock: Clock | None = None) -> None:
        self.max_per_window = max_per_window
        self.window_s = window_s
        self.clock = clock or RealClock()
        self._seen: dict[Hashable, deque[float]] = {}

    def allow(self, key: Hashable = None) -> bool:
        """True (and counted) if one more action for `key` fits in the window now."""
        now = self.clock.monotonic()
        seen = self._seen.setdefault(key, deque())
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        if len(seen) >= self.max_per_window:
            return False
        seen.append(now)
        return True


def refusals(infos: Iterable[ProcessInfo], guard: NeverKill) -> dict[int, str]:
    """pid -> reason for every process of `infos` the guard refuses."""
    return {p.pid: r for p in infos if (r := guard.check(p)) is not None}
