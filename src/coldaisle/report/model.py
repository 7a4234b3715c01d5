"""The plain data a report is made of, plus the small pure helpers every renderer shares.

Producers (demo, triage, run bundles) build these frozen values; renderers (HTML, terminal) only read
them, so a report can be rendered twice, in two formats, and come out the same.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np

LINE_STYLES = ("solid", "dashed", "dotted", "dashdot")
Severity = Literal["critical", "error", "warning", "info", "unknown"]
_SEVERITY_ALIASES: dict[str, Severity] = {
    **dict.fromkeys(("critical", "crit", "fatal", "emerg", "emergency", "alert", "panic"), "critical"),
    **dict.fromkeys(("error", "err", "failed", "failure"), "error"),
    **dict.fromkeys(("warning", "warn", "degraded"), "warning"),
    **dict.fromkeys(("info", "notice", "ok", "debug", "resolved", "done"), "info"),
}
_NUMERIC = re.compile(r"^[-+−]?(\d[\d,_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*[%A-Za-z°/×]{0,6}$")
_BLANK_CELLS = frozenset({"", "-", "—", "–", "n/a", "NaN", "nan"})
_INLINE = re.compile(r"`([^`\n]+)`|\*\*(.+?)\*\*", re.DOTALL)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True, eq=False)
class Series:
    """One named line over UTC time; NaN values are gaps (a lost GPU, a silent exporter)."""

    name: str
    times: np.ndarray
    values: np.ndarray
    unit: str
    style: str = "solid"

    def __post_init__(self) -> None:
        """Store read-only float copies sorted by time, so renderers may assume order."""
        times = np.array(self.times, dtype=float).ravel()
        values = np.array(self.values, dtype=float).ravel()
        if times.shape != values.shape:
            raise ValueError(f"series {self.name!r}: {times.size} times but {values.size} values")
        if self.style not in LINE_STYLES:
            raise ValueError(f"series {self.name!r}: style {self.style!r} is not one of {LINE_STYLES}")
        if times.size > 1 and np.any(np.diff(times) < 0):
            order = np.argsort(times, kind="stable")
            times, values = times[order], values[order]
        times.setflags(write=False)
        values.setflags(write=False)
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class Threshold:
    """A horizontal line that gives values meaning (e.g. "slowdown 92 C")."""

    label: str
    value: float


@dataclass(frozen=True)
class Marker:
    """A vertical line at a UTC epoch time that ties a plot to the story (e.g. "03:04 deadlock")."""

    time: float
    label: str


@dataclass(frozen=True, eq=False)
class Plot:
    """A chart of series over time, with the thresholds and moments a reader needs to judge it."""

    title: str
    ylabel: str
    series: tuple[Series, ...]
    thresholds: tuple[Threshold, ...] = ()
    markers: tuple[Marker, ...] = ()


@dataclass(frozen=True)
class TimelineRow:
    """One line of an incident timeline; `count` folds repeats of the same event."""

    time: float
    host: str
    severity: str
    what: str
    detail: str = ""
    count: int = 1


@dataclass(frozen=True)
class Table:
    """Rows of already-formatted cells, so every renderer shows the same digits."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        """Reject ragged rows here, where the producer's mistake is, not deep inside a renderer."""
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                want = len(self.columns)
                raise ValueError(f"table {self.title!r}: row {i} has {len(row)} cells, not {want}")

    def numeric_columns(self) -> tuple[bool, ...]:
        """Which columns hold only numbers (units allowed), so renderers can right-align them."""
        return tuple(is_numeric_column([str(row[i]) for row in self.rows]) for i in range(len(self.columns)))


@dataclass(frozen=True, eq=False)
class Section:
    """A titled part of a report: prose, then tables, plots and a timeline."""

    title: str
    text: str = ""
    tables: tuple[Table, ...] = ()
    plots: tuple[Plot, ...] = ()
    timeline: tuple[TimelineRow, ...] = ()


@dataclass(frozen=True, eq=False)
class Report:
    """A whole document: what happened, when it was written, and its sections in reading order."""

    title: str
    subtitle: str
    generated_at: float
    sections: tuple[Section, ...]


def is_numeric_column(cells: Sequence[str]) -> bool:
    """True when every non-blank cell reads as a number, optionally with a short unit ("92 C", "12%")."""
    filled = [c.strip() for c in cells if c.strip() not in _BLANK_CELLS]
    return bool(filled) and all(_NUMERIC.match(c) for c in filled)


def severity_level(severity: str) -> Severity:
    """Fold the many spellings of log severities into the five levels the palette knows."""
    return _SEVERITY_ALIASES.get(severity.strip().lower(), "unknown")


def paragraphs(text: str) -> list[str]:
    """Split prose on blank lines, dropping empty paragraphs."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip()]


def inline_spans(paragraph: str) -> list[tuple[Literal["text", "bold", "code"], str]]:
    """Split a paragraph into plain, `**bold**` and `` `code` `` runs; nothing else is markup."""
    spans: list[tuple[Literal["text", "bold", "code"], str]] = []
    position = 0
    for match in _INLINE.finditer(paragraph):
        if match.start() > position:
            spans.append(("text", paragraph[position : match.start()]))
        spans.append(("code", match.group(1)) if match.group(1) is not None else ("bold", match.group(2)))
        position = match.end()
    if position < len(paragraph):
        spans.append(("text", paragraph[position:]))
    return spans


def format_utc(seconds: float, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """Format UTC epoch seconds; reports are read across time zones, so always UTC."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime(fmt)


def timeline_time_format(times: Sequence[float]) -> str:
    """HH:MM:SS when all times share a UTC day, else with the date, so short timelines stay short."""
    days = {int(t // 86400) for t in times}
    return "%H:%M:%S" if len(days) <= 1 else "%m-%d %H:%M:%S"
