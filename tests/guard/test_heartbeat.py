"""Heartbeat API: a real writer process and a reader in this one, the seqlock under load, bad files, percentiles.

Writers run as separate `python -c` processes (the supervisor and the job never share an address space);
in-process writers are used only where the test is about one call's effect.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coldaisle.guard import heartbeat as hb
from coldaisle.telemetry.clock import SimClock

torch_missing = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

WRITER = """
import os, sys, time, coldaisle
stop = sys.argv[1]
i = 0
while not os.path.exists(stop):
    i += 1
    coldaisle.progress(tokens=512.0 * i)
    coldaisle.latency(0.001 * (i % 100 + 1))
    time.sleep(0.002)
"""

HAMMER = """
import os, sys, coldaisle
stop = sys.argv[1]
progress = coldaisle.progress
i = 0
while True:
    for _ in range(4096):
        i += 1
        progress(step=i, tokens=2 * i)
    if os.path.exists(stop):
        break
"""


def wait_for(predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll until predicate() is truthy; fail the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout_s} s")


class Writers:
    """Real writer processes under one heartbeat directory, each stopped by a stop file (never killed mid-write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stop_file = directory.parent / "stop"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, script: str, rank: int | None = None) -> subprocess.Popen[bytes]:
        """Start one writer process with the heartbeat env var (and RANK) set."""
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK")}
        env[hb.ENV_VAR] = str(self.directory)
        if rank is not None:
            env["RANK"] = str(rank)
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), str(self.stop_file)], env=env)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        """Ask every writer to finish and wait for it."""
        self.stop_file.touch()
        for proc in self.procs:
            assert proc.wait(timeout=10) == 0


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[Writers]:
    """A heartbeat directory and its writer processes, always stopped."""
    directory = tmp_path / "hb"
    directory.mkdir()
    w = Writers(directory)
    try:
        yield w
    finally:
        w.stop_file.touch()
        for proc in w.procs:
            if proc.poll() is None and proc.wait(timeout=10) is None:
                proc.kill()


