"""Timestamps, hosts and wrappers of every format triage reads, on real lines (the corpus in tests/data/triage/real/
names each one's source) and, where the corpus has no real sample, on the format's specification."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coldaisle.triage.analyze import triage
from coldaisle.triage.interface import StampClock
from coldaisle.triage.stamps import month, parse


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() if "+" not in text[10:] else \
        datetime.fromisoformat(text).timestamp()


# (format, line, expected UTC time or None, expected uptime or None, expected host); year-less stamps get 2024.
CASES = [
    ("dmesg -T", "[Sun Feb 23 16:24:18 2025] NVRM: Xid (PCI:0000:9b:00): 119, pid=2024380", "2025-02-23T16:24:18",
     None, ""),
    ("dmesg -T, zh_CN", "[一 8月 25 16:20:28 2025] nvidia 0000:01:00.0: PCIe Bus Error: severity=Correctable",
     "2025-08-25T16:20:28", None, ""),
    ("dmesg -T, de_DE", "[Do Mär 26 07:38:49 2020] {2}[Hardware Error]: Hardware error from APEI",
     "2020-03-26T07:38:49", None, ""),
    ("dmesg -T then host and tag", "[Sun Dec  1 14:54:40 2024] ny2g1r12hh2 kernel: mlx5_core 0000:5c:00.0: x",
     "2024-12-01T14:54:40", None, "ny2g1r12hh2"),
    ("dmesg -H anchor", "> > > [Jul31 01:56] kthreadd invoked oom-killer: gfp_mask=0x27000c0", "2024-07-31T01:56:00",
     None, ""),
    ("dmesg -H delta", "[  +0.000105] BUG: kernel NULL pointer dereference, address: 0000000000000020", None, None,
     ""),
    ("dmesg -x, ISO", "kern  :warn  : 2025-01-21T02:21:33,498559+00:00 NVRM: Xid (PCI:0000:38:00): 13",
     "2025-01-21T02:21:33.498559", None, ""),
    ("printk caller id in quotes", ">>>> [   28.661336][   C16] watchdog: BUG: soft lockup - CPU#16 stuck for 22s!",
     None, 28.661336, ""),
    ("syslog priority (pstore)", "<0>[ 3098.275469] Kernel panic - not syncing: Test panic", None, 3098.275469, ""),
    ("syslog priority (console)", "<6>[ 2809.666228] amp_enable: amp enable bypass(2)", None, 2809.666228, ""),
    ("printk task caller id", ">>>> [    4.590405][    T1] ACPI: bus type PCI registered", None, 4.590405, ""),
    ("raw /dev/kmsg", "6,3998,261229012,-;nvidia-nvswitch3: open (major=510)", None, 261.229012, ""),
    ("show_delta", "[13.206505 < 0.000013 >]  BIOS-provided physical RAM map:", None, 13.206505, ""),
    ("vendor CPU prefix", "[2-3219.1870] vd-net-config invoked oom-killer: gfp_mask=0x80d0", None, 3219.187, ""),
    ("bracketed Unix time (UCX)", "[1750832176.378614] [elsah100:40   :0]  ib_md.c:1537 UCX  WARN  mlx5_1: x",
     "2025-06-25T06:16:16.378614", None, ""),
    ("rsyslog + printk uptime", "Apr 8 08:45:41 ubuntu1804 kernel: [ 8.546423] pcieport 0000:00:1c.4: AER: x",
     "2024-04-08T08:45:41", 8.546423, "ubuntu1804"),
    ("syslog without host", "Mar 29 15:38:59 kernel: NVRM: Xid (PCI:0000:01:00): 120, GSP kernel exception",
     "2024-03-29T15:38:59", None, ""),
    ("journalctl short, ru_RU", "июл 27 14:08:03 laptop kernel: list_del corruption. prev->next should be x",
     "2024-07-27T14:08:03", None, "laptop"),
    ("journalctl short, zh_CN", "12月 19 15:21:07 ubuntu-Super-Server /usr/libexec/gdm-x-session[1680]: (WW) x",
     "2024-12-19T15:21:07", None, "ubuntu-Super-Server"),
    ("grep over files", "/var/log/messages-20170402:Apr  2 15:05:32 eve kernel: EXT4-fs (sdc1): filesystem has",
     "2024-04-02T15:05:32", None, "eve"),
    ("Talos / talosctl dmesg", "kantai1: kern: warning: [2025-02-25T16:19:43.741311529Z]: memcpy:",
     "2025-02-25T16:19:43.741312", None, "kantai1"),
    ("rsyslog RFC 5424 file, no PRI", "> 2022-12-26T07:44:45.000000+01:00 server02 kernel - - - BTRFS critical ",
     "2022-12-26T06:44:45", None, "server02"),
    ("CRI container log", "2023-10-06T00:17:09.669794202Z stdout F Your log message here",
     "2023-10-06T00:17:09.669794", None, ""),
    ("Loghub Thunderbird", "- 1131566470 2005.11.09 tbird-sm1 Nov 9 12:01:10 src@tbird-sm1 ib_sm.x[24904]: x",
     "2005-11-09T20:01:10", None, "tbird-sm1"),
    ("Loghub HPC", "2594656 node-D0 clusterfilesystem clusterfilesystem.no_server 1074279038 1 ClusterFileSystem:",
     "2004-01-16T18:50:38", None, "node-D0"),
    ("klog", "I1009 11:52:45.313421       7 problem_detector.go:73] Problem detector started",
     "2024-10-09T11:52:45.313421", None, ""),
    ("PyTorch 2.4+", "[rank1]:[E409 05:10:01.930967482 ProcessGroupNCCL.cpp:1595] [PG ID 0 PG GUID 0(default_pg)",
     "2024-04-09T05:10:01.930968", None, ""),
    ("nv-fabricmanager", "[Feb 27 2025 15:10:02] [ERROR] [tid 12727] detected NVSwitch non-fatal error 12028",
     "2025-02-27T15:10:02", None, ""),
    ("NetApp ONTAP", "Tue Feb 13 10:00:07 -0800 [cluster: scsi_cmdblk_strthr_admin: disk.timeout.flush.start:debug]",
     "2024-02-13T18:00:07", None, ""),
    ("srun --label", "[dojo-a3-ghpc-9:1]:  what():  [Rank 1] NCCL watchdog thread terminated", None, None,
     "dojo-a3-ghpc-9"),
    ("NCCL prefix", "jnlh102072:8969:8969 [0] misc/socket.cc:484 NCCL WARN socketStartConnect: Connect to", None,
     None, "jnlh102072"),
    # Month names as glibc's fr_FR and de_DE locales abbreviate them (localedata LC_TIME abmon, months.yaml):
    ("rsyslog, fr_FR", "juil.  3 14:31:13 node-7 kernel: NVRM: Xid", "2024-07-03T14:31:13", None, "node-7"),
    ("rsyslog, de_DE", "Mär  5 07:38:49 node-7 kernel: NVRM: Xid", "2024-03-05T07:38:49", None, "node-7"),
    # The specifications' own examples (no such lines in the corpus): RFC 5424 section 6.5
    # (https://www.rfc-editor.org/rfc/rfc5424#section-6.5), RFC 3164 section 5.4
    # (https://www.rfc-editor.org/rfc/rfc3164#section-5.4), journalctl's output modes (man journalctl, --output):
    ("RFC 5424 6.5 ex. 1", "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - BOM'su root' failed",
     "2003-10-11T22:14:15.003", None, "mymachine.example.com"),
    ("RFC 5424 6.5 ex. 2 (IP host, offset)",
     "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
     "2003-08-24T12:14:15.000003", None, "192.0.2.1"),
    ("RFC 5424 6.5 ex. 3 (structured data)", '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 '
     '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] BOMAn application event log entry...',
     "2003-10-11T22:14:15.003", None, "mymachine.example.com"),
    ("RFC 3164 5.4 ex. 1", "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
     "2024-10-11T22:14:15", None, "mymachine"),
    ("remote syslog, IP host", "May 21 03:04:00 10.1.2.3 kernel: [ 9.123456] NVRM: Xid", "2024-05-21T03:04:00",
     9.123456, "10.1.2.3"),
    ("journalctl short-precise", "May 21 03:04:00.123456 node-7 kernel: NVRM: Xid", "2024-05-21T03:04:00.123456",
     None, "node-7"),
    ("journalctl short-iso-precise", "2024-05-21T03:04:00.123456+0000 node-7 kernel: NVRM: Xid",
     "2024-05-21T03:04:00.123456", None, "node-7"),
    ("journalctl short-monotonic", "[ 1234.567890] node-7 kernel: NVRM: Xid", None, 1234.56789, "node-7"),
    ("kubectl logs --prefix --timestamps", "[pod/trainer-0/pytorch] 2024-05-21T03:04:00.123456789Z [rank0]:[E521 x",
     "2024-05-21T03:04:00.123457", None, ""),
]


@pytest.mark.parametrize(("fmt", "line", "time", "uptime", "host"), CASES, ids=[c[0] for c in CASES])
def test_format(fmt: str, line: str, time: str | None, uptime: float | None, host: str) -> None:
    s = parse(line, 2024)
    assert (s.time, s.uptime, s.host) == (pytest.approx(utc(time), abs=1e-6) if time else None,
                                          pytest.approx(uptime) if uptime else None, host), fmt
    assert s.clock == (StampClock.UTC if time else StampClock.UPTIME if uptime else StampClock.NONE)


def test_year_less_stamps_say_so() -> None:
    assert parse("Mar 29 15:38:59 kernel: x", 2024).year_guessed
    assert not parse("[Sun Feb 23 16:24:18 2025] x", 2024).year_guessed


@pytest.mark.parametrize(("name", "number"), [("Jan", 1), ("Mär", 3), ("janv.", 1), ("juil.", 7), ("июл", 7),
                                               ("мая", 5), ("12月", 12), ("8월", 8), ("Okt", 10), ("dic", 12)])
def test_month_names_of_glibc_locales(name: str, number: int) -> None:
    assert month(name) == number
    assert month("Tue") is None and month("13") is None


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_journal_export_entries(tmp_path: Path) -> None:
    """`journalctl -o export` as systemd.io/JOURNAL_EXPORT_FORMATS/ specifies it: KEY=VALUE lines, a blank line
    between entries; the first entry is the spec's own example, the second a kernel message in the same form."""
    spec = ["__CURSOR=s=739ad463348b4ceca5a9e69c95a3c93f;i=4ece7;b=6c7c6013a26343b29e964691ff25d04c;m=4fc72436e;"
            "t=4c508a72423d9;x=d3e5610681098c10;p=system.journal", "__REALTIME_TIMESTAMP=1342540861416409",
            "__MONOTONIC_TIMESTAMP=21415215982", "_TRANSPORT=syslog", "PRIORITY=4", "SYSLOG_IDENTIFIER=gdm-password]",
            "MESSAGE=AccountsService-DEBUG(+): ActUserManager: ignoring unspecified session '8' since it's not "
            "graphical: Success", "_HOSTNAME=epsilon", ""]
    kernel = ["__CURSOR=s=739ad463348b4ceca5a9e69c95a3c93f;i=4ece8", "__REALTIME_TIMESTAMP=1342540870000000",
              "__MONOTONIC_TIMESTAMP=21424000000", "_TRANSPORT=kernel", "PRIORITY=4", "SYSLOG_IDENTIFIER=kernel",
              "MESSAGE=NVRM: Xid (PCI:0000:b1:00): 79, pid=1, name=python3, GPU has fallen off the bus.",
              "_HOSTNAME=epsilon", ""]
    r = triage([_write(tmp_path / "journal.export", spec + kernel)])
    (xid,) = r.alarms
    assert (xid.cls, xid.host, xid.time, xid.uptime) == ("xid", "epsilon", 1342540870.0, 21424.0)
    assert xid.fields["xid"] == 79 and xid.line == 16


