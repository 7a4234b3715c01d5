"""The kmsg follower on files and FIFOs of kmsg-format records: signatures, cursor, overwritten records."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import pytest

from coldaisle.agent.kmsg import SIGNATURES, KmsgFollower, KmsgSignature, parse_record
from coldaisle.telemetry.events import Severity

KMSG = Path(__file__).resolve().parent.parent / "data" / "agent" / "kmsg.txt"
BOOT = 1_717_142_400.0  # boot time used to turn ts_usec into wall time


def _follower(path: Path, cursor: Path | None = None, **kw: object) -> KmsgFollower:
    return KmsgFollower(path, cursor_file=cursor, host="node-gpu-102", boot_time=BOOT, boot_id="boot-a",
                        **kw)  # type: ignore[arg-type]


def test_signatures_on_captured_records() -> None:
    with _follower(KMSG) as f:
        events = f.poll()
    classes = [e.cls for e in events]
    assert classes == ["pcie_aer", "hung_task", "xid", "gpu_fell_off_bus", "xid", "oom_kill", "kernel_panic"]
    xid = events[2]
    assert xid.fields == {"pci": "0000:b1:00.0", "xid": 79, "pid": 12877, "process": "python3"}
    assert xid.severity is Severity.CRITICAL and xid.source == "kernel" and xid.host == "node-gpu-102"
    assert xid.time == pytest.approx(BOOT + 259200.101032)
    assert xid.raw.startswith("NVRM: Xid (PCI:0000:b1:00): 79")
    assert events[3].fields == {"pci": "0000:b1:00.0"}  # fell off the bus without an Xid of its own
    assert events[4].fields == {"pci": "0000:3b:00.0", "xid": 48}  # pid='<unknown>', name=<unknown> dropped
    assert events[1].fields == {"process": "python3", "pid": 12877, "seconds": 120}
    assert events[5].fields == {"pid": 12877, "process": "python3"}
    assert events[6].fields == {"reason": "Fatal exception in interrupt"}
    # As the twin names them: pci is the reporting root port (from DEVICE=+pci:...), device_pci the GPU.
    assert events[0].fields == {"kind": "Corrected", "device_pci": "0000:b1:00.0", "pci": "0000:b0:01.0"}


def test_old_driver_fell_off_bus_wording() -> None:
    rec = parse_record(["4,7,1000000,-;NVRM: GPU at 0000:b1:00.0 has fallen off the bus."])
    assert rec is not None
    sig = next(s for s in SIGNATURES if s.pattern.search(rec.message))
    assert sig.cls == "gpu_fell_off_bus"
    assert sig.pattern.search(rec.message).group("pci") == "0000:b1:00.0"  # type: ignore[union-attr]


def test_parse_record_continuation_and_escapes() -> None:
    rec = parse_record(["6,12,345,-;caf\\xc3\\xa9 \\x1b[0m", " SUBSYSTEM=pci", " DEVICE=+pci:0000:b1:00.0"])
    assert rec is not None and rec.seq == 12 and rec.ts_usec == 345 and rec.level == 6
    assert rec.dictionary == (("SUBSYSTEM", "pci"), ("DEVICE", "+pci:0000:b1:00.0"))
    assert "\x1b" in rec.message
    assert parse_record(["not a record"]) is None
    assert parse_record(["x,y,z,-;msg"]) is None


def test_cursor_restart_does_not_re_emit(tmp_path: Path) -> None:
    log, cursor = tmp_path / "kmsg", tmp_path / "state" / "kmsg.cursor"
    log.write_text(KMSG.read_text())
    with _follower(log, cursor) as f:
        assert len(f.poll()) == 7
        assert f.poll() == []
    assert json.loads(cursor.read_text()) == {"boot_id": "boot-a", "seq": 20325}
    with _follower(log, cursor) as again:  # a restart re-reads the whole buffer, as /dev/kmsg does
        assert again.poll() == []
        with log.open("a") as out:
            out.write("4,20326,259300000000,-;NVRM: GPU 0000:3b:00.0: GPU has fallen off the bus.\n")
        events = again.poll()
    assert [e.cls for e in events] == ["gpu_fell_off_bus"]
    assert json.loads(cursor.read_text())["seq"] == 20326
    assert not [p for p in cursor.parent.iterdir() if p.name != cursor.name]  # no temp files left behind


def test_cursor_of_another_boot_is_ignored(tmp_path: Path) -> None:
    cursor = tmp_path / "kmsg.cursor"
    cursor.write_text(json.dumps({"boot_id": "boot-a", "seq": 99999999}))
    with KmsgFollower(KMSG, cursor_file=cursor, boot_time=BOOT, boot_id="boot-b") as f:
        assert len(f.poll()) == 7  # sequence numbers restart at boot: the old cursor means nothing
    cursor.write_text("{not json")
    with KmsgFollower(KMSG, cursor_file=cursor, boot_time=BOOT, boot_id="boot-b") as f:
        assert len(f.poll()) == 7


def test_overwritten_records_are_reported_once(tmp_path: Path) -> None:
    log, cursor = tmp_path / "kmsg", tmp_path / "kmsg.cursor"
    log.write_text("6,100,1000000,-;first\n6,101,2000000,-;second\n")
    with _follower(log, cursor) as f:
        assert f.poll() == []
        # The ring buffer wrapped while we were busy: records 102..149 were overwritten (EPIPE on /dev/kmsg).
        with log.open("a") as out:
            out.write("6,150,3000000,-;after the gap\n4,151,3100000,-;NVRM: Xid (PCI:0000:3b:00): 79, "
                      "pid=4242, name=python3, GPU has fallen off the bus.\n")
        events = f.poll()
        assert [e.cls for e in events] == ["kmsg_overrun", "xid"]
        assert events[0].fields == {"missed": 48, "first_seq": 102, "last_seq": 149}
        assert events[0].severity is Severity.WARNING
        assert f.poll() == []
    with _follower(log, cursor) as restarted:
        assert restarted.poll() == []  # the gap is not reported again after a restart


def test_fifo_one_record_per_write(tmp_path: Path) -> None:
    fifo = tmp_path / "kmsg.fifo"
    os.mkfifo(fifo)
    writer_ready = threading.Event()

    def write() -> None:
        fd = os.open(fifo, os.O_WRONLY)
        writer_ready.set()
        os.write(fd, b"6,1,10,-;hello\n")
        os.write(fd, b"3,2,20,-;INFO: task kworker/3:1:88 blocked for more than 240 seconds.\n")
        os.write(fd, b"4,3,30,-;NVRM: GPU 0000:b1:00.0: GPU has fallen off the bus.\n SUBSYSTEM=pci\n"
                     b" DEVICE=+pci:0000:b1:00.0\n")
        os.close(fd)

    with _follower(fifo) as f:
        f.poll()  # opens the FIFO non-blocking: nothing written yet, returns at once
        thread = threading.Thread(target=write)
        thread.start()
        writer_ready.wait(5)
        thread.join(5)
        events = f.poll()
    assert [e.cls for e in events] == ["hung_task", "gpu_fell_off_bus"]
    assert events[0].fields == {"process": "kworker/3:1", "pid": 88, "seconds": 240}


def test_patterns_are_an_argument() -> None:
    custom = (KmsgSignature("ib_link_down", Severity.WARNING, re.compile(r"ib0: link becomes (?P<state>\w+)")),)
    with _follower(KMSG, patterns=custom) as f:
        events = f.poll()
    assert [(e.cls, e.fields) for e in events] == [("ib_link_down", {"state": "ready"})]


def test_real_dev_kmsg_reads_without_blocking(tmp_path: Path) -> None:
    """This machine's kernel log: read to the end without blocking, cursor written; or a clear PermissionError."""
    cursor = tmp_path / "kmsg.cursor"
    with KmsgFollower(cursor_file=cursor) as f:
        try:
            events = f.poll()
        except PermissionError:  # not root and kernel.dmesg_restrict=1: the agent logs this and goes on
            assert not os.access("/dev/kmsg", os.R_OK) or os.geteuid() != 0
            return
        assert f.last_seq is not None
        assert all(e.source in ("kernel", "kmsg") for e in events + f.poll())
    assert json.loads(cursor.read_text())["seq"] == f.last_seq


