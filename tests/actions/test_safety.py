"""/proc parsing, the never-kill list, the rate limiter and the drain circuit breaker."""

from __future__ import annotations

import os
from pathlib import Path

from coldaisle.actions.safety import (
    CircuitBreaker,
    KillPolicy,
    NeverKill,
    ProcessInfo,
    RateLimiter,
    group_members,
    parse_stat,
)
from coldaisle.telemetry.clock import SimClock


def test_stat_with_spaces_and_parentheses_in_comm(proc_tree: Path) -> None:
    info = ProcessInfo.read(12850, proc_tree)
    assert info is not None
    assert info.comm == "my) job (x"
    assert (info.state, info.ppid, info.pgid, info.session) == ("S", 12801, 12801, 12801)
    assert info.starttime == 25919417
    assert info.uid == 1000
    assert info.cmdline == ("python3", "-m", "my_job.helper")


def test_d_state_process_from_captured_tree(proc_tree: Path) -> None:
    info = ProcessInfo.read(12849, proc_tree)
    assert info is not None
    assert (info.comm, info.state, info.starttime, info.kernel_thread) == ("python3", "D", 25919000, False)


def test_kernel_threads_detected_by_flag_and_parent(proc_tree: Path) -> None:
    kthreadd, kworker, systemd = (ProcessInfo.read(p, proc_tree) for p in (2, 143, 1))
    assert kthreadd and kthreadd.kernel_thread and kthreadd.cmdline == ()
    assert kworker and kworker.kernel_thread and kworker.comm == "kworker/u64:3-events_unbound"
    assert systemd and not systemd.kernel_thread


def test_reads_this_process_from_real_proc() -> None:
    info = ProcessInfo.read(os.getpid())
    assert info is not None
    assert info.pid == os.getpid() and info.ppid == os.getppid() and info.pgid == os.getpgrp()
    assert info.uid == os.getuid() and info.state == "R"
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    assert info.starttime == int(stat.rpartition(")")[2].split()[19])


def test_missing_process_reads_as_none(proc_tree: Path) -> None:
    assert ProcessInfo.read(99999, proc_tree) is None


def test_group_members_scan(proc_tree: Path) -> None:
    assert [p.pid for p in group_members(12801, proc_tree)] == [12801, 12849, 12850]


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


def test_circuit_breaker_ten_percent_of_128_nodes() -> None:
    clock = SimClock()
    br = CircuitBreaker(0.10, 600.0, 128, clock)
    assert br.limit == 13
    allowed = [br.allow(f"node-gpu-{i:02d}") for i in range(14)]
    assert allowed == [True] * 13 + [False]
    assert br.open
    assert br.allow("node-gpu-05")  # draining an already-drained node again adds nothing
    clock.sleep(601.0)
    assert not br.open and br.allow("node-gpu-13")


def test_circuit_breaker_limit_rounding_and_minimum() -> None:
    assert CircuitBreaker(0.1, 60, 130).limit == 13  # 0.1 * 130 is 13.000000000000002 in floats
    assert CircuitBreaker(0.001, 60, 10).limit == 1