def test_journal_json_pretty_entry(tmp_path: Path) -> None:
    entry = json.dumps({"__REALTIME_TIMESTAMP": "1601471260802301", "_HOSTNAME": "pn", "_TRANSPORT": "kernel",
                        "MESSAGE": "blk_update_request: I/O error, dev nvme0n1, sector 10000 op 0x0:(READ)",
                        "__MONOTONIC_TIMESTAMP": "1806379233"}, indent=8)
    r = triage([_write(tmp_path / "pn.json", entry.splitlines())])
    (hit,) = r.alarms
    assert (hit.cls, hit.host, hit.time) == ("block_io_error", "pn", 1601471260.802301)
    assert hit.fields == {"device": "nvme0n1", "sector": 10000}


def test_docker_json_and_cri_and_kubectl_prefix(tmp_path: Path) -> None:
    _write(tmp_path / "node-1" / "container.log", [json.dumps(
        {"log": "RuntimeError: CUDA error: an illegal memory access was encountered\n", "stream": "stderr",
         "time": "2024-05-21T03:04:00.5Z"})])
    _write(tmp_path / "node-2" / "cri.log", ["2024-05-21T03:04:01.000000001Z stderr F [rank3]:[E521 03:04:01.0 "
                                             "ProcessGroupNCCL.cpp:1] [Rank 3] Watchdog caught collective operation "
                                             "timeout: WorkNCCL(SeqNum=5, OpType=ALLREDUCE, Timeout(ms)=600000) ran "
                                             "for "
                                             "600013 milliseconds before timing out."])
    got = {h.host: (h.cls, h.time) for h in triage([tmp_path]).alarms}
    assert got == {"node-1": ("cuda_error", utc("2024-05-21T03:04:00.5")),
                   "node-2": ("nccl_watchdog_timeout", pytest.approx(utc("2024-05-21T03:04:01.000000")))}
