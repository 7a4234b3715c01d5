"""The epilog's pieces: kmsg records in the job's window, bundles found without following links, a size limit."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from coldaisle.health.epilog import (
    EpilogOptions,
    classify,
    find_bundles,
    job_window,
    read_kmsg,
    run_epilog,
)
from coldaisle.health.slurm import SlurmJobs

# /dev/kmsg's record format (Documentation/ABI/testing/dev-kmsg): pri,seq,usec,flags;message + continuation lines
KMSG = """\
6,100,5000000,-;Linux version 6.1.0 (a line from boot)
3,101,90000000,-;NVRM: Xid (PCI:0000:b1:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
 SUBSYSTEM=pci
 DEVICE=+pci:0000:b1:00.0
3,102,91000000,-;INFO: task python3:4242 blocked for more than 120 seconds.
6,103,92000000,-;coldaisle marker with \\x3b an escaped byte
"""


def test_records_in_the_job_window_and_their_classes(tmp_path: Path) -> None:
    f = tmp_path / "kmsg"
    f.write_text(KMSG)
    records = read_kmsg(f)
    assert [r.seq for r in records] == [100, 101, 102, 103]
    assert records[1].dictionary == (("SUBSYSTEM", "pci"), ("DEVICE", "+pci:0000:b1:00.0"))
    assert records[3].message == "coldaisle marker with ; an escaped byte"
    boot = 1_700_000_000.0
    window = job_window(records, start_wall=boot + 60, boot_wall=boot)  # the job started 60 s after boot
    assert [r.seq for r in window] == [101, 102, 103]
    assert dict(classify(window)) == {"xid": 1, "hung_task": 1}


def test_bundles_are_found_by_name_and_time_and_never_through_links(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "coldaisle-run-new").mkdir(parents=True)
    (work / "coldaisle-run-new" / "summary.md").write_text("# hang\n")
    (work / "coldaisle-run-old").mkdir()
    os.utime(work / "coldaisle-run-old", (1, 1))
    (work / "coldaisle-run-link").symlink_to("/etc")
    (work / "unrelated").mkdir()
    assert [p.name for p in find_bundles(work, since=time.time() - 60)] == ["coldaisle-run-new"]


class _Jobs(SlurmJobs):
    def __init__(self, record: str) -> None:
        super().__init__(runner=self._show)
        self.record = record

    def _show(self, argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 0, self.record, "")


def test_the_record_keeps_links_as_links_and_stops_at_the_size_limit(tmp_path: Path) -> None:
    work, into, kmsg = tmp_path / "work", tmp_path / "jobs", tmp_path / "kmsg"
    small, big = work / "coldaisle-run-a", work / "coldaisle-run-b"
    small.mkdir(parents=True)
    (small / "summary.md").write_text("# hang\n")
    (small / "secret").symlink_to("/etc/shadow")  # a user's trap for a root epilog
    big.mkdir()
    (big / "output.log").write_bytes(b"x" * 4096)
    kmsg.write_text(KMSG)
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 30))
    jobs = _Jobs(f"JobId=9 JobName=train JobState=COMPLETING StartTime={start} WorkDir={work} Comment=x y\n")
    env = {"SLURM_JOB_ID": "9"}
    result = run_epilog(EpilogOptions(into=into, kmsg=kmsg, max_copy_bytes=1024, env=env), jobs=jobs)
    assert result.directory == into / "9" and result.bundles == ("coldaisle-run-a",)
    copied = into / "9" / "bundles" / "coldaisle-run-a"
    assert (copied / "summary.md").read_text() == "# hang\n"
    assert (copied / "secret").is_symlink() and os.readlink(copied / "secret") == "/etc/shadow"
    assert any("coldaisle-run-b not copied: 4096 bytes is over the 1024-byte limit" in line for line in result.lines)
    assert sorted(os.listdir(into)) == ["9"]  # written under a temporary name, then renamed
    assert (into / "9").stat().st_mode & 0o777 == 0o700


def test_without_a_job_it_does_nothing_and_never_raises(tmp_path: Path) -> None:
    assert run_epilog(EpilogOptions(into=tmp_path / "j", env={})).directory is None
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = run_epilog(EpilogOptions(into=blocked / "jobs", env={"SLURM_JOB_ID": "3"}), jobs=_Jobs(""))
    assert result.directory is None and result.lines[0].startswith("epilog: ")
