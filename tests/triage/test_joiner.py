"""Multi-line reports become one event: real records of the corpus (tests/data/triage/real/) read as files."""

from __future__ import annotations

from pathlib import Path

import pytest
from realcorpus import load_records

from coldaisle.triage.analyze import triage
from coldaisle.triage.interface import Hit

RECORDS = load_records()


def _events(tmp_path: Path, needle: str) -> list[Hit]:
    """Triage the one corpus record whose lines contain `needle`; its events, alarming or not."""
    (rec,) = [r for r in RECORDS if needle in r.lines]
    path = tmp_path / "r-001.log"
    path.write_text(rec.lines)
    return triage([path]).hits


def test_nvrm_message_wrapped_over_three_lines(tmp_path: Path) -> None:
    (h,) = _events(tmp_path, "NVRM: (PCI ID: 10de:26b5) installed in this system has")
    assert (h.cls, h.fields["pci"], h.fields["xid"], h.lines) == ("gpu_fell_off_bus", "0000:b3:00.0", 79, 1)
    assert h.raw.count("NVRM:") == 3 and h.uptime == pytest.approx(1843.308145)  # the lead line's stamp


def test_gsp_rpc_history_belongs_to_its_xid(tmp_path: Path) -> None:
    (h,) = _events(tmp_path, "NVRM: GPU4 RPC history (CPU -> GSP):")
    assert (h.cls, h.fields["xid"], h.fields["pci"], h.fields["process"]) == ("xid", 119, "0000:9b:00.0", "nvidia-smi")
    assert h.lines == 22 and "RPC event history" in h.raw


def test_aer_report_with_its_detail_lines(tmp_path: Path) -> None:
    (h,) = _events(tmp_path, "[ 8] RELAY_NUM Rollover")
    assert h.cls == "pcie_aer" and h.lines == 8 and h.alarm
    assert h.fields.items() >= {"pci": "0000:04:00.0", "port_pci": "0000:00:01.0", "aer_kind": "corrected",
                                "aer_error": "RxErr"}.items()


def test_fatal_aer_report_ending_in_failed_recovery(tmp_path: Path) -> None:
    (h,) = _events(tmp_path, "SDES                   (First)")
    assert (h.severity.name, h.fields["aer_kind"], h.fields["aer_error"], h.fields["pci"]) == \
        ("CRITICAL", "fatal", "Surprise Down", "0000:03:04.0")
    assert "device recovery failed" in h.raw and h.lines == 7


def test_nvidia_smi_q_section_with_a_pending_remap(tmp_path: Path) -> None:
    (h,) = [h for h in _events(tmp_path, "Remapped Rows\n        Correctable Error                 : 1") if h.alarm]
    assert (h.cls, h.fields["kind"]) == ("row_remap", "Pending")


def test_oops_with_its_task_line_and_call_trace(tmp_path: Path) -> None:
    (h,) = _events(tmp_path, "<4>[  201.670809] Oops: 0002 [#1] SMP")
    assert (h.cls, h.fields["pid"], h.fields["process"]) == ("kernel_oops", 1899, "bash")
    assert h.raw.startswith("<1>[  201.654822] BUG: unable to handle") and "Oops: 0002" in h.raw and h.lines >= 3


def test_sxid_follow_up_lines_join_the_fatal_error(tmp_path: Path) -> None:
    (h,) = _events(tmp_path, "20034, Severity 1 Engine instance 30 Sub-engine instance 00")
    assert (h.cls, h.severity.name, h.fields["sxid"], h.fields["link"], h.lines) == \
        ("nvswitch_error", "CRITICAL", 20034, 30, 3)


def test_ibstat_block_names_device_and_port(tmp_path: Path) -> None:
    (h,) = _events(tmp_path, "Node GUID: 0xa088c20300adeb20")
    assert (h.cls, h.fields["device"], h.fields["port"], h.fields["state"]) == ("ib_link_down", "mlx5_5", 1, "Down")


def test_oom_report_is_one_kill(tmp_path: Path) -> None:
    hits = _events(tmp_path, "memory: usage 132kB, limit 132kB, failcnt 9")
    (kill,) = [h for h in hits if h.cls == "oom_kill"]
    assert (kill.fields["pid"], kill.fields["process"]) == (19289, "memcg_process") and kill.lines == 4


def test_python_traceback_around_a_nccl_error(tmp_path: Path) -> None:
    hits = _events(tmp_path, "Error while attaching to shared memory segment /dev/shm/nccl-")
    assert [h.cls for h in hits if h.alarm] == ["nccl_error"]


def test_fabric_manager_two_line_payload_stays_benign(tmp_path: Path) -> None:
    assert not [h for h in _events(tmp_path, "Message payload details:Team setup response") if h.alarm]


def test_wrapped_block_error_gets_device_and_sector_from_the_next_line(tmp_path: Path) -> None:
    (h,) = _events(tmp_path, "> [  281.797947] blk_update_request: I/O error, dev nvme0n1, sector 2786568960")
    assert (h.cls, h.fields["device"], h.fields["sector"]) == ("block_io_error", "nvme0n1", 2786568960)
