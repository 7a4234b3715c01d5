"""Read every input once, in bounded memory: files -> sources -> hits, with progress and counted damage.

Memory does not grow with input size: benign hits are counted, not kept (except the few the root-cause
rules read: communicator membership and each rank's last collective), and alarming hits are kept up to
`max_events`; beyond that they are counted per class and host only.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from coldaisle.triage.catalog import Catalog, load_catalog
from coldaisle.triage.interface import FileContext, Hit, ReadStats, Sample
from coldaisle.triage.readers import InputFile, chunks, walk
from coldaisle.triage.sources import sniff, source_for

MAX_EVENTS = 50_000
MAX_CONTEXT = 100_000
_KEPT_BENIGN = frozenset({"nccl_init", "job_start", "job_end", "node_state", "clock_reference", "driver_load",
                          "coldaisle_action", "thermal_recovered", "ib_link_up"})


@dataclass
class ScanReading:
    """Everything read: kept hits (file order), samples, IP -> host map, and the counts."""

    hits: list[Hit] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    ip_hosts: dict[str, str] = field(default_factory=dict)
    stats: ReadStats = field(default_factory=ReadStats)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (class, host) -> every hit, kept or not
    dropped: int = 0
    inputs: list[InputFile] = field(default_factory=list)


class _Keeper:
    """Applies the memory bounds while hits stream in."""

    def __init__(self, reading: ScanReading, max_events: int) -> None:
        self.r, self.max_events, self.context = reading, max_events, 0
        self.last_op: dict[tuple[str, object, object], Hit] = {}

    def add(self, hit: Hit) -> None:
        self.r.counts[(hit.cls, hit.host)] += 1
        if hit.cls == "nccl_op_trace":
            self.last_op[(hit.host, hit.fields.get("comm"), hit.fields.get("pid"))] = hit
        elif not hit.benign:
            if len(self.r.hits) - self.context < self.max_events:
                self.r.hits.append(hit)
            else:
                self.r.dropped += 1
        elif hit.cls in _KEPT_BENIGN and self.context < MAX_CONTEXT:
            self.context += 1
            self.r.hits.append(hit)

    def finish(self) -> None:
        self.r.hits.extend(self.last_op.values())


def _year(path: Path) -> int:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).year
    except (OSError, ValueError, OverflowError):
        return 1970


def read_file(f: InputFile, catalog_matcher: object, reading: ScanReading, keeper: _Keeper,
              on_bytes: Callable[[int], None]) -> None:
    """Read one file into `reading`; every failure is counted against the file, none escapes."""
    stats = ReadStats(files=1, bytes=f.size)
    ctx = FileContext(str(f.path), f.host, catalog_matcher, stats, on_bytes,  # type: ignore[arg-type]
                      default_year=_year(f.path), ip_hosts=reading.ip_hosts)
    try:
        with f.path.open("rb") as stream:
            data = chunks(stream, ctx.path, stats, on_bytes)
            head = next(data, b"")
            if not head:
                stats.empty += 1
                return
            source = source_for(sniff(head))
            for hit in source.hits(itertools.chain([head], data), ctx):
                keeper.add(hit)
    except OSError as exc:
        stats.unreadable.append(f"{f.path}: {exc.strerror or exc}")
    finally:
        reading.samples += ctx.samples
        reading.stats.merge(stats)


def read_inputs(paths: Sequence[str | Path], *, catalog: Catalog | None = None, host: str | None = None,
                max_events: int = MAX_EVENTS, on_files: Callable[[int], None] | None = None,
                on_bytes: Callable[[int], None] | None = None) -> ScanReading:
    """Read every file under `paths`; `on_files(total_bytes)` then `on_bytes(n)` report progress."""
    catalog = catalog or load_catalog()
    matcher = catalog.matcher()
    reading = ScanReading()
    reading.inputs = walk(paths, reading.stats, host)
    if on_files:
        on_files(sum(f.size for f in reading.inputs))
    keeper = _Keeper(reading, max_events)
    for f in reading.inputs:
        read_file(f, matcher, reading, keeper, on_bytes or (lambda n: None))
    keeper.finish()
    for i, hit in enumerate(reading.hits):
        hit.order = i
    return reading
