"""The twin's log lines match the formats real software prints, and land where real nodes keep them."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from coldaisle.sim.events import EventClass
from coldaisle.sim.logs import (
    JSONL,
    LogWriter,
    SensorCsvWriter,
    dmesg_prefix,
    host_ip,
    log_path,
    nvrm_pci,
    pci_bus_id,
    render,
)
from coldaisle.telemetry.events import Event, Severity

T = datetime(2024, 5, 21, 3, 4, 0, 412105, tzinfo=UTC).timestamp()
BOOT = T - 259200.412105
# rsyslog's traditional kern.log line: "May 21 03:04:00 node-gpu-44 kernel: " then printk's uptime stamp
DMESG = r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d [\w.-]+ kernel: \[\s*\d+\.\d{6}\] "
NCCL = r"^node-gpu-44:12849:12950 \[0\] "

# class -> (source, fields, regexes a log parser would use; each must match some rendered line)
EXAMPLES: dict[EventClass, tuple[str, dict[str, Any], list[str]]] = {
    EventClass.JOB_START: ("slurm", {"job": "omni", "job_id": 4242, "nodes": 128, "user": "research"}, [
        r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\] sched: Allocate JobId=4242 NodeList=node-gpu-\[01-128\] "
        r"#CPUs=\d+ Partition=\w+$"]),
    EventClass.JOB_END: ("slurm", {"job": "omni", "job_id": 4242, "state": "COMPLETED"}, [
        r"\] _job_complete: JobId=4242 WEXITSTATUS 0$", r"\] _job_complete: JobId=4242 done$"]),
    EventClass.NCCL_INIT: ("nccl", {"pid": 12849, "tid": 12950, "rank": 0, "gpu": 0, "job": 4242}, [
        NCCL + r"NCCL INFO Bootstrap : Using eth0:10\.0\.0\.44<0>$",
        NCCL + r"NCCL INFO NET/IB : Using \[0\]mlx5_0:1/RoCE \[1\]mlx5_1:1/RoCE",
        NCCL + r"NCCL INFO ncclCommInitRank comm 0x[0-9a-f]+ rank 0 nranks \d+ cudaDev 0 .* Init COMPLETE$"]),
    EventClass.PCIE_AER: ("kernel", {"pci": "0000:b0:01.1", "device_pci": "0000:b1:00.0", "gpu": 2,
                                     "kind": "Corrected", "error": "Physical Layer", "status": "0x00000001"}, [
        DMESG + r"pcieport 0000:b0:01\.1: AER: Corrected error received: 0000:b1:00\.0$",
        DMESG + r"nvidia 0000:b1:00\.0: AER: PCIe Bus Error: severity=Corrected, type=Physical Layer, "
                r"\(Receiver ID\)$",
        DMESG + r"nvidia 0000:b1:00\.0: AER:   device \[10de:[0-9a-f]{4}\] error status/mask=00000001/[0-9a-f]{8}$",
        DMESG + r"nvidia 0000:b1:00\.0: AER:    \[ 0\] RxErr\s+\(First\)$"]),
    EventClass.COLLECTIVE_STALL: ("nccl", {"pid": 12849, "tid": 12950, "rank": 3, "gpu": 0, "job": 4242,
                                           "op": "ALLREDUCE", "seq": 4001}, [
        NCCL + r"NCCL INFO AllReduce: opCount fa1 sendbuff 0x[0-9a-f]+ recvbuff 0x[0-9a-f]+ count \d+ "
               r"datatype \d+ op \d+ root \d+ comm 0x[0-9a-f]+ \[nranks=\d+\] stream 0x[0-9a-f]+$"]),
    EventClass.NCCL_WATCHDOG_TIMEOUT: ("torch", {"rank": 3, "pid": 12849, "op": "ALLREDUCE", "seq": 4001,
                                                 "timeout_ms": 600000, "ran_ms": 600012, "job": 4242}, [
        r"^\[rank3\]:\[E\d{3,4} \d\d:\d\d:\d\d\.\d{9} ProcessGroupNCCL\.cpp:\d+\] \[Rank 3\] Watchdog caught "
        r"collective operation timeout: WorkNCCL\(SeqNum=4001, OpType=ALLREDUCE, NumelIn=\d+, NumelOut=\d+, "
        r"Timeout\(ms\)=600000\) ran for 600012 milliseconds before timing out\.$",
        r"\[PG ID 0 PG GUID 0\(default_pg\) Rank 3\] Exception \(either an error or timeout\) detected by watchdog "
        r"at work: 4001, last enqueued NCCL work: 4001, last completed NCCL work: 4000\.$"]),
    EventClass.NCCL_BOOTSTRAP_TIMEOUT: ("nccl", {"pid": 12849, "tid": 12950, "gpu": 0, "peer": "node-gpu-45",
                                                 "port": 54321, "job": 4242}, [
        NCCL + r"[\w/]+\.cc:\d+ NCCL WARN socketStartConnect: Connect to 10\.0\.0\.45<54321> failed : "
               r"Connection timed out$"]),
    EventClass.CUDA_OOM: ("torch", {"pid": 12849, "rank": 3, "gpu": 0, "tried_bytes": 2 << 30,
                                    "total_bytes": int(79.1 * (1 << 30)), "free_bytes": 300 << 20,
                                    "allocated_bytes": 75 << 30}, [
        r"^\[rank3\]: (torch\.(cuda\.)?)?OutOfMemoryError: CUDA out of memory\. Tried to allocate 2\.00 GiB\. "
        r"GPU 0 has a total capacity of 79\.10 GiB of which 300\.00 MiB is free\. .*Of the allocated memory "
        r"75\.00 GiB is allocated by PyTorch"]),
    EventClass.HOST_SWAP: ("kernel", {"pid": 12849, "process": "python3", "spilled_bytes": 8 << 30}, [
        DMESG + r"python3: page allocation failure: order:\d+, mode:0x[0-9a-f]+\(GFP_\w+"]),
    EventClass.HUNG_TASK: ("kernel", {"pid": 12849, "process": "python3", "seconds": 120}, [
        DMESG + r"INFO: task python3:12849 blocked for more than 120 seconds\.$",
        DMESG + r"\s+Tainted: P\s+OE\s+5\.15\.0-101-generic #111-Ubuntu$",
        DMESG + r'"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message\.$',
        DMESG + r"task:python3\s+state:D stack:\s*\d+ pid:\s*12849 ppid:\s*\d+ flags:0x[0-9a-f]{8}$",
        DMESG + r"Call Trace:$"]),
    EventClass.OOM_KILL: ("kernel", {"pid": 12849, "process": "python3", "score": 999,
                                     "anon_rss_kb": 52428800}, [
        DMESG + r"python3 invoked oom-killer: gfp_mask=0x[0-9a-f]+\([A-Z_|]+\), order=\d+, oom_score_adj=-?\d+$",
        DMESG + r"oom-kill:constraint=CONSTRAINT_\w+,.*,task=python3,pid=12849,uid=\d+$",
        DMESG + r"Out of memory: Killed process 12849 \(python3\) total-vm:\d+kB, anon-rss:52428800kB, "
                r"file-rss:\d+kB, shmem-rss:\d+kB, UID:\d+ pgtables:\d+kB oom_score_adj:-?\d+$"]),
    EventClass.XID: ("kernel", {"xid": 79, "pci": "0000:b1:00.0", "gpu": 2, "pid": 12849, "process": "python3"}, [
        DMESG + r"NVRM: Xid \(PCI:0000:[0-9a-f]{2}:00\): 79, pid=12849, name=python3, "
                r"GPU has fallen off the bus\.$"]),
    EventClass.GPU_FELL_OFF_BUS: ("kernel", {"pci": "0000:b1:00.0", "gpu": 2}, [
        DMESG + r"NVRM: GPU 0000:b1:00\.0: GPU has fallen off the bus\.$"]),
    EventClass.KERNEL_PANIC: ("kernel", {"reason": "Fatal exception in interrupt"}, [
        DMESG + r"Kernel panic - not syncing: Fatal exception in interrupt$",
        DMESG + r"CPU: \d+ PID: \d+ Comm: \S+ Tainted: P\s+OE\s+5\.15\.0-101-generic #111-Ubuntu$",
        DMESG + r"Hardware name: Supermicro ",
        DMESG + r"---\[ end Kernel panic - not syncing: Fatal exception in interrupt \]---$"]),
    EventClass.THERMAL_SLOWDOWN: ("nvml", {"gpu": 2, "temperature_c": 92, "slowdown_c": 87}, [
        r"^coldaisle-agent: thermal_slowdown .*gpu=2 .*temperature_c=92$"]),
    EventClass.THERMAL_SHUTDOWN: ("nvml", {"gpu": 2, "temperature_c": 95, "shutdown_c": 92}, [
        r"^coldaisle-agent: thermal_shutdown .*shutdown_c=92 temperature_c=95$"]),
    EventClass.FAN_FAILURE: ("bmc", {"fan": "FAN3", "rpm_before": 18000, "gpu": 2}, [
        r"^\s*[0-9a-f]+ \| 05/21/2024 \| 03:04:00 \| Fan FAN3 \| Lower Critical going low\s+\| Asserted$"]),
    EventClass.POWER_CYCLE: ("bmc", {"state": "cycle"}, [  # ipmitool sel list: Power Unit, offset 01h
        r"^\s*[0-9a-f]+ \| 05/21/2024 \| 03:04:00 \| Power Unit #0x01 \| Power cycle \| Asserted$"]),
    EventClass.COOLING_FAILURE: ("facility", {"row": 4, "capacity_kw_before": 400, "capacity_kw_after": 120}, [
        r"^<1\d\d>1 2024-05-21T03:04:00\.412Z \S+ \S+ - COOLING \[coldaisle@32473 [^\]]*row=\"4\"\] "
        r"Row 4 cooling capacity lost: 400 kW -> 120 kW$"]),
    EventClass.EMERGENCY_POWER_OFF: ("facility", {"rack": 4, "by": "sre", "reason": 'shelf 2 at 95 "C"'}, [
        r'^<1\d\d>1 \S+ \S+ \S+ - EPO \[coldaisle@32473 by="sre" rack="4" reason="shelf 2 at 95 \\"C\\""\] '
        r"Emergency power off rack 4 by sre"]),
    EventClass.SIGNAL_SENT: ("coldaisle", {"pid": 12849, "signal": "SIGKILL", "job": 4242, "rank": 3}, [
        r"^coldaisle-agent: signal_sent .*pid=12849 .*signal=SIGKILL$"]),
    EventClass.POWER_CAP: ("coldaisle", {"gpu": 2, "watts": 400, "previous_watts": 700}, [
        r"^coldaisle-agent: power_cap gpu=2 previous_watts=700 watts=400$"]),
    EventClass.NODE_DRAIN: ("slurm", {"reason": "PCIe clock jitter", "by": "coldaisle"}, [
        r"^\[[\dT:.-]+\] update_node: node node-gpu-44 reason set to: PCIe clock jitter$",
        r"^\[[\dT:.-]+\] update_node: node node-gpu-44 state set to DRAINING$"]),
    EventClass.LINK_DOWN: ("kernel", {"pci": "0000:4b:00.0", "interface": "ibp75s0"}, [  # the mlx5 driver's line
        r"mlx5_core 0000:4b:00\.0 ibp75s0: Link down$"]),
    EventClass.NCCL_NET_ERROR: ("nccl", {"pid": 12849, "tid": 12950, "gpu": 0, "peer": "node-gpu-45", "port": 54321,
                                         "status": 12, "job": 4242}, [
        r"^node-gpu-44:12849:12950 \[0\] NCCL WARN NET/IB : Got completion from peer [\d.]+<54321> with error 12, "]),
    EventClass.NODE_DOWN: ("slurm", {"reason": "unplanned maintenance"}, [
        r"^\[[\dT:.-]+\] error: Nodes node-gpu-44 not responding, setting DOWN$",
        r"^\[[\dT:.-]+\] update_node: node node-gpu-44 reason set to: unplanned maintenance$"]),
    EventClass.RANK_CRASH: ("torch", {"rank": 17, "pid": 12849, "job": 4242, "error": "loss check failed"}, [
        r"^\[rank17\]: RuntimeError: loss check failed$"]),
}


def _event(cls: str, source: str = "kernel", host: str = "node-gpu-44", **fields: Any) -> Event:
    return Event(time=T, host=host, source=source, cls=cls, severity=Severity.ERROR, fields=fields)


def test_every_event_class_has_an_example() -> None:
    assert set(EXAMPLES) == set(EventClass)


@pytest.mark.parametrize("cls", list(EventClass))
def test_rendered_lines_match_the_real_format(cls: EventClass) -> None:
    source, fields, patterns = EXAMPLES[cls]
    lines = render(_event(cls, source, **fields), boot_time=BOOT)
    raws = [line.raw for line in lines]
    for pattern in patterns:
        assert any(re.search(pattern, raw) for raw in raws), f"{pattern!r} not in {raws}"
    assert all(raw and "\n" not in raw for raw in raws)
    assert lines[0].severity is Severity.ERROR
    assert all(line.severity <= Severity.INFO for line in lines[1:])
    assert {(line.time, line.host, line.cls, line.source) for line in lines} == {(T, "node-gpu-44", cls, source)}
    if source == "kernel":
        assert all(re.match(DMESG, raw) for raw in raws)


@pytest.mark.parametrize("cls", [EventClass.HUNG_TASK, EventClass.KERNEL_PANIC, EventClass.OOM_KILL,
                                 EventClass.PCIE_AER])
def test_multi_line_kernel_classes_print_several_lines(cls: EventClass) -> None:
    source, fields, _ = EXAMPLES[cls]
    assert len(render(_event(cls, source, **fields), boot_time=BOOT)) >= 3


def test_dmesg_uptime_is_time_since_boot_with_six_decimals() -> None:
    (line,) = render(_event(EventClass.GPU_FELL_OFF_BUS, pci="0000:b1:00.0", gpu=2), boot_time=BOOT)
    assert line.raw.startswith("May 21 03:04:00 node-gpu-44 kernel: [259200.412105] NVRM: GPU")
    assert dmesg_prefix(5.0000014) == "[    5.000001] "
    assert dmesg_prefix(12.5) == "[   12.500000] "
    assert dmesg_prefix(-3.0) == "[    0.000000] "


def test_xid_without_a_process_prints_unknown_pid() -> None:
    (line,) = render(_event(EventClass.XID, xid=79, pci="0000:b1:00.0", gpu=2), boot_time=BOOT)
    assert line.raw.endswith("NVRM: Xid (PCI:0000:b1:00): 79, pid='<unknown>', name=<unknown>, "
                             "GPU has fallen off the bus.")


def test_nccl_warn_is_written_after_a_blank_line_like_ncclDebugLog(tmp_path: Path) -> None:
    _, fields, _ = EXAMPLES[EventClass.NCCL_BOOTSTRAP_TIMEOUT]
    with LogWriter(tmp_path, default_boot_time=BOOT) as writer:
        writer.write([_event(EventClass.NCCL_INIT, "nccl", pid=12849, tid=12950, job=4242),
                      _event(EventClass.NCCL_BOOTSTRAP_TIMEOUT, "nccl", **fields)])
    text = (tmp_path / "node-gpu-44" / "job-4242.err").read_text()
    assert "Init COMPLETE\n\nnode-gpu-44:12849:12950 [0] misc/socket.cc:484 NCCL WARN " in text


@pytest.mark.parametrize(("cls", "fields"), [
    ("mystery_class", {"a": 1, "b": "two words", "c": None}),
    (EventClass.XID, {}),
    (EventClass.CUDA_OOM, {"tried_bytes": "lots"}),
    (EventClass.PCIE_AER, {"status": "not-hex"}),
    (EventClass.JOB_START, {"nodes": None}),
])
def test_unknown_or_malformed_events_fall_back_to_a_structured_line(cls: str, fields: dict[str, Any]) -> None:
    (line,) = render(_event(cls, "kernel", **fields), boot_time=BOOT)
    assert re.match(DMESG + rf"coldaisle-sim: {cls}( \w+=\S+)*$", line.raw)


def test_generic_line_lists_fields_as_key_values() -> None:
    (line,) = render(_event("mystery", "facility", a=1, b="two words"), boot_time=BOOT)
    assert line.raw == "coldaisle-sim: mystery a=1 b=two_words"


def test_a_field_value_never_splits_a_line() -> None:
    drain = render(_event(EventClass.NODE_DRAIN, "slurm", reason="fan\nfailure"), boot_time=BOOT)
    (generic,) = render(_event("mystery", "kernel", note="a\r\nb c"), boot_time=BOOT)
    assert drain[0].raw.endswith("reason set to: fan failure")
    assert generic.raw.endswith("coldaisle-sim: mystery note=a__b_c")


def test_already_rendered_event_passes_through() -> None:
    event = Event(T, "node-gpu-44", "kernel", "xid", Severity.ERROR, {"xid": 79}, raw="[1.000000] as read")
    assert render(event, boot_time=BOOT) == [event]


def test_pci_bus_ids_are_ascending_and_put_the_reports_gpu_at_b1() -> None:
    four = [pci_bus_id(i) for i in range(4)]
    eight = [pci_bus_id(i, 8) for i in range(8)]
    for ids in (four, eight, [pci_bus_id(i, 16) for i in range(16)]):
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert all(re.fullmatch(r"0000:[0-9a-f]{2}:00\.0", i) for i in ids)
    assert pci_bus_id(2) == "0000:b1:00.0" and eight[6] == "0000:b1:00.0"
    assert eight == ["0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0", "0000:5d:00.0",
                     "0000:9a:00.0", "0000:ab:00.0", "0000:b1:00.0", "0000:db:00.0"]
    assert nvrm_pci("0000:b1:00.0") == "0000:b1:00"
    with pytest.raises(ValueError, match="out of range"):
        pci_bus_id(4)


def test_host_ip_is_deterministic() -> None:
    assert host_ip("node-gpu-45") == "10.0.0.45"
    assert host_ip("node-gpu-300") == "10.0.1.44"
    assert host_ip("head") != host_ip("login")
    # a host without a number gets the same address in every process (never Python's salted hash())
    code = "from coldaisle.sim.logs import host_ip; print(host_ip('head'), host_ip('login'))"
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert seen == {f"{host_ip('head')} {host_ip('login')}\n"}


@pytest.mark.parametrize(("source", "fields", "expected"), [
    ("kernel", {}, "node-gpu-44/kern.log"),
    ("nccl", {"job": 4242}, "node-gpu-44/job-4242.err"),
    ("torch", {"job_id": 7, "job": "omni"}, "node-gpu-44/job-7.err"),
    ("slurm", {}, "slurmctld.log"),
    ("bmc", {}, "node-gpu-44/sel.log"),
    ("facility", {}, "facility.log"),
    ("nvml", {}, f"node-gpu-44/{JSONL}"),
    ("coldaisle", {}, f"node-gpu-44/{JSONL}"),
    ("something-new", {}, f"node-gpu-44/{JSONL}"),
])
def test_log_path_follows_where_real_software_writes(source: str, fields: dict[str, Any], expected: str) -> None:
    assert log_path(_event("x", source, **fields)) == PurePosixPath(expected)


def test_log_path_cannot_escape_the_root() -> None:
    assert log_path(_event("x", "kernel", host="../../etc")) == PurePosixPath(".._.._etc/kern.log")
    assert log_path(_event("x", "kernel", host="..")) == PurePosixPath("_/kern.log")


def test_writer_places_files_and_appends_across_writes(tmp_path: Path) -> None:
    first = [_event(EventClass.GPU_FELL_OFF_BUS, pci="0000:b1:00.0", gpu=2),
             _event(EventClass.NODE_DRAIN, "slurm", reason="Xid 79"),
             _event(EventClass.THERMAL_SLOWDOWN, "nvml", gpu=2, temperature_c=92, slowdown_c=87),
             _event(EventClass.FAN_FAILURE, "bmc", fan="FAN3", rpm_before=18000, gpu=2),
             _event(EventClass.COOLING_FAILURE, "facility", host="dc4-bms", row=4, capacity_kw_before=400,
                    capacity_kw_after=120)]
    writer = LogWriter(tmp_path, boot_times={"node-gpu-44": BOOT}, default_boot_time=0.0)
    writer.write(first)
    writer.write([_event(EventClass.GPU_FELL_OFF_BUS, pci="0000:b1:00.0", gpu=2)])
    writer.close()
    kern = (tmp_path / "node-gpu-44" / "kern.log").read_text().splitlines()
    assert kern == ["May 21 03:04:00 node-gpu-44 kernel: [259200.412105] NVRM: GPU 0000:b1:00.0: GPU has fallen "
                    "off the bus."] * 2
    assert len((tmp_path / "slurmctld.log").read_text().splitlines()) == 2
    assert (tmp_path / "node-gpu-44" / "sel.log").read_text().count("Fan FAN3") == 1
    assert "COOLING" in (tmp_path / "facility.log").read_text()
    (row,) = [json.loads(x) for x in (tmp_path / "node-gpu-44" / JSONL).read_text().splitlines()]
    assert row["class"] == "thermal_slowdown" and row["time"] == "2024-05-21T03:04:00.412105Z"
    assert row["raw"].startswith("coldaisle-agent: thermal_slowdown")
    LogWriter(tmp_path, default_boot_time=BOOT).write([])  # reopening appends, never truncates
    assert len((tmp_path / "node-gpu-44" / "kern.log").read_text().splitlines()) == 2


def _open_fds() -> int | None:
    return len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else None


def test_writer_keeps_at_most_64_files_open_for_many_hosts(tmp_path: Path) -> None:
    hosts = [f"node-gpu-{i:02d}" for i in range(1, 129)]
    before = _open_fds()
    writer = LogWriter(tmp_path, default_boot_time=BOOT)
    for _ in range(2):
        for host in hosts:
            writer.write([_event(EventClass.GPU_FELL_OFF_BUS, host=host, pci="0000:b1:00.0", gpu=2)])
            assert writer.open_count <= 64
    if before is not None:
        assert (_open_fds() or 0) - before <= 64
    writer.close()
    assert writer.open_count == 0
    for host in hosts:
        assert len((tmp_path / host / "kern.log").read_text().splitlines()) == 2


def test_sensor_csv_has_a_header_and_iso_utc_times(tmp_path: Path) -> None:
    path = tmp_path / "sensors" / "rack4.csv"
    with SensorCsvWriter(path) as sensors:
        sensors.write_row(datetime(2024, 5, 21, 3, 5, tzinfo=UTC).timestamp(), "rack4-shelf2", 45)
        sensors.write_row(datetime(2024, 5, 21, 3, 15, tzinfo=UTC).timestamp(), "rack4-shelf2", 89.04)
    sensors = SensorCsvWriter(path)  # reopening appends without a second header
    sensors.write_row(datetime(2024, 5, 21, 3, 20, tzinfo=UTC).timestamp(), "rack, 4", 95)
    sensors.close()
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["time", "sensor", "celsius"]
    assert rows[1:] == [["2024-05-21T03:05:00Z", "rack4-shelf2", "45.0"],
                        ["2024-05-21T03:15:00Z", "rack4-shelf2", "89.0"],
                        ["2024-05-21T03:20:00Z", "rack, 4", "95.0"]]
