"""The same report in a terminal: rules, prose, rich tables, a coloured timeline and braille line charts.

An SRE on a jump host has no browser; the charts are text (2x4 braille dots per cell) so the shape of an
incident (the climb, the spike, the gap) reads over ssh at whatever width the terminal has.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from coldaisle.report.model import (
    Plot,
    Report,
    Section,
    Table,
    TimelineRow,
    format_utc,
    inline_spans,
    paragraphs,
    severity_level,
    timeline_time_format,
)
from coldaisle.report.plots import decimate_minmax

SERIES_COLOURS = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "bright_red",
    "bright_cyan",
    "bright_magenta",
    "bright_green",
    "bright_yellow",
    "bright_blue",
    "white",
)
SEVERITY_STYLES = {
    "critical": "bold white on dark_red",
    "error": "bold red",
    "warning": "bold yellow",
    "info": "green",
    "unknown": "dim",
}
_THRESHOLD_STYLE, _MARKER_STYLE = "red", "bright_black"
_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int64)
_INLINE_STYLES = {"text": "", "bold": "bold", "code": "bold cyan"}


class _Canvas:
    """A grid of braille dots; each cell keeps the colour of the last layer drawn into it."""

    def __init__(self, cols: int, rows: int) -> None:
        """An empty canvas of `cols` x `rows` character cells (2x4 dots each)."""
        self.cols, self.rows = cols, rows
        self.bits = np.zeros((rows, cols), dtype=np.int64)
        self.layer = np.full((rows, cols), -1, dtype=np.int64)

    def dots(self, x: np.ndarray, y: np.ndarray, layer: int) -> None:
        """Set dots at fractional dot coordinates (y up); layer indexes the style list."""
        xi = np.clip(np.rint(x).astype(np.int64), 0, self.cols * 2 - 1)
        yi = np.clip(np.rint(self.rows * 4 - 1 - y).astype(np.int64), 0, self.rows * 4 - 1)
        np.bitwise_or.at(self.bits, (yi // 4, xi // 2), _BRAILLE_BITS[yi % 4, xi % 2])
        self.layer[yi // 4, xi // 2] = layer

    def line_text(self, row: int, styles: list[str]) -> Text:
        """One row of the canvas as styled braille characters."""
        text = Text()
        for bits, layer in zip(self.bits[row], self.layer[row], strict=True):
            text.append(chr(0x2800 + int(bits)), styles[layer] if layer >= 0 else "")
        return text


def _segments(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dots along every segment between consecutive finite points; NaN breaks the line (a gap)."""
    ok = np.isfinite(y)
    both = ok[:-1] & ok[1:]
    x0, y0, dx, dy = x[:-1][both], y[:-1][both], np.diff(x)[both], np.diff(y)[both]
    steps = np.ceil(np.maximum(np.abs(dx), np.abs(dy))).astype(np.int64) + 2
    seg = np.repeat(np.arange(steps.size), steps)
    frac = (np.arange(seg.size) - np.repeat(np.cumsum(steps) - steps, steps)) / (steps[seg] - 1)
    xs = np.concatenate([x0[seg] + dx[seg] * frac, x[ok]])
    return xs, np.concatenate([y0[seg] + dy[seg] * frac, y[ok]])


def _ranges(plot: Plot) -> tuple[float, float, float, float] | None:
    """Time and value extents over finite data and thresholds; None when there is nothing to draw."""
    finite = [(s.times[m], s.values[m]) for s in plot.series if (m := np.isfinite(s.values)).any()]
    if not finite:
        return None
    times = np.concatenate([t for t, _ in finite])
    values = np.concatenate([v for _, v in finite] + [np.array([t.value for t in plot.thresholds])])
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        lo, hi = lo - max(abs(lo) * 0.05, 0.5), hi + max(abs(hi) * 0.05, 0.5)
    return float(times.min()), float(times.max()), lo, hi


def _draw(plot: Plot, canvas: _Canvas, extent: tuple[float, float, float, float]) -> None:
    """Thresholds and markers first (dotted), then series on top, each in its own colour."""
    t0, t1, lo, hi = extent
    width, height = canvas.cols * 2 - 1, canvas.rows * 4 - 1
    sx = width / (t1 - t0) if t1 > t0 else 0.0
    n = len(plot.series)
    for th in plot.thresholds:
        xs = np.arange(0, width + 1, 2, dtype=float)
        canvas.dots(xs, np.full(xs.size, (th.value - lo) / (hi - lo) * height), n)
    for mk in plot.markers:
        if t0 <= mk.time <= t1:
            ys = np.arange(0, height + 1, 2, dtype=float)
            canvas.dots(np.full(ys.size, (mk.time - t0) * sx), ys, n + 1)
    for i, s in enumerate(plot.series):
        times, values = decimate_minmax(s.times, s.values, max_points=width * 4 + 8)
        if np.isfinite(values).any():
            x, y = (times - t0) * sx, (values - lo) / (hi - lo) * height
            canvas.dots(*_segments(x, y), i)


