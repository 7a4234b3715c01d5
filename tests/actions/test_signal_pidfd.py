"""The real signaller on real processes: groups, recycled PIDs, the never-kill list, D state, terminate()."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from coldaisle.actions.interface import ActionKind, Decision, Status, Target
from coldaisle.actions.safety import KillPolicy, NeverKill, ProcessInfo
from coldaisle.actions.signal import ESCALATE_DRAIN, ProcessSignaller
from coldaisle.telemetry.clock import SimClock

NODE = "node-gpu-88"
# A parent that forks two children and prints their pids; all three share the parent's new process group.
TREE = ("import os, sys, time\n"
        "kids = [os.fork() or (time.sleep(60), os._exit(0)) for _ in range(2)]\n"
        "print(*kids, flush=True)\n"
        "time.sleep(60)\n")
IGNORE_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); " \
              "time.sleep(60)"


def _decision(target: Target, action: ActionKind = ActionKind.SIGTERM, group: bool = False) -> Decision:
    return Decision(time.time(), "runaway-python", "critical", action, target, params={"group": group})


def _target(pid: int) -> Target:
    info = ProcessInfo.read(pid)
    assert info is not None
    return Target(NODE, 2, pid=pid, starttime=info.starttime)


def test_group_kill_spares_a_lookalike_bystander(spawn) -> None:
    tree = spawn([sys.executable, "-c", TREE, "--job", "4242"], stdout=subprocess.PIPE, start_new_session=True)
    kids = [int(p) for p in tree.stdout.readline().split()]
    spawn.extra.extend(kids)
    bystander = spawn([sys.executable, "-c", TREE, "--job", "4243"], stdout=subprocess.PIPE,
                      start_new_session=True)
    by_kids = [int(p) for p in bystander.stdout.readline().split()]
    spawn.extra.extend(by_kids)
    group = {tree.pid, *kids}
    assert {p.pgid for p in map(ProcessInfo.read, group)} == {tree.pid}

    outcome = ProcessSignaller().execute(_decision(_target(kids[0]), group=True), dry_run=False)

    assert outcome.status == Status.DONE, outcome.detail
    assert f"process group {tree.pid}" in outcome.detail and "3 processes" in outcome.detail
    assert tree.wait(5) == -15
    assert spawn.wait_until(lambda: all(spawn.dead(p) for p in kids))
    for pid in (bystander.pid, *by_kids):  # same argv[0], same command line, another group: untouched
        os.kill(pid, 0)
        assert not spawn.dead(pid)
    live = {int(p) for p in os.listdir("/proc") if p.isdigit() and not spawn.dead(int(p))}
    assert not live & group


def test_single_process_sigkill(spawn) -> None:
    p = spawn(["sleep", "60"], start_new_session=True)
    outcome = ProcessSignaller().execute(_decision(_target(p.pid), ActionKind.SIGKILL), dry_run=False)
    assert outcome.status == Status.DONE and f"sent SIGKILL to pid {p.pid} (sleep) on {NODE}" in outcome.detail
    assert p.wait(5) == -9


def test_recycled_pid_is_refused_and_the_live_process_untouched(spawn) -> None:
    old = spawn(["sleep", "60"], start_new_session=True)
    old_target = _target(old.pid)
    old.kill()
    old.wait(5)
    live = spawn(["sleep", "60"], start_new_session=True)
    # the live process sits where the old one was: same pid in the Target, but the old starttime
    recycled = Target(NODE, 2, pid=live.pid, starttime=_target(live.pid).starttime - 1)

    outcome = ProcessSignaller().execute(_decision(recycled, ActionKind.SIGKILL), dry_run=False)

    assert outcome.status == Status.REFUSED and outcome.detail.startswith("pid was recycled")
    time.sleep(0.05)
    assert live.poll() is None and not spawn.dead(live.pid)
    # the old process itself: gone (or its pid reused, and then refused as above): never a signal
    again = ProcessSignaller().execute(_decision(old_target), dry_run=False)
    assert (again.status == Status.DONE and "already exited" in again.detail) or again.status == Status.REFUSED


def test_never_kill_pid1_self_and_kernel_threads(proc_tree: Path) -> None:
    real = ProcessSignaller()
    for pid, why in ((1, "pid 1"), (os.getpid(), "agent itself")):
        outcome = real.execute(_decision(Target(NODE, pid=pid)), dry_run=False)
        assert outcome.status == Status.REFUSED and why in outcome.detail, outcome.detail
    captured = ProcessSignaller(NeverKill(proc=proc_tree, agent_pid=4242, agent_uid=0), proc=proc_tree)
    for pid in (2, 143):  # kthreadd and a kworker, from the captured tree
        outcome = captured.execute(_decision(Target(NODE, pid=pid), ActionKind.SIGKILL), dry_run=False)
        assert outcome.status == Status.REFUSED and "kernel thread" in outcome.detail


def test_never_kill_sshd_by_name_and_by_argv0(spawn, tmp_path: Path) -> None:
    link = tmp_path / "sshd"
    link.symlink_to("/usr/bin/sleep")
    by_comm = spawn([str(link), "60"], start_new_session=True)
    by_argv0 = spawn(["bash", "-c", "exec -a sshd sleep 60"], start_new_session=True)
    assert spawn.wait_until(lambda: (ProcessInfo.read(by_argv0.pid) or by_comm).cmdline[:1] == ("sshd",))
    for p in (by_comm, by_argv0):
        outcome = ProcessSignaller().execute(_decision(Target(NODE, pid=p.pid), ActionKind.SIGKILL), dry_run=False)
        assert outcome.status == Status.REFUSED and "(sshd) is on the never-kill list" in outcome.detail
        assert p.poll() is None


def test_other_users_process_refused_unless_allowed(spawn) -> None:
    p = spawn(["sleep", "60"], user=65534, start_new_session=True)
    outcome = ProcessSignaller().execute(_decision(Target(NODE, pid=p.pid)), dry_run=False)
    assert outcome.status == Status.REFUSED and "uid 65534" in outcome.detail and "another user" in outcome.detail
    assert p.poll() is None
    allowed = ProcessSignaller(NeverKill(KillPolicy(allow_users=frozenset({"nobody"}))))
    assert allowed.execute(_decision(Target(NODE, pid=p.pid)), dry_run=False).status == Status.DONE
    assert p.wait(5) == -15


def test_d_state_is_unkillable_and_asks_for_a_drain(proc_tree: Path) -> None:
    guard = NeverKill(KillPolicy(allow_users=frozenset({1000})), proc=proc_tree, agent_pid=4242, agent_uid=0)
    signaller = ProcessSignaller(guard, proc=proc_tree, clock=SimClock())
    target = Target("node-gpu-102", 0, pid=12849, starttime=25919000)
    for dry_run in (False, True):
        outcome = signaller.execute(_decision(target, ActionKind.SIGKILL), dry_run=dry_run)
        assert outcome.status == Status.FAILED
        assert outcome.detail.startswith("unkillable: D state") and ESCALATE_DRAIN in outcome.detail
        assert "process 12849 (python3)" in outcome.detail


def test_dry_run_describes_and_sends_nothing(spawn) -> None:
    p = spawn(["sleep", "60"], start_new_session=True)
    outcome = ProcessSignaller().execute(_decision(_target(p.pid)), dry_run=True)
    assert outcome.status == Status.DRY_RUN
    assert outcome.detail == f"would have sent SIGTERM to pid {p.pid} (sleep) on {NODE}"
    time.sleep(0.05)
    assert p.poll() is None


def test_group_of_the_agent_itself_is_refused(spawn) -> None:
    p = spawn(["sleep", "60"])  # no new session: the test runner's own process group
    outcome = ProcessSignaller().execute(_decision(_target(p.pid), group=True), dry_run=False)
    assert outcome.status == Status.REFUSED and "agent's own" in outcome.detail
    assert p.poll() is None


def test_terminate_escalates_to_sigkill_after_grace(spawn) -> None:
    stubborn = spawn([sys.executable, "-c", IGNORE_TERM], stdout=subprocess.PIPE, start_new_session=True)
    assert stubborn.stdout.readline().strip() == b"ready"
    t0 = time.monotonic()
    outcome = ProcessSignaller().terminate(_target(stubborn.pid), grace_s=0.3)
    assert outcome.status == Status.DONE and "sent SIGKILL" in outcome.detail, outcome.detail
    assert 0.3 <= time.monotonic() - t0 < 3
    assert stubborn.wait(5) == -9


def test_terminate_returns_as_soon_as_sigterm_works(spawn) -> None:
    p = spawn(["sleep", "60"], start_new_session=True)
    t0 = time.monotonic()
    outcome = ProcessSignaller().terminate(_target(p.pid), grace_s=10.0)
    assert outcome.status == Status.DONE and outcome.detail.endswith("exited after SIGTERM")
    assert time.monotonic() - t0 < 2  # woken by the pidfd, not by the end of the grace period
    assert p.wait(5) == -15
