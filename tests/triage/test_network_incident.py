"""Root cause of a network incident from real formats (tests/data/triage/network-incident/README.md).

gpu-n03's InfiniBand port goes down and flaps at 02:14:07.4; its peers' NCCL logs name it within seconds; ten
minutes later every rank's watchdog times out on the same collective. Earlier, a corrected AER report on
gpu-n01 and an unrelated OOM kill on gpu-n02. gpu-n03's clock runs 40 s fast. The top hypothesis must be
gpu-n03 and its link, at the time of the first link-down.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from coldaisle.triage.analyze import TriageResult, triage

INCIDENT = Path(__file__).resolve().parents[1] / "data" / "triage" / "network-incident"
LINK_DOWN = datetime(2025, 3, 4, 2, 14, 7, 412000, tzinfo=UTC).timestamp()
TIMEOUTS = datetime(2025, 3, 4, 2, 24, 8, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module", params=[False, True], ids=["clocks-as-logged", "align-clocks"])
def result(request: pytest.FixtureRequest) -> TriageResult:
    return triage([INCIDENT], align_clocks=request.param)


def test_every_format_was_read(result: TriageResult) -> None:
    seen = {(h.host, Path(h.file).name, h.cls) for h in result.alarms}
    assert ("gpu-n03", "dmesg.txt", "ib_link_down") in seen  # dmesg -T
    assert ("gpu-n03", "journal.json", "ib_link_down") in seen  # journalctl -o json, systemd-networkd
    assert ("gpu-n02", "journal.txt", "oom_kill") in seen  # journalctl -o short-iso
    assert ("gpu-n01", "kern.log", "pcie_aer") in seen  # rsyslog file, no year
    assert {h.host for h in result.alarms if h.cls == "nccl_watchdog_timeout"} == {f"gpu-n0{i}" for i in range(1, 5)}
    assert sum(h.cls == "nccl_watchdog_timeout" for h in result.alarms) == 32
    assert {str(h.fields.get("peer")) for h in result.alarms if h.cls == "nccl_network_error"} == {"gpu-n03"}


def test_the_skewed_clock_is_found(result: TriageResult) -> None:
    clock = result.clocks["gpu-n03"]
    assert clock.skew_s == pytest.approx(40.0, abs=0.5) and clock.trusted_skew is not None
    assert all(c.trusted_skew is None for host, c in result.clocks.items() if host != "gpu-n03")


def test_top_hypothesis_is_gpu_n03_and_its_link_at_the_first_link_down(result: TriageResult) -> None:
    top = result.hypotheses[0]
    assert (top.kind, top.origin, top.confidence) == ("collective", "gpu-n03", "high")
    assert "ibp193s0 link down" in top.title and "named by 3 peers" in top.title
    assert top.evidence[0].cls == "ib_link_down" and top.evidence[0].host == "gpu-n03"
    assert top.time == pytest.approx(LINK_DOWN, abs=1.0)  # on the common clock, not gpu-n03's
    assert top.time < TIMEOUTS - 590  # ten minutes ahead of the timeouts
    assert {"gpu-n01", "gpu-n02", "gpu-n03", "gpu-n04"} <= set(top.affected)


def test_distractors_rank_below(result: TriageResult) -> None:
    kinds = [(h.kind, h.origin) for h in result.hypotheses]
    assert ("memory", "gpu-n02") in kinds[1:]  # the unrelated OOM kill is a hypothesis of its own, lower
    aer = [h for h in result.alarms if h.cls == "pcie_aer"]
    assert aer and all(h.host == "gpu-n01" and h.time < LINK_DOWN - 900 for h in aer)
    assert result.hypotheses[0].origin != "gpu-n01" and all(h.origin != "gpu-n01" for h in result.hypotheses[:1])


def test_naively_ordered_the_link_down_would_come_last() -> None:
    """The test means something: on gpu-n03's own clock its link-down is after the peers' first errors."""
    raw = triage([INCIDENT])
    first_down = min(h.time for h in raw.hits if h.cls == "ib_link_down" and h.file.endswith("dmesg.txt"))
    first_peer = min(h.time for h in raw.hits if h.cls == "nccl_network_error")
    assert first_down > first_peer + 30
    assert datetime.fromtimestamp(first_down, UTC).strftime("%H:%M:%S") == "02:14:47"
