"""The learned rhythm, the adaptive hang watch, and the judge's pauses, without processes.

Heartbeat snapshots are made by hand (a rank's step and the age of its last progress at a reader time), /proc
readings through injected functions, stacks from py-spy-format text: every threshold is checked against what it
must and must not fire on.
"""

from __future__ import annotations

import dataclasses
import math

from coldaisle.guard.heartbeat import HeartbeatSnapshot, RankHeartbeat
from coldaisle.guard.judge import known_pause
from coldaisle.guard.ranks import RankView
from coldaisle.guard.rhythm import RankActivity, Rhythm, quantile
from coldaisle.guard.stackscan import parse_dump
from coldaisle.guard.watch import HangWatch, VerdictKind


def rank(r: int, step: int, age_s: float, phase: str = "", pid: int = 0) -> RankHeartbeat:
    return RankHeartbeat(f"rank-{r}.hb", pid or 100 + r, r, step, 0.0, age_s, math.nan, math.nan, math.nan, math.nan,
                         0, phase, 1.0 if phase else math.nan)


def snap(*ranks: RankHeartbeat) -> HeartbeatSnapshot:
    return HeartbeatSnapshot(tuple(ranks), ())


def run_steps(rhythm: Rhythm, times: list[float], look_every: float = 0.5, phase_at: set[int] | None = None) -> float:
    """Feed looks every `look_every` s over progress moments `times` (step i at times[i]); returns the last look."""
    now, i = 0.0, 0
    end = times[-1] + 1e-9
    while now <= end:
        while i + 1 < len(times) and times[i + 1] <= now:
            i += 1
        phase = "checkpoint" if phase_at and i in phase_at else ""
        r0 = rank(0, i, now - times[i], phase)
        if phase:  # the phase began just after step i's progress
            r0 = dataclasses.replace(r0, phase_age_s=now - times[i] - 0.01)
        rhythm.observe(now, snap(r0, rank(1, i, now - times[i] + 0.01)))
        now += look_every
    return now


def test_quantile_interpolates_linearly() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5 and quantile([5.0], 0.9) == 5.0
    assert math.isnan(quantile([], 0.5))


def test_the_rhythm_learns_the_step_time_and_suspects_after_its_floor() -> None:
    rhythm = Rhythm(floor_s=8.0)
    assert rhythm.threshold_s() is None  # nothing learned: only the upper bound counts
    run_steps(rhythm, [0.5 * i for i in range(40)])
    assert rhythm.learned and abs(rhythm.median_s() - 0.5) < 0.05
    assert rhythm.threshold_s() == 8.0  # 1.5 x p90 is well under the floor for half-second steps


def test_slow_steps_raise_the_threshold_above_the_floor() -> None:
    rhythm = Rhythm(floor_s=8.0)
    run_steps(rhythm, [6.0 * i for i in range(12)])
    assert abs(rhythm.median_s() - 6.0) < 0.3
    assert 8.5 <= rhythm.threshold_s() <= 9.5  # type: ignore[operator]  # 1.5 x 6 s


def test_a_checkpoint_is_a_pause_not_a_beat() -> None:
    times = [0.5 * i for i in range(20)]
    times += [times[-1] + 25.0 + 0.5 * i for i in range(1, 20)]  # 25 s without progress, then on again
    rhythm = Rhythm()
    run_steps(rhythm, times)
    assert rhythm.pauses and rhythm.pauses[0][1] == "a long step" and 24.0 <= rhythm.pauses[0][0] <= 26.0
    assert rhythm.p90_s() < 1.0 and rhythm.threshold_s() == 8.0  # the checkpoint taught it nothing


def test_a_gap_with_a_declared_phase_is_a_pause_named_by_the_phase() -> None:
    times = [0.5 * i for i in range(3)] + [1.0 + 3.0] + [4.0 + 0.5 * i for i in range(1, 6)]
    rhythm = Rhythm()
    run_steps(rhythm, times, phase_at={2})  # a 3 s checkpoint (short: only the phase says it is one)
    assert [w for _, w in rhythm.pauses] == ["checkpoint"] and 2.5 <= rhythm.pauses[0][0] <= 3.5
    assert max(rhythm.beats) < 1.0


def test_the_hang_watch_suspects_on_the_rhythm_and_keeps_the_timeout_as_the_bound() -> None:
    rhythm = Rhythm(floor_s=8.0)
    watch = HangWatch(300.0, rhythm)
    run_steps(rhythm, [0.5 * i for i in range(30)])
    assert watch.check(snap(rank(0, 29, 7.9), rank(1, 29, 7.95))) is None
    v = watch.check(snap(rank(0, 29, 8.2), rank(1, 29, 8.3)))
    assert v is not None and v.kind == VerdictKind.HANG and v.evidence["adaptive"] is True
    assert v.evidence["threshold_s"] == 8.0 and v.evidence["beats"] >= 3 and "16x its usual step" in v.reason
    # without a rhythm (--no-adaptive), and while a rank declares a phase: only the timeout counts
    assert HangWatch(300.0).check(snap(rank(0, 29, 200.0))) is None
    in_phase = watch.check(snap(rank(0, 29, 200.0, "checkpoint"), rank(1, 29, 200.0)))
    assert in_phase is None
    bound = watch.check(snap(rank(0, 29, 301.0, "checkpoint"), rank(1, 29, 300.5)))
    assert bound is not None and bound.evidence["adaptive"] is False and "in phase checkpoint" in bound.reason


