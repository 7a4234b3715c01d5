"""`coldaisle triage --json`: the documented `coldaisle.triage/1` document (docs/triage.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import IO, Any

from coldaisle.triage.analyze import TriageResult, sensor_peaks
from coldaisle.triage.hostlist import compact
from coldaisle.triage.interface import Hit
from coldaisle.triage.rootcause import Hypothesis
from coldaisle.triage.timeline import EventGroup, HostClock

SCHEMA = "coldaisle.triage/1"


def iso(t: float | None) -> str | None:
    """UTC ISO-8601 with milliseconds and a Z, or None."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(h: Hit) -> dict[str, Any]:
    """One event: class, severity, host, UTC time (or uptime), raw line and where it was read."""
    return {"time": iso(h.time), "uptime_s": h.uptime, "clock": h.clock.value, "host": h.host, "source": h.source,
            "class": h.cls, "severity": h.severity.name.lower(), "alarm": h.alarm, "fields": h.fields, "raw": h.raw,
            "file": h.file, "line": h.line, "lines": h.lines, "signature": h.signature}


def group_json(g: EventGroup, result: TriageResult) -> dict[str, Any]:
    """One folded row."""
    sig = result.catalog.by_id.get(g.signature)
    first, last = g.first, g.last
    return {"class": g.cls, "severity": g.severity.name.lower(), "count": g.count, "hosts": sorted(g.hosts),
            "hosts_compact": compact(g.hosts), "key": dict(g.key), "clock": g.clock.value,
            "first_time": iso(first.time if first else None), "last_time": iso(last.time if last else None),
            "first_uptime_s": first.uptime if first else None,
            "meaning": sig.spec.meaning if sig else "", "action": sig.spec.action if sig else "",
            "sample": first.raw if first else ""}


def hypothesis_json(rank: int, h: Hypothesis) -> dict[str, Any]:
    """One ranked hypothesis with its evidence lines."""
    return {"rank": rank, "kind": h.kind, "title": h.title, "origin": h.origin, "confidence": h.confidence,
            "time": iso(h.time), "blast_radius": h.blast_radius, "affected_hosts": compact(h.affected),
            "note": h.note, "score": round(h.score, 2), "evidence": [event(e) for e in h.evidence]}


def write(result: TriageResult, out: IO[str]) -> None:
    """The document, streamed: events are serialised one at a time, never held as one tree (bounded memory)."""
    head = document(result, events=False)
    text = json.dumps(head, indent=1, default=str)
    out.write(text[:-2] + ',\n "events": [')
    for i, h in enumerate(result.alarms):
        out.write(("\n  " if i == 0 else ",\n  ") + json.dumps(event(h), default=str))
    out.write("\n ]\n}\n")


def _host_json(events: int, c: HostClock | None) -> dict[str, Any]:
    return {"events": events, "boot_time": iso(c.boot_time) if c else None, "skew_s": c.skew_s if c else None,
            "skew_shared_events": c.skew_shared_events if c else 0,
            "skew_corrected": c.trusted_skew is not None if c else False}


def document(result: TriageResult, *, events: bool = True) -> dict[str, Any]:
    """The whole `coldaisle.triage/1` document (without the events list when `events` is False)."""
    s, reading = result.reading.stats, result.reading
    counts: dict[str, int] = {}
    for (_, host), n in reading.counts.items():
        counts[host] = counts.get(host, 0) + n
    hosts = {host: _host_json(counts.get(host, 0), result.clocks.get(host)) for host in sorted(set(counts) |
                                                                                        set(result.clocks))}
    peaks = sensor_peaks(reading)
    return {
        "schema": SCHEMA, "engine": result.engine, "elapsed_s": round(result.elapsed_s, 3),
        "input": {"files": s.files, "bytes": s.bytes, "lines": s.lines, "matched_lines": s.matched_lines,
                  "empty_files": s.empty, "binary_files": s.binary_files,
                  "invalid_utf8_blocks": s.invalid_utf8_blocks, "long_lines": s.long_lines,
                  "unreadable": s.unreadable, "truncated": s.truncated, "events_not_kept": reading.dropped},
        "hypotheses": [hypothesis_json(i, h) for i, h in enumerate(result.hypotheses, start=1)],
        "groups": [group_json(g, result) for g in result.groups],
        "hosts": hosts,
        "temperatures": {k: {"max_c": v} for k, v in sorted(peaks.items())},
        **({"events": [event(h) for h in result.alarms]} if events else {}),
    }
