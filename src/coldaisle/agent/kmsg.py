"""Follow the kernel log live (/dev/kmsg) so a GPU that "fell off the bus" reaches the policy even without an Xid.

/dev/kmsg hands out one record per read: `pri,seq,ts_usec,flags[,...];message\\n` followed by continuation
lines that start with a space (` SUBSYSTEM=pci`, ` DEVICE=+pci:0000:b1:00.0`). Reads are non-blocking
(EAGAIN: nothing more for now); EPIPE means the ring buffer overwrote records we had not read yet, and the
next record's sequence number shows how many: a gap is reported once as a `kmsg_overrun` event. The last
sequence number seen is kept in a cursor file (with the boot id, since numbering restarts at boot), written
to a temporary name then renamed, so after a restart old lines never fire twice. With no cursor (first
start, or a new boot) the whole ring buffer is read once: its events keep their own kernel timestamps, so
the policy can tell a Xid from an hour ago from a fresh one.

Messages are classified by the triage signature catalog (`catalog_patterns()`: the shipped YAML plus a
site's own files), the same one `coldaisle triage` reads logs with, so a class means the same live and
after the fact. `SIGNATURES` is a small built-in list kept for when the catalog cannot load. `poll()` does
file IO (reads, and a cursor write when records arrived): run it on its own thread or timer, never on the
GPU sampling path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldaisle.telemetry.clock import Clock, RealClock
from coldaisle.telemetry.events import Event, Severity

_READ = 16384  # larger than any record (printk caps a line at 1 KiB; the dictionary adds a few hundred bytes)
_PCI_FULL = re.compile(r"^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}$")


@dataclass(frozen=True, slots=True)
class KmsgSignature:
    """One kernel message pattern: event class, severity, and a regex whose named groups become fields."""

    cls: str
    severity: Severity
    pattern: re.Pattern[str]


def _sig(cls: str, severity: Severity, pattern: str) -> KmsgSignature:
    return KmsgSignature(cls, severity, re.compile(pattern))


_PCI = r"(?P<pci>[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?)"
#: Built-in signatures, first match wins (the Xid 79 line also says "fallen off the bus"). Classes match the
#: twin's (sim.events.EventClass) so the policy reads real and simulated kernels alike.
SIGNATURES: tuple[KmsgSignature, ...] = (
    _sig("xid", Severity.CRITICAL,
         rf"NVRM: Xid \(PCI:{_PCI}\): (?P<xid>\d+)(?:, pid=(?P<pid>\d+|'<unknown>'), name=(?P<process>[^,]*))?"),
    _sig("gpu_fell_off_bus", Severity.CRITICAL, rf"(?:GPU (?:at )?{_PCI}:? (?:GPU )?has )?fallen off the bus"),
    _sig("hung_task", Severity.ERROR,
         r"task (?P<process>.+?):(?P<pid>\d+) blocked for more than (?P<seconds>\d+) seconds"),
    _sig("oom_kill", Severity.ERROR, r"[Oo]ut of memory: Killed process (?P<pid>\d+) \((?P<process>.*?)\)"),
    _sig("kernel_panic", Severity.CRITICAL, r"Kernel panic - not syncing: (?P<reason>.*)"),
    _sig("pcie_aer", Severity.WARNING,
         r"AER: (?P<kind>Corrected|Correctable|Uncorrected \((?:Non-)?Fatal\)|Multiple [\w ()-]+?) error "
         r"received: (?P<device_pci>\S+)"),
)


@dataclass(frozen=True, slots=True)
class KmsgRecord:
    """One /dev/kmsg record: priority (facility << 3 | level), sequence, microseconds since boot, message."""

    pri: int
    seq: int
    ts_usec: int
    message: str
    dictionary: tuple[tuple[str, str], ...] = ()

    @property
    def level(self) -> int:
        """Syslog level 0 (emerg) .. 7 (debug)."""
        return self.pri & 7


def _unescape(text: str) -> str:
    r"""kmsg escapes non-printable bytes as \xNN."""
    if "\\x" not in text:
        return text
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def parse_record(lines: Sequence[str]) -> KmsgRecord | None:
    """A record from its header line and continuation lines; None when the header is malformed."""
    head, sep, message = lines[0].partition(";")
    fields = head.split(",")
    if not sep or len(fields) < 3:
        return None
    try:
        pri, seq, ts = int(fields[0]), int(fields[1]), int(fields[2])
    except ValueError:
        return None
    kv = tuple(tuple(line[1:].split("=", 1)) for line in lines[1:] if "=" in line)
    return KmsgRecord(pri, seq, ts, _unescape(message), kv)  # type: ignore[arg-type]


def _field_value(key: str, value: str) -> Any:
    if value.strip("'") == "<unknown>":
        return None  # NVRM's `pid='<unknown>', name=<unknown>`: no process, not a process named so
    if key == "pci" and _PCI_FULL.match(value):
        return value + ".0"  # NVRM prints 0000:b1:00; NVML and the twin name the function: 0000:b1:00.0
    if value.isdigit():
        return int(value)
    return value.strip("'")


class CatalogPatterns:
    """The triage catalog's matcher in the follower's place: first match wins, fields typed by the catalog."""

    def __init__(self, matcher: Any) -> None:
        self.matcher = matcher

    def search(self, message: str) -> tuple[KmsgSignature, dict[str, Any]] | None:
        """The winning signature as a KmsgSignature, and its fields."""
        m = self.matcher.first(message)
        if m is None or m.severity < Severity.WARNING:
            return None  # look-alikes and informational lines are context, not events for the policy
        return KmsgSignature(m.cls, m.severity, m.signature.regex), dict(m.fields)


def catalog_patterns(extra: Sequence[str | os.PathLike[str]] = ()) -> CatalogPatterns:
    """The triage signature catalog (shipped, then each `extra` file first) for the follower."""
    from coldaisle.triage.catalog import load_catalog

    return CatalogPatterns(load_catalog([str(p) for p in extra]).matcher())


def match(record: KmsgRecord, patterns: Sequence[KmsgSignature] | CatalogPatterns
          ) -> tuple[KmsgSignature, dict[str, Any]] | None:
    """The first signature matching the record's message, with its fields (pci filled from DEVICE=+pci:...)."""
    if isinstance(patterns, CatalogPatterns):
        hit = patterns.search(record.message)
        if hit is not None:
            _device_pci(record, hit[1])
        return hit
    for sig in patterns:
        m = sig.pattern.search(record.message)
        if m is None:
            continue
        fields = {k: value for k, v in m.groupdict().items() if v is not None
                  and (value := _field_value(k, v)) is not None}
        _device_pci(record, fields)
        return sig, fields
    return None


