"""Thermal sensor CSV: a time column and either `sensor,celsius` rows or one column per sensor.

Readings become temperature samples for the report's plot and the heat rule; they are not log lines, so
nothing here goes through the catalog. Rows that do not parse are counted, never fatal.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator

from coldaisle.triage.interface import FileContext, Hit, Sample, Source, SourceKind
from coldaisle.triage.stamps import parse

_TIME = re.compile(r"^(time|timestamp|date|datetime|ts|utc)$", re.IGNORECASE)
_VALUE = re.compile(r"^(celsius|temp\w*|value|reading|degc|c)$", re.IGNORECASE)
MAX_PER_SENSOR = 20_000  # beyond this a sensor's series is thinned (every other sample), bounding memory


def looks_like_sensor_csv(first_line: str) -> bool:
    """A CSV header with a time column and a temperature-like column (or several sensor columns)."""
    cols = [c.strip().lower() for c in first_line.split(",")]
    return len(cols) >= 2 and any(_TIME.match(c) for c in cols) and any(
        _VALUE.match(c) or "temp" in c or c.endswith("_c") or "celsius" in c for c in cols)


def _time(cell: str) -> float | None:
    cell = cell.strip()
    try:
        return float(cell)  # epoch seconds
    except ValueError:
        return parse(cell, 1970).time


class SensorCsvSource(Source):
    """Reads temperature CSVs into ctx.samples."""

    kind = SourceKind.SENSOR_CSV

    def hits(self, chunks: Iterator[bytes], ctx: FileContext) -> Iterator[Hit]:
        """Collect samples; yields no hits."""
        lines = (line for chunk in _lines(chunks) for line in chunk)
        reader = csv.reader(lines)
        header = [c.strip() for c in next(reader, [])]
        t_col = next((i for i, c in enumerate(header) if _TIME.match(c)), 0)
        long = [i for i, c in enumerate(header) if c.lower() in ("sensor", "name", "location")]
        v_col = next((i for i, c in enumerate(header) if _VALUE.match(c)), -1)
        per: dict[str, list[Sample]] = {}
        for row in reader:
            ctx.stats.lines += 1
            for sensor, cell in _cells(row, header, t_col, long[0] if long and v_col >= 0 else None, v_col):
                t = _time(row[t_col]) if t_col < len(row) else None
                try:
                    c = float(cell)
                except ValueError:
                    continue
                if t is not None:
                    _add(per.setdefault(sensor, []), Sample(t, sensor, c))
        for series in per.values():
            ctx.samples.extend(series)
        return iter(())


def _cells(row: list[str], header: list[str], t_col: int, s_col: int | None, v_col: int) -> list[tuple[str, str]]:
    if s_col is not None:
        return [(row[s_col], row[v_col])] if max(s_col, v_col) < len(row) else []
    return [(header[i], row[i]) for i in range(min(len(header), len(row))) if i != t_col]


def _add(series: list[Sample], sample: Sample) -> None:
    series.append(sample)
    if len(series) > MAX_PER_SENSOR:
        del series[::2]


def _lines(chunks: Iterator[bytes]) -> Iterator[list[str]]:
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        yield data[:cut].decode("utf-8", "replace").splitlines()
    if carry:
        yield [carry.decode("utf-8", "replace")]
