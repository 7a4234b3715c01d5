"""The triage plug-in seam: a `Source` turns one opened log file into `Hit`s, and everything speaks `Hit`.

A source is chosen per file by sniffing its first bytes (`SourceKind`); each reads its stream once, in
bounded memory, and never raises on bad input: what it could not read is counted in `ReadStats`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from coldaisle.errors import ColdaisleError
from coldaisle.telemetry.events import Event, Severity

if TYPE_CHECKING:
    from coldaisle.triage.matcher import Matcher


class TriageError(ColdaisleError):
    """Base of triage's own errors (a bad signature file, no input at all)."""

    exit_code = 2


class SourceKind(StrEnum):
    """What a file holds; picks the `Source` that reads it."""

    TEXT = "text"  # kernel (dmesg, syslog, journalctl short-*), NCCL, PyTorch/DeepSpeed/vLLM, Slurm, DCGM
    JSON_LINES = "json"  # journalctl -o json, coldaisle's own Event JSON lines
    NVIDIA_SMI = "nvidia-smi"  # `nvidia-smi -q` dumps
    SENSOR_CSV = "csv"  # thermal sensor CSV (a time column and temperature columns)


class StampClock(StrEnum):
    """How a hit's time is known: wall-clock UTC, seconds since its host booted, or not at all."""

    UTC = "utc"
    BOOT = "boot"  # a dmesg uptime dated with the host's boot time
    UPTIME = "uptime"
    NONE = "none"


@dataclass(slots=True)
class Hit:
    """One classified log line: the `Event` contract plus where it came from and how its time is known."""

    host: str
    source: str
    cls: str
    severity: Severity
    fields: dict[str, Any]
    raw: str
    file: str
    line: int
    signature: str
    time: float | None = None  # UTC epoch seconds when known (or converted from uptime)
    uptime: float | None = None  # seconds since boot, from a dmesg prefix
    clock: StampClock = StampClock.NONE
    year_guessed: bool = False  # the stamp had no year (syslog, glog, vLLM): fixed up against the corpus
    order: int = 0  # position in the whole read, so untimed hits keep their file order
    lines: int = 1  # log lines the event spans (a multi-line report joined into one event)
    alarm: bool = True  # raises an alarm: warning or worse, and a rate-gated kind only at its rate (alarms.py)

    @property
    def benign(self) -> bool:
        """Debug and info hits are context (look-alikes, init lines), never alarms."""
        return self.severity <= Severity.INFO

    def to_event(self) -> Event:
        """The shared `Event` contract (time NaN when unknown)."""
        return Event(self.time if self.time is not None else float("nan"), self.host, self.source, self.cls,
                     self.severity, dict(self.fields), self.raw)


@dataclass(slots=True)
class Sample:
    """One temperature reading from a sensor CSV or an nvidia-smi dump."""

    time: float
    sensor: str
    celsius: float


@dataclass
class ReadStats:
    """What reading cost and what it could not read: counted, reported, never raised."""

    files: int = 0
    bytes: int = 0
    lines: int = 0
    matched_lines: int = 0
    unreadable: list[str] = field(default_factory=list)  # "path: why"
    truncated: list[str] = field(default_factory=list)  # compressed files that ended early
    empty: int = 0
    binary_files: int = 0  # files whose bytes include NULs (binary garbage); their text lines are still read
    invalid_utf8_blocks: int = 0  # scanned blocks holding invalid UTF-8 (read with replacement characters)
    long_lines: int = 0  # lines over the scanner's window, scanned in pieces

    def merge(self, other: ReadStats) -> None:
        """Add another file's counts into these."""
        for name in ("files", "bytes", "lines", "matched_lines", "empty", "binary_files", "invalid_utf8_blocks",
                     "long_lines"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unreadable += other.unreadable
        self.truncated += other.truncated


@dataclass
class FileContext:
    """What a source knows about the file it reads: its path, the host it implies and shared services."""

    path: str
    host: str  # from --host, the node folder or the file name; "" when none applies
    matcher: Matcher
    stats: ReadStats
    on_bytes: Callable[[int], None] = lambda n: None  # progress: compressed or plain bytes consumed
    default_year: int = 1970
    samples: list[Sample] = field(default_factory=list)
    ip_hosts: dict[str, str] = field(default_factory=dict)  # NCCL prints peers as IPs; INFO lines map them


class Source(ABC):
    """Reads one kind of file; `hits` yields classified lines in file order."""

    kind: SourceKind

    @abstractmethod
    def hits(self, chunks: Iterator[bytes], ctx: FileContext) -> Iterator[Hit]:
        """Classified lines of the (decompressed) byte chunks, in file order; bad bytes are counted, never raised."""
