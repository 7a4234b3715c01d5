"""One clock for many nodes: real formats from several sources, boot times, years, skew and groups."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coldaisle.triage.analyze import triage
from coldaisle.triage.hostlist import compact
from coldaisle.triage.interface import StampClock


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _write(path: Path, lines: list[str], mtime: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    if mtime:
        os.utime(path, (utc(mtime), utc(mtime)))


def test_syslog_uptime_dates_the_raw_dmesg_of_the_same_host(tmp_path: Path) -> None:
    _write(tmp_path / "node-a1" / "kern.log", [
        "May 21 03:04:00 node-a1 kernel: [259436.742190] nvidia 0000:b1:00.0: AER: PCIe Bus Error: "
        "severity=Corrected, type=Physical Layer, (Receiver ID)"], mtime="2026-01-02T00:00:00")
    _write(tmp_path / "node-a1" / "dmesg.txt", [
        "[259500.000000] NVRM: Xid (PCI:0000:b1:00): 79, pid=1, name=python3, GPU has fallen off the bus."])
    _write(tmp_path / "slurmctld.log", ["[2024-05-21T03:00:00.000] sched: Allocate JobId=7 NodeList=node-a1 "
                                        "#CPUs=8 Partition=gpu"])
    r = triage([tmp_path])
    aer = next(h for h in r.hits if h.cls == "pcie_aer")
    xid = next(h for h in r.hits if h.cls == "xid")
    assert aer.time == utc("2024-05-21T03:04:00")  # the year comes from the corpus, not the file's 2026 mtime
    assert xid.clock == StampClock.BOOT and xid.host == "node-a1"
    assert xid.time == pytest.approx(utc("2024-05-21T03:04:00") + (259500.0 - 259436.742190), abs=1e-3)
    assert r.clocks["node-a1"].boot_time == pytest.approx(utc("2024-05-21T03:04:00") - 259436.742190)


def test_rtc_line_dates_a_dmesg_on_its_own(tmp_path: Path) -> None:
    _write(tmp_path / "node-b2.dmesg", [
        "[    1.020311] rtc_cmos 00:00: setting system clock to 2024-05-18T02:56:25 UTC (1716000985)",
        "[  120.500000] watchdog: BUG: soft lockup - CPU#3 stuck for 22s! [python3:4242]"])
    r = triage([tmp_path])
    lock = next(h for h in r.hits if h.cls == "soft_lockup")
    assert lock.host == "node-b2" and lock.time == pytest.approx(1716000985 - 1.020311 + 120.5)


def test_year_wraps_at_new_year(tmp_path: Path) -> None:
    _write(tmp_path / "node-c3" / "syslog", [
        "Dec 31 23:59:58 node-c3 kernel: [ 9.000000] CPU2: Core temperature above threshold, cpu clock throttled "
        "(total events = 1)"])
    _write(tmp_path / "slurmctld.log", ["[2025-01-01T00:00:05.000] error: Nodes node-c3 not responding"])
    r = triage([tmp_path])
    assert next(h for h in r.hits if h.cls == "thermal_throttle_cpu").time == utc("2024-12-31T23:59:58")


def _timeouts(host: str, ranks: range, when: str, seq: int) -> list[str]:
    return [f"[rank{r}]:[E{when} ProcessGroupNCCL.cpp:616] [Rank {r}] Watchdog caught collective operation "
            f"timeout: WorkNCCL(SeqNum={seq}, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran "
            "for 600020 milliseconds before timing out." for r in ranks]


def test_512_timeouts_become_one_row_and_skew_is_estimated(tmp_path: Path) -> None:
    for n in range(128):
        ahead = n == 7  # node-007's clock runs 30 s fast
        lines = []
        for k, seq in enumerate((101, 202, 303)):
            minute = f"{10 + 20 * k:02d}"
            second = "30" if ahead else "00"
            lines += _timeouts(f"node-{n:03d}", range(4 * n, 4 * n + 4), f"521 03:{minute}:{second}.5", seq)
        _write(tmp_path / f"node-{n:03d}" / "train.err", lines)
    _write(tmp_path / "slurmctld.log", ["[2024-05-21T03:00:00.000] sched: Allocate JobId=7 NodeList=node-[000-127]"
                                        " #CPUs=8 Partition=gpu"])
    r = triage([tmp_path])
    rows = [g for g in r.groups if g.cls == "nccl_watchdog_timeout"]
    assert [g.count for g in rows] == [512, 512, 512]  # one row per incident, split by the 20 min pauses
    assert compact(rows[0].hosts) == "node-[000-127]"
    assert rows[0].first.time == pytest.approx(utc("2024-05-21T03:10:00.5"))
    assert r.clocks["node-007"].skew_s == pytest.approx(30.0) and r.clocks["node-007"].skew_shared_events == 3
    assert r.clocks["node-001"].skew_s == pytest.approx(0.0)
    aligned = triage([tmp_path], align_clocks=True)
    assert {h.time for h in aligned.hits if h.host == "node-007" and h.cls == "nccl_watchdog_timeout"} == {
        utc("2024-05-21T03:10:00.5"), utc("2024-05-21T03:30:00.5"), utc("2024-05-21T03:50:00.5")}


def test_journal_json_and_coldaisle_events(tmp_path: Path) -> None:
    msg = "NVRM: Xid (PCI:0000:18:00): 48, pid=77, name=python3, An uncorrectable double bit error"
    recs = [{"__REALTIME_TIMESTAMP": "1716260645000000", "__MONOTONIC_TIMESTAMP": "259000000000",
             "_TRANSPORT": "kernel", "_HOSTNAME": "node-d4", "SYSLOG_IDENTIFIER": "kernel", "MESSAGE": msg},
            {"__REALTIME_TIMESTAMP": "1716260646000000", "_HOSTNAME": "node-d4", "MESSAGE":
             list(b"Kernel panic - not syncing: Fatal \xff exception")}]
    _write(tmp_path / "journal.json", [json.dumps(r) for r in recs])
    r = triage([tmp_path])
    xid, panic = (next(h for h in r.hits if h.cls == c) for c in ("xid", "kernel_panic"))
    assert (xid.host, xid.time, xid.fields["xid"], xid.raw) == ("node-d4", 1716260645.0, 48, msg)
    assert r.clocks["node-d4"].boot_time == pytest.approx(1716260645.0 - 259000.0)
    assert panic.time == 1716260646.0 and "Fatal" in panic.raw


def test_sensor_csv_long_and_wide(tmp_path: Path) -> None:
    _write(tmp_path / "sensors.csv", ["time,sensor,celsius", "2024-05-21T03:00:00Z,rack4-shelf2,22.1",
                                      "2024-05-21T03:05:00Z,rack4-shelf2,45.0", "garbage,row,here"])
    _write(tmp_path / "aisle.csv", ["timestamp,cold_aisle_c,hot_aisle_c", "1716260400,18.0,35.5",
                                    "1716260700,42.0,61.0"])
    r = triage([tmp_path])
    peaks = {s.sensor: s.celsius for s in sorted(r.reading.samples, key=lambda s: s.celsius)}
    assert peaks == {"rack4-shelf2": 45.0, "cold_aisle_c": 42.0, "hot_aisle_c": 61.0}


def test_dcgm_diag_table(tmp_path: Path) -> None:
    _write(tmp_path / "node-e5" / "dcgmi-diag.txt", [
        "+---------------------------+------------------------------------------------+",
        "| Diagnostic                | Result                                         |",
        "+===========================+================================================+",
        "| Denylist                  | Pass                                           |",
        "| PCIe                      | Fail - All                                     |",
        "| Memory                    | Pass                                           |"])
    r = triage([tmp_path])
    assert [(h.host, h.cls, h.fields["test"]) for h in r.alarms] == [("node-e5", "dcgm_diag_fail", "PCIe")]