def _device_pci(record: KmsgRecord, fields: dict[str, Any]) -> None:
    """The kernel's own device address (DEVICE=+pci:...) when the message names none."""
    device = dict(record.dictionary).get("DEVICE", "")
    if "pci" not in fields and device.startswith("+pci:"):
        fields["pci"] = device[5:]


def _boot_id(proc: str) -> str:
    try:
        return Path(proc, "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class KmsgFollower:
    """Non-blocking reader of kmsg-format records from `path` (/dev/kmsg, a FIFO or a file) with a cursor."""

    def __init__(self, path: str | os.PathLike[str] = "/dev/kmsg", *,
                 cursor_file: str | os.PathLike[str] | None = None,
                 patterns: Sequence[KmsgSignature] | CatalogPatterns = SIGNATURES, host: str | None = None,
                 clock: Clock | None = None, boot_time: float | None = None, boot_id: str | None = None,
                 proc: str = "/proc") -> None:
        self.path = str(path)
        self.cursor_file = Path(cursor_file) if cursor_file is not None else None
        self.patterns = patterns if isinstance(patterns, CatalogPatterns) else tuple(patterns)
        self.host = host or socket.gethostname()
        clock = clock or RealClock()
        # ts_usec counts from boot on the kernel's monotonic clock: wall = now - uptime + ts.
        self.boot_time = boot_time if boot_time is not None else clock.time() - time.clock_gettime(
            time.CLOCK_MONOTONIC)
        self.boot_id = boot_id if boot_id is not None else _boot_id(proc)
        self.last_seq: int | None = self._load_cursor()
        self._saved_seq = self.last_seq
        self._fd: int | None = None
        self._partial = ""
        self._pending: list[str] = []

    # -- cursor ------------------------------------------------------------------------------
    def _load_cursor(self) -> int | None:
        if self.cursor_file is None:
            return None
        try:
            data = json.loads(self.cursor_file.read_text())
            if data.get("boot_id", "") == self.boot_id:
                return int(data["seq"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return None  # no cursor, unreadable, or another boot: sequence numbers restarted

    def _save_cursor(self) -> None:
        if self.cursor_file is None or self.last_seq is None or self.last_seq == self._saved_seq:
            return
        self.cursor_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".kmsg-cursor.", dir=self.cursor_file.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"boot_id": self.boot_id, "seq": self.last_seq}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.cursor_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._saved_seq = self.last_seq

    # -- reading -----------------------------------------------------------------------------
    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        return self._fd

    def _read_chunks(self) -> list[str]:
        """Everything readable now; EAGAIN or EOF ends it, EPIPE (records overwritten) is skipped."""
        fd, chunks = self._open(), []
        while True:
            try:
                data = os.read(fd, _READ)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue  # the kernel moved us to the oldest record still held; the seq gap reports it
                raise
            if not data:
                break
            chunks.append(data.decode("utf-8", errors="replace"))
        return chunks

    def _records(self, chunks: list[str]) -> list[KmsgRecord]:
        """Split into records (a header line plus lines starting with a space); flush the last one."""
        text = self._partial + "".join(chunks)
        *lines, self._partial = text.split("\n")
        groups: list[list[str]] = []
        current = self._pending
        for line in lines:
            if line.startswith(" ") and current:
                current.append(line)
            elif line:
                if current:
                    groups.append(current)
                current = [line]
        # Nothing more is readable now: the last record is complete (/dev/kmsg returns whole records).
        if current and not self._partial:
            groups.append(current)
            current = []
        self._pending = current
        return [r for g in groups if (r := parse_record(g)) is not None]

    def poll(self) -> list[Event]:
        """Events for the records that arrived since the last poll (or since the cursor, after a restart)."""
        events: list[Event] = []
        for rec in self._records(self._read_chunks()):
            if self.last_seq is not None and rec.seq <= self.last_seq:
                continue  # already seen, before a restart or on a file re-read
            if self.last_seq is not None and rec.seq > self.last_seq + 1:
                events.append(self._overrun(rec, rec.seq - self.last_seq - 1))
            self.last_seq = rec.seq
            hit = match(rec, self.patterns)
            if hit is not None:
                sig, fields = hit
                events.append(Event(self.boot_time + rec.ts_usec / 1e6, self.host, "kernel", sig.cls,
                                    sig.severity, fields, rec.message))
        self._save_cursor()
        return events

    def _overrun(self, rec: KmsgRecord, missed: int) -> Event:
        return Event(self.boot_time + rec.ts_usec / 1e6, self.host, "kmsg", "kmsg_overrun", Severity.WARNING,
                     {"missed": missed, "first_seq": rec.seq - missed, "last_seq": rec.seq - 1},
                     f"kmsg: {missed} kernel log records were overwritten before they were read")

    def close(self) -> None:
        """Close the kmsg file descriptor (the cursor is already saved)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> KmsgFollower:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
