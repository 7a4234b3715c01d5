"""One clock for many nodes: years filled, dmesg uptimes dated, skew estimated, repeats grouped.

- Stamps without a year (syslog, glog, vLLM) take the year that puts them nearest the corpus's dated events.
- A host's boot time is known when one of its lines carries both a wall time and an uptime (syslog kernel
  lines with `[uptime]`, journald kernel records, the RTC line at boot); its dmesg uptimes are then dated
  (clock "boot"). Without one, they stay relative to boot and are ordered per host.
- StampClock skew: events of one kind that many hosts log within seconds of each other (watchdog timeouts of one
  collective, a job start) should be simultaneous; each host's median offset from the others is its skew.
- Groups: hits of one class and key (the signature's group_by fields) fold into one row with a count and
  the hosts, split where the stream pauses for more than GAP_S.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from coldaisle.telemetry.events import Severity
from coldaisle.triage.catalog import Catalog
from coldaisle.triage.interface import Hit, StampClock

GAP_S = 900.0
SHARED_WINDOW_S = 60.0
SAMPLES_PER_GROUP = 5


@dataclass
class HostClock:
    """What is known about one host's clock."""

    boot_time: float | None = None
    boot_evidence: int = 0
    skew_s: float | None = None
    skew_shared_events: int = 0
    skew_lines: int = 0  # this host's lines in those shared events (a watchdog storm: one per rank)

    @property
    def trusted_skew(self) -> float | None:
        """The skew when the evidence is enough to correct this host's times by it (>= 1 s, 3 events or 6 lines)."""
        if self.skew_s is None or abs(self.skew_s) < 1.0:
            return None
        return self.skew_s if self.skew_shared_events >= 3 or self.skew_lines >= 6 else None


@dataclass
class EventGroup:
    """Repeats of one event folded into one row."""

    cls: str
    severity: Severity
    key: tuple[tuple[str, Any], ...]
    signature: str
    clock: StampClock
    count: int = 0
    hosts: list[str] = field(default_factory=list)
    first: Hit | None = None
    last: Hit | None = None
    samples: list[Hit] = field(default_factory=list)

    def add(self, hit: Hit) -> None:
        """Fold one more hit in."""
        self.count += 1
        self.severity = max(self.severity, hit.severity)
        if hit.host not in self.hosts:
            self.hosts.append(hit.host)
        self.first = self.first or hit
        self.last = hit
        if len(self.samples) < SAMPLES_PER_GROUP:
            self.samples.append(hit)


def fix_years(hits: Sequence[Hit]) -> None:
    """Give year-less stamps the year nearest the corpus's dated events (median), handling wrap-around."""
    anchors = [h.time for h in hits if h.time is not None and h.clock == StampClock.UTC and not h.year_guessed]
    if not anchors:
        return
    ref = statistics.median(anchors)
    ref_year = datetime.fromtimestamp(ref, tz=UTC).year
    for h in hits:
        if h.year_guessed and h.time is not None:
            h.time = min((_with_year(h.time, y) for y in (ref_year - 1, ref_year, ref_year + 1)),
                         key=lambda t: abs(t - ref) if t is not None else float("inf")) or h.time


def _with_year(t: float, year: int) -> float | None:
    try:
        return datetime.fromtimestamp(t, tz=UTC).replace(year=year).timestamp()
    except ValueError:  # 29 February
        return None


def boot_times(hits: Iterable[Hit]) -> dict[str, HostClock]:
    """Per host, boot time = median(wall - uptime) over lines that carry both."""
    diffs: dict[str, list[float]] = defaultdict(list)
    for h in hits:
        if h.cls == "clock_reference" and h.uptime is not None and "rtc_epoch" in h.fields:
            diffs[h.host].append(float(h.fields["rtc_epoch"]) - h.uptime)
        elif h.time is not None and h.uptime is not None:
            diffs[h.host].append(h.time - h.uptime)
    return {host: HostClock(statistics.median(d), len(d)) for host, d in diffs.items()}


