"""Acceptance: triage on the logs the twin writes for prometheus-unbound, checked against the twin's truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldaisle.triage.analyze import TriageResult, triage
from coldaisle.triage.interface import StampClock


@pytest.fixture(scope="module")
def result(unbound: tuple[Path, list]) -> TriageResult:
    return triage([unbound[0]])


@pytest.fixture(scope="module")
def watchdog(unbound_watchdog: tuple[Path, list]) -> TriageResult:
    return triage([unbound_watchdog[0]])


def _hyp(r: TriageResult, kind: str):  # type: ignore[no-untyped-def]
    found = [h for h in r.hypotheses if h.kind == kind]
    assert found, f"no {kind} hypothesis in {[h.title for h in r.hypotheses]}"
    return found[0]


def test_memory_chain_on_node_gpu_102_in_order_with_true_spacing(result: TriageResult, unbound) -> None:
    h = _hyp(result, "memory")
    assert h.origin == "node-gpu-102" and h.confidence == "high"
    classes = [e.cls for e in h.evidence]
    for a, b in [("page_alloc_failure", "oom_kill"), ("oom_kill", "hung_task"), ("hung_task", "xid"),
                 ("xid", "kernel_panic")]:
        assert classes.index(a) < classes.index(b)
    assert next(e for e in h.evidence if e.cls == "xid").fields["xid"] == 79
    # kern.log as rsyslog writes it: each line's syslog stamp dates the printk uptime, so the chain is on UTC
    truth = {e.cls: e.time for e in unbound[1] if e.host == "node-gpu-102" and e.source == "kernel"}
    seen = {e.cls: e.uptime for e in h.evidence}
    assert all(e.clock != StampClock.UPTIME for e in h.evidence)
    for cls in ("oom_kill", "hung_task", "xid", "kernel_panic"):
        assert seen[cls] - seen["page_alloc_failure"] == pytest.approx(truth[cls] - truth["host_swap"], abs=1e-3)
    utc = {e.cls: e.time for e in h.evidence}
    for cls in ("oom_kill", "hung_task", "xid", "kernel_panic"):
        assert utc[cls] == pytest.approx(truth[cls], abs=1.0)


def test_node_gpu_88_named_origin_of_the_collective_failure(result: TriageResult) -> None:
    h = _hyp(result, "collective")
    assert h.origin == "node-gpu-88" and h.confidence == "high"
    assert "lowest collective count" in h.title and "hardware fault" in h.title
    assert h.evidence[0].cls == "pcie_aer" and h.evidence[0].fields["pci"] == "0000:b1:00.0"
    assert any(e.cls == "nccl_op_trace" and e.host == "node-gpu-88" for e in h.evidence)
    assert h.blast_radius >= 128
    # the 03:04 stall of the 512-GPU job came first and reached every node: it leads the ranking
    assert result.hypotheses[0] is h


def test_bootstrap_44_to_45_with_peer_resolved_from_nccl_init(result: TriageResult) -> None:
    h = _hyp(result, "bootstrap")
    assert "node-gpu-44" in h.title and "node-gpu-45" in h.title and "54321" in h.title
    assert h.evidence[0].host == "node-gpu-44" and h.evidence[0].fields["peer"] == "node-gpu-45"


def test_follow_on_throttling_grouped_with_true_times(result: TriageResult, unbound) -> None:
    truth = sorted(e.time for e in unbound[1] if e.cls == "thermal_slowdown")
    groups = [g for g in result.groups if g.cls == "thermal_throttle_gpu"]
    big = max(groups, key=lambda g: g.count)
    assert big.count >= 500 and len(big.hosts) == 128  # hundreds of lines, one row, every node listed
    assert big.first.time == pytest.approx(truth[0], abs=1.0)
    assert sum(g.count for g in groups) == len(truth)


def test_absolute_events_carry_the_twins_utc_times(result: TriageResult, unbound) -> None:
    truth = {e.cls: e.time for e in unbound[1]}
    got = {h.cls: h.time for h in result.hits}
    assert got["power_event"] == pytest.approx(truth["emergency_power_off"], abs=0.01)
    assert got["job_start"] == pytest.approx(truth["job_start"], abs=0.01)
    assert got["job_failed"] == pytest.approx(truth["job_end"], abs=0.01)


def test_watchdog_storm_grouped_and_traced_to_node_gpu_88(watchdog: TriageResult, unbound_watchdog) -> None:
    timeouts = [e for e in unbound_watchdog[1] if e.cls == "nccl_watchdog_timeout"]
    assert len(timeouts) > 400
    rows = [g for g in watchdog.groups if g.cls == "nccl_watchdog_timeout"]
    assert len(rows) == 1 and rows[0].count == len(timeouts)
    assert len(rows[0].hosts) == len({e.host for e in timeouts})
    h = _hyp(watchdog, "collective")
    assert h.origin == "node-gpu-88" and h.confidence == "high"
    assert "never timed out" in h.title
    assert watchdog.hypotheses.index(h) < 2