class FakeProc:
    """CPU seconds and main-thread I/O bytes per pid, advanced by the test."""

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}
        self.io: dict[int, int] = {}

    def activity(self) -> RankActivity:
        return RankActivity(cpu=self.cpu.get, io=self.io.get)


def test_rank_activity_reports_cpu_cores_and_io_rate_over_a_window() -> None:
    fake = FakeProc()
    act = fake.activity()
    for k in range(7):  # rank 0 computes a full core, rank 1 writes 1 MiB/s and idles
        fake.cpu |= {100: 1.0 * k * 0.5, 101: 0.01 * k}
        fake.io |= {100: 0, 101: 2**20 * k // 2}
        act.observe(k * 0.5, snap(rank(0, k, 0.1), rank(1, k, 0.1)))
    assert abs(act.cpu_share(0) - 1.0) < 1e-9 and act.cpu_share(1) < 0.05
    assert act.io_rate(0) == 0 and abs(act.io_rate(1) - 2**20) < 2**10
    act.observe(4.0, snap(rank(0, 8, 0.1, pid=555)))  # rank 0 restarted, rank 1 gone
    assert act.ranks() == [0] and math.isnan(act.cpu_share(0)) and act.pids[0] == 555


def py_dump(*frames: str, status: str = "idle") -> str:
    body = "\n".join(f"    {f}" for f in frames)
    return f"Process 1: python x.py\nPython v3.11.7 (/usr/bin/python3)\n\nThread 1 ({status}): \"MainThread\"\n{body}\n"


def view(r: int, *frames: str, status: str = "idle") -> RankView:
    return RankView(r, 100 + r, False, parse_dump(py_dump(*frames, status=status)), 7)


WAITING = ("all_reduce (torch/distributed/distributed_c10d.py:2501)", "train (job.py:40)")


def test_known_pauses_are_io_loading_evaluation_and_computing_never_a_collective() -> None:
    fake = FakeProc()
    act = fake.activity()
    for k in range(5):
        fake.cpu |= {100: 0.0, 101: 0.9 * k * 0.5}
        fake.io |= {100: 0, 101: 0}
        act.observe(k * 0.5, snap(rank(0, 3, k), rank(1, 3, k)))
    computing = view(1, "forward (model.py:10)", "train (job.py:30)")
    assert "rank 1 computing (0.9 cores)" in known_pause([view(0, *WAITING), computing], act)  # type: ignore[operator]
    loading = view(1, "get (queue.py:180)", "__next__ (torch/utils/data/dataloader.py:631)", "train (job.py:20)")
    assert "rank 1 waiting for its data loader" in known_pause([view(0, *WAITING), loading], None)  # type: ignore[operator]
    evaluating = view(1, "forward (model.py:10)", "evaluate (job.py:55)")
    assert "rank 1 evaluating" in known_pause([view(0, *WAITING), evaluating], None)  # type: ignore[operator]
    # the real hangs: an idle rank outside any collective (it left the schedule), or everyone in a collective
    idle = view(1, "sleep (time.py:1)", "next_batch_after_bad_one (job.py:88)", "train (job.py:30)")
    fake.cpu[101] = fake.cpu[101]  # rank 1 stops computing
    for k in range(5, 12):
        act.observe(k * 0.5, snap(rank(0, 3, k), rank(1, 3, k)))
    assert known_pause([view(0, *WAITING), idle], act) is None
    assert known_pause([view(0, *WAITING), view(1, "recv (torch/distributed/distributed_c10d.py:2100)")], act) is None
    # a rank on a CPU when dumped but idle until then (its batch just came after a loader stall): computing
    resumed = view(1, "compute (job.py:70)", "train (job.py:30)", status="active")
    assert "rank 1 computing (on a CPU when dumped)" in known_pause([view(0, *WAITING), resumed], act)  # type: ignore[operator]
    in_collective = view(1, "all_reduce (torch/distributed/distributed_c10d.py:2501)", status="active")
    assert known_pause([view(0, *WAITING), in_collective], act) is None  # spinning in a collective is no pause


def test_before_any_beat_the_records_own_average_stands_in() -> None:
    """Five 50 ms steps all between two looks: no beat seen, but the record says 5 steps in 0.25 s since it began."""
    rhythm = Rhythm(floor_s=8.0)
    first = dataclasses.replace(rank(0, 5, 1.0), started_age_s=1.25)
    rhythm.observe(10.0, snap(first))
    assert not rhythm.learned and rhythm.boot_s == 0.05 and rhythm.threshold_s() == 8.0
    slow = dataclasses.replace(rank(0, 3, 1.0), started_age_s=31.0)  # 10 s steps: 2 x 1.5 x 10 s
    rhythm2 = Rhythm(floor_s=8.0)
    rhythm2.observe(40.0, snap(slow))
    assert rhythm2.threshold_s() == 30.0