def date_uptimes(hits: Iterable[Hit], clocks: dict[str, HostClock]) -> None:
    """Convert uptime-only hits of hosts whose boot time is known (clock becomes BOOT)."""
    for h in hits:
        c = clocks.get(h.host)
        if h.clock == StampClock.UPTIME and h.uptime is not None and c and c.boot_time is not None:
            h.time, h.clock = c.boot_time + h.uptime, StampClock.BOOT


def estimate_skew(hits: Sequence[Hit], clocks: dict[str, HostClock], *, apply: bool = False) -> None:
    """Median offset of each host from its peers over shared events (same class and key, many hosts, close)."""
    buckets: dict[tuple[Any, ...], list[Hit]] = defaultdict(list)
    for h in hits:
        if h.time is not None and not h.benign and h.clock in (StampClock.UTC, StampClock.BOOT):
            buckets[(h.cls, h.fields.get("op"), h.fields.get("seq"), h.fields.get("job_id"))].append(h)
    offsets: dict[str, list[float]] = defaultdict(list)
    lines: dict[str, int] = defaultdict(int)
    for bucket in buckets.values():
        for cluster in _clusters(sorted(bucket, key=lambda h: h.time or 0.0)):
            per_host = {h.host: h.time for h in cluster}
            if len(per_host) < 3:
                continue
            mid = statistics.median(per_host.values())  # type: ignore[type-var]
            for host, t in per_host.items():
                offsets[host].append(float(t) - mid)  # type: ignore[arg-type]
            for h in cluster:
                lines[h.host] += 1
    for host, offs in offsets.items():
        c = clocks.setdefault(host, HostClock())
        c.skew_s, c.skew_shared_events, c.skew_lines = statistics.median(offs), len(offs), lines[host]
    if apply:
        for h in hits:
            c = clocks.get(h.host)
            skew = c.trusted_skew if c else None
            if h.time is not None and skew is not None:
                h.time -= skew


def _clusters(ordered: list[Hit]) -> Iterable[list[Hit]]:
    current: list[Hit] = []
    for h in ordered:
        if current and (h.time or 0.0) - (current[0].time or 0.0) > SHARED_WINDOW_S:
            yield current
            current = []
        current.append(h)
    if current:
        yield current


def resolve_peers(hits: Iterable[Hit], ip_hosts: dict[str, str]) -> None:
    """NCCL names peers by IP; the hosts' own NCCL INFO lines say which host has which address."""
    for h in hits:
        ip = h.fields.get("peer_ip")
        if ip is not None and "peer" not in h.fields:
            h.fields["peer"] = ip_hosts.get(str(ip).strip("[]"), str(ip))


def sort_key(h: Hit) -> tuple[int, str, float, int]:
    """Dated hits by time; then each host's relative (uptime) hits; then undated ones in file order."""
    if h.time is not None:
        return (0, "", h.time, h.order)
    if h.uptime is not None:
        return (1, h.host, h.uptime, h.order)
    return (2, h.host, 0.0, h.order)


def group(hits: Sequence[Hit], catalog: Catalog) -> list[EventGroup]:
    """Fold repeats: same class, signature key and clock domain; split on pauses longer than GAP_S."""
    open_groups: dict[tuple[Any, ...], EventGroup] = {}
    out: list[EventGroup] = []
    for h in sorted((h for h in hits if not h.benign), key=sort_key):
        sig = catalog.by_id.get(h.signature)
        key = tuple((g, h.fields.get(g)) for g in (sig.spec.group_by if sig else ()))
        domain = "t" if h.time is not None else ("up:" + h.host if h.uptime is not None else "none")
        k = (h.cls, key, domain)
        g = open_groups.get(k)
        last_t = g.last.time if g and g.last else None
        if g is None or (h.time is not None and last_t is not None and h.time - last_t > GAP_S):
            g = open_groups[k] = EventGroup(h.cls, h.severity, key, h.signature,
                                       StampClock.UTC if h.time is not None else h.clock)
            out.append(g)
        g.add(h)
    return out