@pytest.fixture
def local_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process as a writer of rank 0 under a fresh directory (state reset before and after)."""
    directory = tmp_path / "hb"
    directory.mkdir()
    monkeypatch.setenv(hb.ENV_VAR, str(directory))
    monkeypatch.setenv("RANK", "0")
    hb.close()
    yield directory
    hb.close()


def only_rank(path: Path, reader: hb.HeartbeatReader | None = None) -> hb.RankHeartbeat:
    """The single rank under path, asserting there are no problems."""
    snap = (reader or hb.HeartbeatReader(path)).read()
    assert snap.problems == ()
    assert len(snap.ranks) == 1
    return snap.ranks[0]


def test_no_supervisor_is_a_noop_and_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hb.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    hb.close()
    try:
        import coldaisle

        coldaisle.progress(step=5, tokens=1.0)
        coldaisle.latency(0.2)
        coldaisle.progress()
        assert hb._q is None  # settled into the no-op after one environment lookup
        monkeypatch.setenv(hb.ENV_VAR, str(tmp_path))
        coldaisle.progress()  # looked up once: a later env var does not wake it
        assert list(tmp_path.iterdir()) == []
    finally:
        hb.close()


def test_import_coldaisle_does_not_load_the_heartbeat_or_numpy() -> None:
    code = ("import sys, coldaisle; assert 'coldaisle.guard.heartbeat' not in sys.modules; "
            "coldaisle.progress(); coldaisle.latency(0.1); assert 'numpy' not in sys.modules, 'numpy'")
    env = {k: v for k, v in os.environ.items() if k != hb.ENV_VAR}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def test_real_writer_process_is_seen_advancing_then_ageing(writers: Writers) -> None:
    proc = writers.start(WRITER, rank=2)
    reader = hb.HeartbeatReader(writers.directory)
    first = wait_for(lambda: reader.read().ranks)[0]
    assert (first.pid, first.rank, first.path) == (proc.pid, 2, str(writers.directory / "rank-2.hb"))
    assert math.isnan(first.steps_per_s)
    time.sleep(0.3)
    live = only_rank(writers.directory, reader)
    assert live.step > first.step
    assert live.tokens == 512.0 * live.step
    assert 0 <= live.age_s < 0.5
    assert 5 < live.steps_per_s < 1000  # sleeps 2 ms a step: at most ~500/s, far above 5/s even on a busy host
    assert live.tokens_per_s == pytest.approx(512.0 * live.steps_per_s)
    assert live.step - 1 <= live.latency_count <= live.step  # read between progress() and latency()
    assert 0.001 <= live.latency_p50_s <= live.latency_p99_s <= 0.1

    writers.stop()
    stopped = only_rank(writers.directory, reader)
    time.sleep(0.3)
    later = only_rank(writers.directory, reader)
    assert later.step == stopped.step
    assert later.steps_per_s == 0.0
    assert later.age_s >= stopped.age_s + 0.25
    assert not [p for p in writers.directory.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_seqlock_reader_never_sees_a_torn_record(writers: Writers) -> None:
    writers.start(HAMMER, rank=0)
    reader = hb.HeartbeatReader(writers.directory)
    wait_for(lambda: reader.read().ranks)
    steps = set()
    for _ in range(10_000):
        rank = only_rank(writers.directory, reader)
        assert rank.tokens == 2 * rank.step
        steps.add(rank.step)
    assert len(steps) > 100  # the writer really was writing while we read
    writers.stop()


def test_multiple_ranks_each_get_a_file(writers: Writers) -> None:
    procs = [writers.start(WRITER, rank=r) for r in (1, 0, 2)]
    reader = hb.HeartbeatReader(writers.directory)
    snap = wait_for(lambda: (s := reader.read()) and len(s.ranks) == 3 and s)
    assert [r.rank for r in snap.ranks] == [0, 1, 2]
    assert [r.pid for r in snap.ranks] == [procs[1].pid, procs[0].pid, procs[2].pid]
    assert snap.problems == ()
    writers.stop()


def test_file_naming_follows_rank_then_local_rank_then_pid(tmp_path: Path) -> None:
    assert hb.heartbeat_file(tmp_path, {"RANK": "7", "LOCAL_RANK": "3"}) == tmp_path / "rank-7.hb"
    assert hb.heartbeat_file(tmp_path, {"LOCAL_RANK": "3"}) == tmp_path / "rank-3.hb"
    assert hb.heartbeat_file(tmp_path, {"RANK": "x"}, pid=42) == tmp_path / "pid-42.hb"
    assert hb.heartbeat_file(tmp_path / "one.hb", {"RANK": "7"}) == tmp_path / "one.hb"  # not a directory: the file


def test_latency_percentiles_for_known_inputs(local_writer: Path) -> None:
    for ms in range(1, 101):
        hb.latency(ms / 1000)
    rank = only_rank(local_writer)
    assert rank.latency_count == 100
    assert rank.latency_p50_s == pytest.approx(0.0505)
    assert rank.latency_p99_s == pytest.approx(0.09901)
    assert rank.step == 0  # latencies alone are a sign of life, not a step
    assert rank.age_s < 1.0
    for _ in range(hb.RING_SIZE):  # the ring keeps only the last RING_SIZE: the old ones are gone
        hb.latency(45.0)
    rank = only_rank(local_writer)
    assert (rank.latency_p50_s, rank.latency_p99_s, rank.latency_count) == (45.0, 45.0, 100 + hb.RING_SIZE)


def test_percentile_matches_linear_interpolation() -> None:
    assert math.isnan(hb.percentile([], 50))
    assert hb.percentile([3.0], 99) == 3.0
    assert hb.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert hb.percentile([1.0, 2.0], 99) == pytest.approx(1.99)


def test_step_defaults_to_previous_plus_one_and_tokens_persist(local_writer: Path) -> None:
    hb.progress()
    hb.progress(tokens=10)
    assert (only_rank(local_writer).step, only_rank(local_writer).tokens) == (2, 10.0)
    hb.progress(step=100)
    hb.progress()
    assert (only_rank(local_writer).step, only_rank(local_writer).tokens) == (101, 10.0)


def test_a_phase_is_seen_by_the_reader_with_its_name_and_age_and_nests(local_writer: Path) -> None:
    import coldaisle

    hb.progress(step=1)
    assert only_rank(local_writer).phase == "" and math.isnan(only_rank(local_writer).phase_age_s)
    with coldaisle.phase("checkpoint"):
        time.sleep(0.05)
        rank = only_rank(local_writer)
        assert rank.phase == "checkpoint" and 0.05 <= rank.phase_age_s < 5
        with coldaisle.phase("fsync of shard 3 of a very long checkpoint name"):
            assert only_rank(local_writer).phase == "fsync of shard 3 of a ve"  # 24 bytes kept
        assert only_rank(local_writer).phase == "checkpoint"  # the outer phase again
        time.sleep(0.1)
    assert only_rank(local_writer).phase == ""
    assert only_rank(local_writer).step == 1  # a phase is not progress,
    assert only_rank(local_writer).age_s < 0.08  # but its end is a sign of life: silence counts from there


def test_a_phase_without_a_supervisor_costs_nothing_and_writes_nothing(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hb.ENV_VAR, raising=False)
    hb.close()
    with hb.phase("evaluation"):
        pass
    assert hb._phases == [] and list(tmp_path.iterdir()) == []
    hb.close()


def test_a_bad_step_raises_but_leaves_the_record_readable(local_writer: Path) -> None:
    hb.progress(step=3)
    with pytest.raises(TypeError):
        hb.progress(step=1.5)  # type: ignore[arg-type]
    assert only_rank(local_writer).step == 3
    hb.progress()
    assert only_rank(local_writer).step == 4


def test_a_restarted_rank_replaces_its_file_and_rates_restart(local_writer: Path) -> None:
    reader = hb.HeartbeatReader(local_writer)
    hb.progress(step=50)
    assert only_rank(local_writer, reader).step == 50
    env = {**os.environ, "RANK": "0"}
    subprocess.run([sys.executable, "-c", "import coldaisle; coldaisle.progress(step=7)"], env=env, check=True)
    again = only_rank(local_writer, reader)
    assert (again.step, math.isnan(again.steps_per_s)) == (7, True)
    assert again.pid != os.getpid()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_write_into_its_parents_record(local_writer: Path) -> None:
    hb.progress(step=10)
    pid = os.fork()
    if pid == 0:  # child
        hb.progress(step=999)
        os._exit(0)
    os.waitpid(pid, 0)
    assert only_rank(local_writer).step == 10


def test_bad_files_are_reported_not_raised(tmp_path: Path, local_writer: Path) -> None:
    hb.progress(step=1)
    good = (local_writer / "rank-0.hb").read_bytes()
    odd_seq = bytearray(good)
    odd_seq[48:56] = (1).to_bytes(8, sys.byteorder)  # a writer that died between its two seq stores
    wrong_version = bytearray(good)
    wrong_version[8:16] = (99).to_bytes(8, sys.byteorder)
    files = {"empty.hb": b"", "short.hb": b"x" * 10, "garbage.hb": os.urandom(4096), "cut.hb": good[:500],
             "odd.hb": bytes(odd_seq), "version.hb": bytes(wrong_version)}
    for name, data in files.items():
        (local_writer / name).write_bytes(data)
    (local_writer / "dir.hb").mkdir()
    (local_writer / "notes.txt").write_text("not a heartbeat")
    snap = hb.HeartbeatReader(local_writer, clock=SimClock(), spins=3, waits=2).read()
    assert [r.path for r in snap.ranks] == [str(local_writer / "rank-0.hb")]
    reasons = {Path(p.path).name: p.reason for p in snap.problems}
    assert set(reasons) == {*files, "dir.hb"}
    assert reasons["empty.hb"].startswith("truncated")
    assert reasons["short.hb"].startswith("truncated")
    assert reasons["garbage.hb"].startswith("not a heartbeat file")
    assert reasons["cut.hb"].startswith("truncated: 500 bytes")
    assert reasons["odd.hb"].startswith("record still being written")
    assert "version 99" in reasons["version.hb"]
    assert reasons["dir.hb"].startswith("cannot read")
    missing = hb.HeartbeatReader(tmp_path / "absent").read()
    assert missing.ranks == () and missing.problems[0].reason == "missing"


def test_an_unwritable_path_warns_once_and_goes_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hb.ENV_VAR, str(tmp_path / "no" / "such" / "dir" / "f.hb"))
    hb.close()
    try:
        with pytest.warns(RuntimeWarning, match="heartbeat disabled"):
            hb.progress()
        hb.progress()
        assert hb._q is None
    finally:
        hb.close()


class TinyOptimizer:
    """Our own optimizer with torch's hook contract: hook(optimizer, args, kwargs) after every step()."""

    def __init__(self) -> None:
        self.hooks: dict[int, Callable[[Any, tuple[Any, ...], dict[str, Any]], None]] = {}

    def register_step_post_hook(self, hook: Callable[[Any, tuple[Any, ...], dict[str, Any]], None]) -> Any:
        """Same name, argument and return (a handle with remove()) as torch.optim.Optimizer's."""
        key = len(self.hooks)
        self.hooks[key] = hook
        return type("Handle", (), {"remove": lambda _self: self.hooks.pop(key)})()

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Update nothing, then run the post hooks like torch does."""
        for hook in list(self.hooks.values()):
            hook(self, args, kwargs)


def test_torch_hook_reports_every_optimizer_step(local_writer: Path) -> None:
    opt = TinyOptimizer()
    handle = hb.torch_hook(opt, tokens_per_step=4096)
    for _ in range(3):
        opt.step()
    assert (only_rank(local_writer).step, only_rank(local_writer).tokens) == (3, 3 * 4096.0)
    handle.remove()
    opt.step()
    assert only_rank(local_writer).step == 3


@torch_missing
def test_torch_hook_with_a_real_torch_optimizer(local_writer: Path) -> None:
    import torch

    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([param], lr=0.1)
    hb.torch_hook(opt)
    for _ in range(5):
        param.sum().backward()
        opt.step()
    assert only_rank(local_writer).step == 5
