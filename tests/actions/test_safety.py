"""The never-kill list and the rate limiter (the fleet breaker: test_fleet_breaker.py)."""

from __future__ import annotations

import os
from pathlib import Path

from coldaisle.actions.safety import KillPolicy, NeverKill, RateLimiter
from coldaisle.telemetry.clock import SimClock
from coldaisle.telemetry.procfs import ProcessInfo, parse_stat


def test_never_kill_refuses_what_the_policy_does_not_name(proc_tree: Path) -> None:
    guard = NeverKill(KillPolicy(allow_users=frozenset({1000})), proc=proc_tree, agent_pid=4242, agent_uid=0)
    reasons = {pid: guard.check(ProcessInfo.read(pid, proc_tree)) for pid in (1, 2, 143, 1022, 40211, 13377)}
    assert "pid 1" in reasons[1]
    assert "kernel thread" in reasons[2] and "kernel thread" in reasons[143]
    assert "never-kill list" in reasons[1022] and "(sshd)" in reasons[1022]
    assert "never-kill list" in reasons[40211]  # "sshd: alice@pts/0": alice's own sshd is still sshd
    assert "uid 1001" in reasons[13377] and "another user" in reasons[13377]
    assert guard.check(ProcessInfo.read(12849, proc_tree)) is None  # alice's python3 is allowed


def test_other_users_only_when_allowed(proc_tree: Path) -> None:
    bob = ProcessInfo.read(13377, proc_tree)
    assert NeverKill(proc=proc_tree, agent_pid=4242, agent_uid=0).check(bob) is not None
    assert NeverKill(KillPolicy(allow_users=frozenset({"1001"})), proc=proc_tree, agent_pid=4242,
                     agent_uid=0).check(bob) is None
    assert NeverKill(KillPolicy(allow_other_users=True), proc=proc_tree, agent_pid=4242, agent_uid=0).check(bob) is None


def test_agent_and_its_ancestors(proc_tree: Path) -> None:
    guard = NeverKill(KillPolicy(allow_other_users=True), proc=proc_tree, agent_pid=12849)
    assert "agent itself" in guard.check(ProcessInfo.read(12849, proc_tree))
    assert "ancestor of the agent" in guard.check(ProcessInfo.read(12801, proc_tree))
    real = NeverKill()
    me, parent = ProcessInfo.read(os.getpid()), ProcessInfo.read(os.getppid())
    assert "agent itself" in real.check(me)
    assert "ancestor" in real.check(parent) or "never-kill" in real.check(parent)


def test_names_are_matched_as_the_kernel_truncates_them() -> None:
    line = "733 (systemd-journal) S 1 733 733 0 -1 4194560 0 0 0 0 0 0 0 0 19 -1 1 0 400 0 0 " + "0 " * 30
    info = parse_stat(line, uid=0, cmdline=b"/usr/lib/systemd/systemd-journald\0")
    assert "systemd-journal" in NeverKill(agent_pid=4242).check(info)


def test_rate_limiter_sliding_window_per_key() -> None:
    clock = SimClock()
    rl = RateLimiter(3, 60.0, clock)
    assert [rl.allow("a") for _ in range(4)] == [True, True, True, False]
    assert rl.allow("b")
    clock.sleep(59.0)
    assert not rl.allow("a")
    clock.sleep(1.0)
    assert rl.allow("a")
