"""Placing ranks from real py-spy dumps and /proc: who waits in the collective, who is the straggler, who is in I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldaisle.guard.ranks import RankView, analyse, environ_rank, rank_leads
from coldaisle.guard.stackscan import Activity, parse_dump
from coldaisle.telemetry.procfs import ProcessInfo
from coldaisle.telemetry.procfs import any_thread_in_d_state as stuck_in_io

DATA = Path(__file__).parents[1] / "data" / "guard"


def dump(name: str) -> str:
    return (DATA / name).read_text()


def py_dump(*frames: str, name: str = "MainThread") -> str:
    body = "\n".join(f"    {f}" for f in frames)
    return f"Process 1: python x.py\nPython v3.11.7 (/usr/bin/python3)\n\nThread 1 (active): \"{name}\"\n{body}\n"


def test_native_gloo_dump_is_inside_all_reduce() -> None:
    rep = parse_dump(dump("pyspy-native-gloo-rank0-all_reduce.txt"))
    assert rep.activity == Activity.COLLECTIVE
    assert rep.main is not None and rep.main.at is not None
    assert rep.main.at.function == "all_reduce" and "distributed_c10d.py" in rep.main.at.where


def test_straggler_dump_is_not_in_a_collective() -> None:
    rep = parse_dump(dump("pyspy-native-gloo-rank1-straggler.txt"))
    assert rep.activity == Activity.OTHER
    assert rep.main is not None and rep.main.at is not None and rep.main.at.function == "next_batch_after_bad_one"


def test_checkpoint_write_is_io_even_with_an_idle_helper_thread() -> None:
    rep = parse_dump(dump("pyspy-checkpoint-save.txt"))
    assert rep.activity == Activity.IO and len(rep.threads) == 2
    assert rep.main is not None and rep.main.at is not None and rep.main.at.where.startswith("torch/serialization.py")


@pytest.mark.parametrize(("frames", "want"), [
    (["barrier (torch/distributed/distributed_c10d.py:4800)", "main (t.py:3)"], Activity.COLLECTIVE),
    (["all_reduce (deepspeed/comm/comm.py:120)", "step (engine.py:9)"], Activity.COLLECTIVE),
    (["ncclAllReduce (libnccl.so.2)", "all_reduce (torch/distributed/distributed_c10d.py:1)"], Activity.COLLECTIVE),
    (["all_reduce (mylib/math.py:5)", "main (t.py:3)"], Activity.OTHER),  # not a communication module
    (["wait (threading.py:331)", "main (t.py:3)"], Activity.OTHER),  # a thread wait is not a collective
    (["fsync (libc.so.6)", "flush (ckpt.py:4)"], Activity.IO),
    (["forward (model.py:10)", "main (t.py:3)"], Activity.OTHER),
    (["wait (threading.py:331)", "get (queue.py:180)",
      "_try_get_data (torch/utils/data/dataloader.py:1133)", "__next__ (torch/utils/data/dataloader.py:631)",
      "train (t.py:9)"], Activity.LOADING),
    (["forward (model.py:10)", "evaluate (t.py:20)", "main (t.py:3)"], Activity.EVALUATION),
    (["all_reduce (torch/distributed/distributed_c10d.py:1)", "evaluate (t.py:20)"], Activity.COLLECTIVE),
])
def test_frames_are_classified_by_what_they_call(frames: list[str], want: Activity) -> None:
    assert parse_dump(py_dump(*frames)).activity == want


@pytest.mark.parametrize("text", ["", "no stack for pid 9: py-spy failed: Permission denied", "garbage\n\x00\x01"])
def test_text_that_is_not_a_dump_is_unknown_not_an_error(text: str) -> None:
    rep = parse_dump(text)
    assert rep.activity == Activity.UNKNOWN and rep.error


def view(rank: int, *frames: str, d_state: bool = False) -> RankView:
    return RankView(rank, 100 + rank, d_state, parse_dump(py_dump(*frames)))


AR = "all_reduce (torch/distributed/distributed_c10d.py:3252)"
BAR = "barrier (torch/distributed/distributed_c10d.py:4800)"


def test_the_rank_outside_the_collective_is_the_straggler() -> None:
    a = analyse([view(0, AR), view(1, "load (data.py:3)"), view(2, AR), view(3, AR)])
    assert [v.rank for v in a.waiting] == [0, 2, 3] and [v.rank for v in a.stragglers] == [1]
    assert not a.io_stall and "straggler: rank 1 (pid 101) not in the collective, in load (data.py:3)" in a.summary()


def test_all_in_collectives_the_minority_op_is_the_straggler() -> None:
    a = analyse([view(0, AR), view(1, BAR), view(2, AR)])
    assert [v.rank for v in a.stragglers] == [1] and [v.rank for v in a.waiting] == [0, 2]


def test_an_even_split_names_no_straggler() -> None:
    a = analyse([view(0, AR), view(1, BAR)])
    assert a.stragglers == () and len(a.waiting) == 2


def test_a_rank_in_d_state_makes_it_an_io_stall_not_a_hang() -> None:
    a = analyse([view(0, AR), view(1, "save_checkpoint (train.py:88)", d_state=True)])
    assert a.io_stall and [v.rank for v in a.io] == [1] and a.stragglers == ()
    assert "in I/O: rank 1 (pid 101) save_checkpoint (train.py:88)" in a.summary()


def test_a_stuck_rank_beside_one_in_io_is_still_a_hang() -> None:
    a = analyse([view(0, AR), view(1, "load (data.py:3)"), view(2, "fsync (libc.so.6)")])
    assert not a.io_stall and [v.rank for v in a.stragglers] == [1]


def test_nobody_in_a_collective_is_reported_as_such() -> None:
    a = analyse([view(0, "spin (t.py:1)"), view(1, "spin (t.py:1)")])
    assert a.waiting == () and a.stragglers == () and "no rank in a collective" in a.summary()


def fake_proc(root: Path, pid: int, ppid: int, env: dict[str, str], states: tuple[str, ...] = ("S",)) -> ProcessInfo:
    d = root / str(pid)
    (d / "task").mkdir(parents=True)
    (d / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in env.items()) + b"\0")
    for i, st in enumerate(states):
        (d / "task" / str(pid + i)).mkdir()
        (d / "task" / str(pid + i) / "stat").write_text(f"{pid + i} (py thr) {st} {ppid} 1 1 0")
    return ProcessInfo(pid, ppid, states[0], 0, "python", ("python",), 1000 + pid, pid, pid, 0)


def test_rank_leads_skip_forked_workers_and_rankless_launchers(tmp_path: Path) -> None:
    launcher = fake_proc(tmp_path, 10, 1, {"PATH": "/bin"})
    r0 = fake_proc(tmp_path, 11, 10, {"RANK": "0"})
    r1 = fake_proc(tmp_path, 12, 10, {"LOCAL_RANK": "1"})
    worker = fake_proc(tmp_path, 13, 11, {"RANK": "0"})
    leads = rank_leads([launcher, r0, r1, worker], tmp_path)
    assert {r: p.pid for r, p in leads.items()} == {0: 11, 1: 12}
    assert environ_rank(10, tmp_path) is None and environ_rank(999, tmp_path) is None


def test_d_state_in_any_thread_counts(tmp_path: Path) -> None:
    fake_proc(tmp_path, 20, 1, {}, states=("S", "D"))
    fake_proc(tmp_path, 30, 1, {}, states=("S", "R"))
    assert stuck_in_io(20, tmp_path) and not stuck_in_io(30, tmp_path) and not stuck_in_io(40, tmp_path)


def test_a_script_given_with_python_c_is_placed_at_its_own_frame_and_named_by_pid() -> None:
    text = ('Process 7: python -c ...\nPython v3.11.7 (/usr/bin/python3)\n\nThread 7 (idle): "MainThread"\n'
            "    clock_nanosleep (libc.so.6)\n    time_sleep (libpython3.11.so.1.0)\n    <module> (<string>:1)\n")
    v = RankView(-1, 7, False, parse_dump(text))
    assert v.where() == "<module> (<string>:1)"
    assert "pid 7 in <module> (<string>:1)" in analyse([v]).summary() and "rank -1" not in analyse([v]).summary()
