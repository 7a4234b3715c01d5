"""The verdict thresholds, without processes: hang from heartbeat ages, runaway from a memory trend."""

from __future__ import annotations

import math

from coldaisle.guard.heartbeat import HeartbeatSnapshot, RankHeartbeat
from coldaisle.guard.watch import HangWatch, MemoryWatch, VerdictKind

MiB = 2**20


def rank(r: int, age_s: float) -> RankHeartbeat:
    return RankHeartbeat(f"rank-{r}.hb", 100 + r, r, 7, 0.0, age_s, math.nan, math.nan, math.nan, math.nan, 0)


def test_hang_needs_every_rank_silent() -> None:
    watch = HangWatch(10.0)
    assert watch.check(HeartbeatSnapshot((), ())) is None  # never reported: not judged from heartbeats
    assert watch.check(HeartbeatSnapshot((rank(0, 30.0), rank(1, 2.0)), ())) is None
    verdict = watch.check(HeartbeatSnapshot((rank(0, 30.0), rank(1, 12.0)), ()))
    assert verdict is not None and verdict.kind == VerdictKind.HANG
    assert verdict.evidence["freshest_age_s"] == 12.0 and set(verdict.evidence["ranks"]) == {"0", "1"}


def test_memory_projection_fires_when_exhaustion_is_nearer_than_the_lead() -> None:
    watch = MemoryWatch(1000 * MiB, lead_s=5.0)
    verdicts = [watch.add(t, 100 * MiB + t * 50 * MiB) for t in range(20)]  # 50 MiB/s
    first = next(i for i, v in enumerate(verdicts) if v is not None)
    assert first == 13  # 750 MiB used, 250 MiB left: 5 s at 50 MiB/s, no longer more than the lead
    evidence = verdicts[first].evidence  # type: ignore[union-attr]
    assert evidence["growth_bytes_per_s"] == 50 * MiB and evidence["time_to_limit_s"] == 5.0


def test_flat_or_shrinking_memory_is_left_alone_until_the_limit() -> None:
    watch = MemoryWatch(1000 * MiB, lead_s=5.0)
    assert all(watch.add(t, 900 * MiB - t * MiB) is None for t in range(10))
    verdict = watch.add(10, 1000 * MiB)
    assert verdict is not None and verdict.kind == VerdictKind.RUNAWAY_MEMORY
