"""Process facts from /proc, parsed in one place: captured trees, hostile comm names, this very process."""

from __future__ import annotations

import os
from pathlib import Path

from coldaisle.telemetry.procfs import (
    ProcessInfo,
    any_thread_in_d_state,
    count_d_state,
    group_members,
    parse_environ,
    read_environ,
    rss_bytes,
    starttime,
)

AGENT_PROC = Path(__file__).resolve().parents[1] / "data" / "agent" / "proc"


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


def _stat(pid: int, comm: str, state: str) -> str:
    return f"{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 1234 0 0\n"


def test_count_d_state_with_weird_comm_names(tmp_path: Path) -> None:
    procs = {1: ("systemd", "S"), 2: ("kworker/u8:2-events_unbound", "I"), 10: ("python3", "D"),
             11: ("a) D (b", "S"),  # a comm that looks like a state: the last ')' decides
             12: ("tmux: server", "D"), 13: ("(sd-pam)", "S"), 14: (") R (", "D"), 15: ("x" * 15, "Z")}
    for pid, (comm, state) in procs.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, comm, state))
    (tmp_path / "self").mkdir()  # non-numeric entries are ignored
    (tmp_path / "99").mkdir()  # a process that exited between readdir and open: no stat file
    (tmp_path / "meminfo").write_text("MemTotal: 1 kB\n")
    assert count_d_state(tmp_path) == 3


def test_count_d_state_on_a_missing_root(tmp_path: Path) -> None:
    assert count_d_state(tmp_path / "nope") == 0


def test_parse_environ_and_starttime() -> None:
    assert parse_environ(b"A=1\0B=x=y\0\0JUNK\0") == {"A": "1", "B": "x=y"}
    assert starttime((AGENT_PROC / "4242" / "stat").read_text()) == 183921 + 4242
    assert starttime("1 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99 0") == 99
    assert starttime("garbage") is None


def test_environ_and_rss_of_this_process() -> None:
    env = read_environ(os.getpid())
    assert env is not None and env.get("PATH") == os.environ.get("PATH")  # the initial environment
    assert read_environ(10**9) is None
    assert rss_bytes(os.getpid()) > 1 << 20 and rss_bytes(10**9) == 0


def test_d_state_in_any_thread(tmp_path: Path) -> None:
    for pid, states in ((20, ("S", "D")), (30, ("S", "R"))):
        for i, st in enumerate(states):
            task = tmp_path / str(pid) / "task" / str(pid + i)
            task.mkdir(parents=True)
            (task / "stat").write_text(f"{pid + i} (py ) D thr) {st} 1 1 1 0")
    assert any_thread_in_d_state(20, tmp_path)
    assert not any_thread_in_d_state(30, tmp_path) and not any_thread_in_d_state(40, tmp_path)