def test_the_triage_catalog_classifies_the_live_kernel_log() -> None:
    """The agent's default: the same catalog as `coldaisle triage`, so a class means the same live and after."""
    from coldaisle.agent.kmsg import catalog_patterns

    with _follower(KMSG, patterns=catalog_patterns()) as f:
        events = f.poll()
    by_cls: dict[str, list] = {}
    for e in events:
        by_cls.setdefault(e.cls, []).append(e)
    xids = {e.fields["xid"]: e for e in by_cls["xid"]}
    assert set(xids) == {79, 48} and xids[79].fields["pci"] == "0000:b1:00.0"
    assert xids[79].severity is Severity.CRITICAL and xids[79].time == pytest.approx(BOOT + 259200.101032)
    assert by_cls["gpu_fell_off_bus"][0].fields["pci"] == "0000:b1:00.0"  # a bus loss without an Xid of its own
    assert {"hung_task", "oom_kill", "kernel_panic", "pcie_aer"} <= set(by_cls)
    # look-alikes are context, not events: the driver loading, a link coming up
    assert not any("Loading NVIDIA" in e.raw or "link becomes ready" in e.raw for e in events)


def test_a_site_signature_file_with_an_error_names_file_line_and_field(tmp_path: Path) -> None:
    from coldaisle.agent.kmsg import catalog_patterns
    from coldaisle.errors import ConfigError

    bad = tmp_path / "site.yaml"
    bad.write_text("signatures:\n  - id: mine\n    class: custom\n    severity: loud\n    pattern: 'x'\n")
    with pytest.raises(ConfigError) as exc:
        catalog_patterns([bad])
    assert f"{bad}:4" in str(exc.value) and "severity" in str(exc.value)
