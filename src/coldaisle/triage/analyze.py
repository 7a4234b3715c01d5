"""The whole triage as one pure-ish function: read, put on one clock, group, rank."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from coldaisle.triage.alarms import apply_alarms
from coldaisle.triage.catalog import Catalog, load_catalog
from coldaisle.triage.engine import MAX_EVENTS, ScanReading, read_inputs
from coldaisle.triage.interface import Hit
from coldaisle.triage.rootcause import Hypothesis, rank
from coldaisle.triage.scanner import engine_name
from coldaisle.triage.timeline import (
    EventGroup,
    HostClock,
    boot_times,
    date_uptimes,
    estimate_skew,
    fix_years,
    group,
    resolve_peers,
    sort_key,
)


@dataclass
class TriageResult:
    """Everything a report needs."""

    reading: ScanReading
    hits: list[Hit]  # on one clock, in timeline order
    groups: list[EventGroup]
    hypotheses: list[Hypothesis]
    clocks: dict[str, HostClock]
    catalog: Catalog
    engine: str
    elapsed_s: float

    @property
    def alarms(self) -> list[Hit]:
        """Hits that raise an alarm (warning or worse; rate-gated kinds only at their rate)."""
        return [h for h in self.hits if h.alarm]


def sensor_peaks(reading: ScanReading) -> dict[str, float]:
    """Highest reading per sensor."""
    peaks: dict[str, float] = {}
    for s in reading.samples:
        peaks[s.sensor] = max(peaks.get(s.sensor, s.celsius), s.celsius)
    return peaks


def triage(paths: Sequence[str | Path], *, signatures: Sequence[str | Path] = (), host: str | None = None,
           align_clocks: bool = False, max_events: int = MAX_EVENTS,
           on_files: Callable[[int], None] | None = None, on_bytes: Callable[[int], None] | None = None,
           clock: Callable[[], float] = time.perf_counter) -> TriageResult:
    """Read `paths` and explain them: events on one clock, groups, ranked hypotheses."""
    start = clock()
    catalog = load_catalog(signatures)
    reading = read_inputs(paths, catalog=catalog, host=host, max_events=max_events, on_files=on_files,
                          on_bytes=on_bytes)
    hits = reading.hits
    fix_years(hits)
    clocks = boot_times(hits)
    date_uptimes(hits, clocks)
    estimate_skew(hits, clocks, apply=align_clocks)
    apply_alarms(hits, catalog)
    resolve_peers(hits, reading.ip_hosts)
    hits.sort(key=sort_key)
    groups = group(hits, catalog)
    skews = {} if align_clocks else {h: s for h, c in clocks.items() if (s := c.trusted_skew) is not None}
    hypotheses = rank(hits, sensor_peaks(reading), skews)
    return TriageResult(reading, hits, groups, hypotheses, clocks, catalog, engine_name(), clock() - start)
