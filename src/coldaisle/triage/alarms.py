"""Which events raise an alarm: warning or worse, except kinds that matter only when frequent.

A corrected PCIe error is a warning the link layer already fixed; one line of it is noise, a stream of them
is a riser or GPU going bad (and precedes Xid 79). A signature's `alarm_rate` says which kind is rate-gated
(`aer_kind: corrected`), how many log lines of it per host and device make a rate (a full AER report is a
notice, the error line and its status and error bits), and the window. Events of that kind alarm only
inside a window holding that many lines; everything else alarms when its severity is warning or worse.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from coldaisle.telemetry.events import Severity
from coldaisle.triage.catalog import Catalog
from coldaisle.triage.catalog_model import AlarmRate
from coldaisle.triage.interface import Hit


def _when(h: Hit) -> float | None:
    return h.time if h.time is not None else h.uptime


def _gated(h: Hit, catalog: Catalog) -> AlarmRate | None:
    sig = catalog.by_id.get(h.signature)
    rate = sig.spec.alarm_rate if sig is not None else None
    if rate is not None and str(h.fields.get(rate.field, "")).lower() == rate.value.lower():
        return rate
    return None


def apply_alarms(hits: Sequence[Hit], catalog: Catalog) -> None:
    """Set `alarm` on every hit: severity for most, the line rate per host and device for gated kinds."""
    groups: dict[tuple[Any, ...], list[Hit]] = defaultdict(list)
    rates: dict[tuple[Any, ...], AlarmRate] = {}
    for h in hits:
        rate = _gated(h, catalog)
        h.alarm = h.severity >= Severity.WARNING and rate is None
        if rate is not None and h.severity >= Severity.WARNING:
            timed = _when(h) is not None
            key = (h.host, rate.field, *(h.fields.get(p) for p in rate.per),
                   "t" if h.time is not None else ("up" if timed else h.file))
            groups[key].append(h)
            rates[key] = rate
    for key, group in groups.items():
        _window(group, rates[key])


def _window(group: list[Hit], rate: AlarmRate) -> None:
    """Mark the hits of one host and device that fall in a window holding at least `rate.lines` lines."""
    if _when(group[0]) is None:  # undated lines of one file: the file is the window
        total = sum(h.lines for h in group)
        for h in group:
            h.alarm = total >= rate.lines
        return
    ordered = sorted(group, key=lambda h: (_when(h) or 0.0, h.order))
    lo, total = 0, 0
    for hi, h in enumerate(ordered):
        total += h.lines
        while (_when(h) or 0.0) - (_when(ordered[lo]) or 0.0) > rate.window_s:
            total -= ordered[lo].lines
            lo += 1
        if total >= rate.lines:
            for g in ordered[lo:hi + 1]:
                g.alarm = True