def _legend(plot: Plot, styles: list[str], width: int) -> list[Text]:
    """Series in their colours, then thresholds and markers; wraps between entries, never inside one."""
    entries = [Text("━━ ", styles[i]).append(s.name) for i, s in enumerate(plot.series)]
    entries += [Text("┄┄ ", _THRESHOLD_STYLE).append(t.label) for t in plot.thresholds]
    entries += [Text("┆ ", _MARKER_STYLE).append(m.label) for m in plot.markers]
    lines = [Text()]
    for entry in entries:
        if lines[-1].cell_len and lines[-1].cell_len + 2 + entry.cell_len > width:
            lines.append(Text())
        lines[-1].append("  " if lines[-1].cell_len else "").append_text(entry)
    return lines


def chart_text(plot: Plot, width: int, rows: int = 8) -> Text:
    """A braille line chart of `plot` that fits `width` columns: y min/max, HH:MM at both ends, legend."""
    title = Text(plot.title, style="bold").append(f"  ({plot.ylabel})" if plot.ylabel else "", "dim")
    extent = _ranges(plot)
    if extent is None:
        return title.append("\n  (no data)", "dim")
    t0, t1, lo, hi = extent
    labels = [f"{hi:.4g}", f"{lo:.4g}"]
    pad = max(len(s) for s in labels)
    canvas = _Canvas(max(width - pad - 2, 10), rows)
    styles = [SERIES_COLOURS[i % len(SERIES_COLOURS)] for i in range(len(plot.series))]
    styles += [_THRESHOLD_STYLE, _MARKER_STYLE]
    _draw(plot, canvas, extent)
    lines = [title]
    for r in range(rows):
        label = labels[0] if r == 0 else labels[1] if r == rows - 1 else ""
        axis = Text(f"{label:>{pad}} ┤" if label else f"{'':>{pad}} │")
        lines.append(axis.append_text(canvas.line_text(r, styles)))
    lines.append(Text(f"{'':>{pad}} └" + "─" * canvas.cols))
    left, right = format_utc(t0, "%H:%M"), format_utc(t1, "%H:%M UTC")
    lines.append(Text(f"{'':>{pad}}  {left}{right:>{max(canvas.cols - len(left), len(right))}}", "dim"))
    lines.extend(_legend(plot, styles, width))
    return Text("\n").join(lines)


def _table(table: Table) -> RichTable:
    """A rich table, numbers right-aligned like the HTML one."""
    out = RichTable(title=table.title or None, title_justify="left", header_style="bold")
    for name, numeric in zip(table.columns, table.numeric_columns(), strict=True):
        out.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in table.rows:
        out.add_row(*(Text(str(c)) for c in row))
    return out


def _timeline(rows: tuple[TimelineRow, ...]) -> RichTable:
    """The timeline, each severity in its palette colour and folded repeats shown as ×N."""
    out = RichTable(title="Timeline", title_justify="left", header_style="bold")
    for name in ("Time (UTC)", "Host", "Severity", "What", "Detail"):
        out.add_column(name, overflow="fold", no_wrap=name == "Time (UTC)")
    fmt = timeline_time_format([r.time for r in rows])
    for r in rows:
        style = SEVERITY_STYLES[severity_level(r.severity)]
        what = Text(r.what).append(f" ×{r.count}" if r.count > 1 else "", "bold")
        severity, detail = Text(r.severity, style), Text(r.detail, "dim")
        out.add_row(format_utc(r.time, fmt), Text(r.host), severity, what, detail)
    return out


def _prose(text: str) -> list[Text]:
    """Paragraphs with **bold** and `code` styled; nothing is read as rich markup."""
    return [Text.assemble(*((s, _INLINE_STYLES[k]) for k, s in inline_spans(p))) for p in paragraphs(text)]


def _section(section: Section, console: Console) -> None:
    """One section under a rule, in the same order as the HTML."""
    console.rule(Text(section.title, style="bold"), align="left")
    for para in _prose(section.text):
        console.print(para)
        console.print()
    for table in section.tables:
        console.print(_table(table))
    for plot in section.plots:
        console.print(chart_text(plot, console.width), soft_wrap=False)
        console.print()
    if section.timeline:
        console.print(_timeline(section.timeline))


def render_terminal(report: Report, console: Console) -> None:
    """Print the whole report to `console`, fitting its width."""
    console.rule(Text(report.title, style="bold"))
    if report.subtitle:
        console.print(Text(report.subtitle), justify="center")
    console.print(Text(f"generated {format_utc(report.generated_at)}", style="dim"), justify="center")
    for section in report.sections:
        console.print()
        _section(section, console)
