"""Fail-slow scoring and the cross-node agreement, without processes: /proc readings and the store injected."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from coldaisle.guard.heartbeat import HeartbeatSnapshot, RankHeartbeat
from coldaisle.guard.peers import JobNodes, Peers
from coldaisle.guard.ranks import Placement
from coldaisle.guard.rhythm import RankActivity, RankSample
from coldaisle.guard.straggler import StragglerWatch, gpu_of, per_step, read_scores, scores
from coldaisle.guard.watch import Look
from coldaisle.telemetry.clock import SimClock


def test_score_is_the_share_of_its_step_the_peers_did_not_need() -> None:
    got = scores({0: 0.5, 1: 0.7, 2: 0.5, 3: 0.5}, {r: 0.7 for r in range(4)})
    assert got[1] == pytest.approx(1 - 0.5 / 0.7, abs=1e-4) and got[0] == got[2] == got[3] == 0.0
    # ranks that step independently: the slow one is slow by its step time too
    assert scores({0: 1.0, 1: 1.0}, {0: 1.0, 1: 2.0})[1] == 0.5
    assert scores({0: 0.0, 1: math.nan}, {0: 1.0, 1: 1.0}) == {0: 0.0, 1: 0.0}  # nothing known: nothing said


def test_per_step_leaves_a_checkpoint_out() -> None:
    samples, cpu, t = [], 0.0, 0.0
    for step in range(20):
        extra = 25.0 if step == 10 else 0.0  # one step ends after a 25 s checkpoint on this rank
        t += 0.5 + extra
        cpu += 0.4 + extra * 0.8
        samples.append(RankSample(t, cpu, 0.0, step))
    work, wall = per_step(samples, since=0.0)  # type: ignore[misc]
    assert work == pytest.approx(0.4) and wall == pytest.approx(0.5)
    assert per_step(samples[:3], since=0.0) is None  # two steps are not enough to judge


def test_per_step_leaves_pauses_out_even_when_they_fill_most_of_the_window() -> None:
    """Twenty 0.5 s steps, then three 25 s pauses one step apart (a checkpoint writer's CPU runs through them):
    most spans hold a pause, so only the quickest span can say what a step is."""
    samples, cpu, t, step = [], 0.0, 0.0, 0
    for pause in [0.0] * 20 + [25.0, 25.0, 25.0]:
        for _ in range(int(pause / 0.5)):  # looks during the pause: no step, CPU burnt writing
            t, cpu = t + 0.5, cpu + 0.4
            samples.append(RankSample(t, cpu, 0.0, step))
        t, cpu, step = t + 0.5, cpu + 0.4, step + 1
        samples.append(RankSample(t, cpu, 0.0, step))
    work, wall = per_step(samples, since=0.0)  # type: ignore[misc]
    assert work == pytest.approx(0.4) and wall == pytest.approx(0.5)
    assert per_step(samples[:8], since=0.0) is None  # seven steps: too few to compare ranks by


def test_per_step_is_not_fooled_by_looks_that_fall_between_step_boundaries() -> None:
    """0.7 s steps seen every 0.5 s: a look-to-look median would say 0.5 s and hide the slow rank's extra work."""
    slow, fast = [], []
    for i in range(1, 61):
        t = 0.5 * i
        step, into = divmod(t, 0.7)
        slow.append(RankSample(t, t, 0.0, int(step)))  # busy all the time: 0.7 s of CPU per step
        fast.append(RankSample(t, 0.5 * step + min(into, 0.5), 0.0, int(step)))  # 0.5 s of CPU, then waits
    (w1, s1), (w0, s0) = per_step(slow, since=0.0), per_step(fast, since=0.0)  # type: ignore[misc]
    assert s1 == pytest.approx(0.7, rel=0.05) and s0 == pytest.approx(0.7, rel=0.05)
    assert w1 == pytest.approx(0.7, rel=0.05) and w0 == pytest.approx(0.5, rel=0.05)
    assert scores({0: w0, 1: w1}, {0: s0, 1: s1})[1] == pytest.approx(1 - 0.5 / 0.7, abs=0.03)


def test_the_gpu_of_a_rank_follows_torch_s_convention() -> None:
    assert gpu_of({"LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "4,5,6,7"}, True) == "5"
    assert gpu_of({"LOCAL_RANK": "0", "CUDA_VISIBLE_DEVICES": "GPU-8c1e"}, True) == "GPU-8c1e"
    assert gpu_of({"LOCAL_RANK": "3"}, True) == "3" and gpu_of({"LOCAL_RANK": "3"}, False) == ""


def hb(r: int, step: int) -> RankHeartbeat:
    return RankHeartbeat(f"rank-{r}.hb", 100 + r, r, step, 0.0, 0.1, math.nan, math.nan, math.nan, math.nan, 0)


def test_a_rank_that_stays_slow_is_named_once_published_and_a_fast_one_never(tmp_path: Path) -> None:
    cpu: dict[int, float] = {100: 0.0, 101: 0.0}
    act = RankActivity(cpu=cpu.get, io=lambda _p: 0)
    said: list[str] = []
    watch = StragglerWatch(act, said.append, host="node-a", gpus=str, every_s=5.0, window_s=30.0,
                           sustain=3, out=lambda: tmp_path, wall=lambda: 1_800_000_000.0)
    now = 0.0
    for step in range(120):  # 0.5 s steps; rank 1 works 0.7 s of CPU per step, rank 0 0.5 s and waits
        now += 0.5
        cpu[100] += 0.5 * 0.5 / 0.7
        cpu[101] += 0.5
        snap = HeartbeatSnapshot((hb(0, step), hb(1, step)), ())
        act.observe(now, snap)
        watch.look(Look(now, 1_800_000_000.0 + now, snap, list))
    assert list(watch.named) == [1] and len(said) == 1 and "straggler: rank 1 on node-a GPU 1" in said[0]
    assert watch.latest[1].score == pytest.approx(1 - 0.5 / 0.7, abs=0.02) and watch.latest[0].score == 0.0
    ev = watch.evidence()
    assert ev["stragglers_named"][0]["rank"] == 1 and ev["stragglers_named"][0]["gpu"] == "1"
    published = read_scores(tmp_path, now=lambda: 1_800_000_001.0)
    assert [(s.rank, s.host) for s in published] == [(0, "node-a"), (1, "node-a")]
    assert read_scores(tmp_path, now=lambda: 1_800_000_100.0) == []  # stale: the supervisor is gone


# -- the agreement across nodes --------------------------------------------------------------------------------


class DictStore:
    """An in-memory stand-in for the job's TCPStore (set/get/check), shared by the supervisors of a test."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def set(self, key: str, value: str | bytes) -> None:
        self.data[key] = value.encode() if isinstance(value, str) else value

    def get(self, key: str) -> bytes:
        return self.data[key]

    def check(self, keys: list[str]) -> bool:
        return all(k in self.data for k in keys)


def nodes(node: int, n: int = 2) -> JobNodes:
    return JobNodes(node, n, ("127.0.0.1", 29500), "none-0", f"host{node}")


def placed(rank: int, node: int, activity: str, op: str) -> Placement:
    return Placement(rank, 1000 + rank, activity, op, f"{op} (x.py:1)", 12, False, f"host{node}", str(rank % 8), node)


def test_job_nodes_come_from_torchrun_or_slurm_and_one_node_is_none() -> None:
    env = {"GROUP_RANK": "1", "GROUP_WORLD_SIZE": "4", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500",
           "TORCHELASTIC_RUN_ID": "abc", "TORCHELASTIC_RESTART_COUNT": "2"}
    got = JobNodes.from_env(env)
    assert got is not None and (got.node, got.nnodes, got.master, got.run) == (1, 4, ("10.0.0.1", 29500), "abc-2")
    slurm = {"SLURM_NODEID": "0", "SLURM_NNODES": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1", "SLURM_JOB_ID": "7"}
    assert JobNodes.from_env(slurm).run == "7"  # type: ignore[union-attr]
    assert JobNodes.from_env({**env, "GROUP_WORLD_SIZE": "1"}) is None
    assert JobNodes.from_env({"RANK": "0"}) is None


def test_two_supervisors_pool_their_ranks_and_name_the_same_straggler() -> None:
    store, clock = DictStore(), SimClock(start_wall=1_800_000_000.0)
    a = Peers(nodes(0), clock, print, store=lambda: store, wait_s=5.0)
    b = Peers(nodes(1), clock, print, store=lambda: store, wait_s=5.0)
    b._set("hang", {"placements": [placed(1, 1, "other", "next_batch").as_dict()]})  # node 1 posted first
    agreed_a = a.agree([placed(0, 0, "collective", "all_reduce")])
    agreed_b = b.agree([placed(1, 1, "other", "next_batch")])
    for agreed in (agreed_a, agreed_b):
        assert [p.rank for p in agreed.analysis.waiting] == [0] and [p.rank for p in agreed.analysis.stragglers] == [1]
        assert agreed.straggler_nodes == {1} and agreed.nodes == (0, 1) and agreed.missing == ()
    assert "rank 1 (pid 1001) on node 1 (host1) GPU 1 not in the collective" in agreed_a.analysis.summary()
    assert store.check(["coldaisle/none-0/read/0", "coldaisle/none-0/read/1"])


def test_a_peer_still_progressing_holds_the_hang_back_and_a_silent_one_does_not() -> None:
    store, clock = DictStore(), SimClock(start_wall=1_800_000_000.0)
    a = Peers(nodes(0), clock, print, store=lambda: store)
    b = Peers(nodes(1), clock, print, store=lambda: store)
    b.publish(0.0, 0.4, suspect=False)
    assert a.others_progressing() == [1]
    clock.sleep(7.0)  # b said nothing for three publishing periods: busy agreeing, or gone
    assert a.others_progressing() == []
    b.publish(7.0, 9.0, suspect=True)
    assert a.others_progressing() == []


def test_without_the_store_each_node_judges_alone_and_says_so() -> None:
    said: list[str] = []
    clock = SimClock(start_wall=1_800_000_000.0)

    def unreachable() -> DictStore:
        raise ConnectionRefusedError("connection refused")

    peers = Peers(nodes(0), clock, said.append, store=unreachable, wait_s=5.0)
    t0 = time.monotonic()
    agreed = peers.agree([placed(0, 0, "collective", "all_reduce")])
    assert agreed.nodes == (0,) and agreed.missing == (1,) and time.monotonic() - t0 < 1.0
    assert len(said) == 1 and "cannot reach the job's rendezvous store at 127.0.0.1:29500" in said[0]
    assert json.dumps(agreed.evidence())  # the verdict's evidence stays plain data
