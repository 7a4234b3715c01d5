"""Bad input is counted and reported, never a crash, and every readable line is still read."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import zstandard

from coldaisle.triage.analyze import triage

XID = "[ 100.000001] NVRM: Xid (PCI:0000:b1:00): 79, pid=1, name=python3, GPU has fallen off the bus."
PANIC = "[ 101.000001] Kernel panic - not syncing: Fatal exception"


def _classes(r) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.cls for h in r.alarms]


def test_binary_garbage_and_invalid_utf8_around_real_lines(tmp_path: Path) -> None:
    junk = bytes(range(256)) * 64 + b"\xff\xfe\xfa\x00\x00"
    (tmp_path / "node-1.log").write_bytes(junk + b"\n" + XID.encode() + b"\n\xc3\x28 invalid \xa0\xa1\n"
                                          + junk + PANIC.encode() + b"\n")
    r = triage([tmp_path])
    assert _classes(r) == ["xid", "kernel_panic"]
    s = r.reading.stats
    assert s.binary_files == 1 and s.invalid_utf8_blocks >= 1


def test_a_50_mb_line_is_scanned_in_pieces(tmp_path: Path) -> None:
    huge = b"x" * (25 << 20) + PANIC.encode()[14:] + b" " + b"y" * (25 << 20)
    (tmp_path / "node-1.log").write_bytes(XID.encode() + b"\n" + huge + b"\n" + PANIC.encode() + b"\n")
    r = triage([tmp_path])
    assert _classes(r) == ["xid", "kernel_panic", "kernel_panic"]  # the one inside the long line too
    assert r.reading.stats.long_lines == 1
    assert sorted(h.line for h in r.alarms) == [1, 2, 3]
    assert all(len(h.raw) <= 2000 for h in r.alarms)


def test_truncated_gzip_yields_everything_before_the_cut(tmp_path: Path) -> None:
    lines = [f"[{i:6d}.000000] filler line {i} " + "z" * 80 for i in range(20000)]
    lines[100] = XID
    data = gzip.compress(("\n".join(lines) + "\n" + PANIC + "\n").encode())
    (tmp_path / "node-1.log.gz").write_bytes(data[: len(data) // 2])
    r = triage([tmp_path])
    assert _classes(r) == ["xid"]
    assert len(r.reading.stats.truncated) == 1 and r.reading.stats.lines > 5000


def test_zstd_and_multi_member_gzip_read_whole(tmp_path: Path) -> None:
    (tmp_path / "node-1.log.zst").write_bytes(zstandard.ZstdCompressor().compress((XID + "\n").encode()))
    (tmp_path / "node-2.log.gz").write_bytes(gzip.compress((XID + "\n").encode()) + gzip.compress(
        (PANIC + "\n").encode()))
    r = triage([tmp_path])
    assert sorted((h.host, h.cls) for h in r.alarms) == [("node-1", "xid"), ("node-2", "kernel_panic"),
                                                          ("node-2", "xid")]
    assert not r.reading.stats.truncated


@pytest.mark.unprivileged  # root reads files whatever their mode: run as nobody (tests/conftest.py)
def test_empty_and_unreadable_files_counted(tmp_path: Path) -> None:
    (tmp_path / "node-1.log").write_text("")
    secret = tmp_path / "node-2.log"
    secret.write_text(XID + "\n")
    secret.chmod(0)
    (tmp_path / "node-3.log").write_text(PANIC + "\n")
    r = triage([tmp_path, tmp_path / "missing.log"])
    s = r.reading.stats
    assert s.empty == 1 and len(s.unreadable) == 2 and _classes(r) == ["kernel_panic"]


def test_dangling_link_and_fifo_counted_not_read(tmp_path: Path) -> None:
    (tmp_path / "node-3.log").write_text(PANIC + "\n")
    (tmp_path / "node-4.log").symlink_to(tmp_path / "gone")  # stat fails
    os.mkfifo(tmp_path / "node-5.log")  # opening it would block forever
    r = triage([tmp_path])
    assert len(r.reading.stats.unreadable) == 2 and _classes(r) == ["kernel_panic"]


def test_ten_thousand_files(tmp_path: Path) -> None:
    for i in range(10_000):
        d = tmp_path / f"node-{i // 100:03d}"
        d.mkdir(exist_ok=True)
        (d / f"part-{i % 100}.log").write_text(XID + "\n" if i % 1000 == 0 else "[ 1.0] nothing to see\n")
    r = triage([tmp_path])
    assert r.reading.stats.files == 10_000 and r.reading.stats.lines == 10_000
    assert len(r.alarms) == 10 and len({h.host for h in r.alarms}) == 10
