"""Plots as inline SVG (and PNG for debugging), drawn with matplotlib's object API.

matplotlib is imported inside the functions: `coldaisle.report` stays cheap to import for the terminal
and the CLI. Figures are built with `Figure` + the Agg canvas, never `pyplot`, so no global backend is
switched and no figure is kept in pyplot's registry (nothing to leak across many plots).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from coldaisle.report.model import Plot, Series

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_POINTS = 2000
_LINESTYLES = {"solid": "-", "dashed": "--", "dotted": ":", "dashdot": "-."}
_THRESHOLD_COLOURS = ("#b36b00", "#8b1a1a")  # amber for lower limits, dark red for the highest
_MARKER_COLOUR = "#444444"
_RC = {"svg.fonttype": "none", "svg.hashsalt": "coldaisle", "font.size": 9, "axes.titlesize": 11}
_SVG_START = re.compile(r"<svg\b")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_ID_REFS = re.compile(r'(\sid="|href="#|url\(#)')


def decimate_minmax(
    times: np.ndarray, values: np.ndarray, max_points: int = MAX_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Keep each bucket's min and max (and one NaN where it has a gap) so peaks and gaps survive."""
    n = int(values.size)
    if n <= max_points:
        return times, values
    nan = np.isnan(values)
    per_bucket = 3 if nan.any() else 2
    size = -(-n // max(max_points // per_bucket, 1))
    buckets = -(-n // size)
    pad = buckets * size - n
    grid = np.concatenate([values, np.full(pad, np.nan)]).reshape(buckets, size)
    real_nan = np.concatenate([nan, np.zeros(pad, dtype=bool)]).reshape(buckets, size)
    lows = np.where(np.isnan(grid), np.inf, grid).argmin(axis=1)
    highs = np.where(np.isnan(grid), -np.inf, grid).argmax(axis=1)
    picks = [lows, highs]
    if per_bucket == 3:
        has_gap = real_nan.any(axis=1)
        picks.append(np.where(has_gap, real_nan.argmax(axis=1), lows))
    offsets = np.arange(buckets)[:, None] * size
    keep = np.unique((np.stack(picks, axis=1) + offsets).ravel())
    keep = keep[keep < n]
    return times[keep], values[keep]


def _dates(seconds: np.ndarray | float) -> Any:
    """UTC epoch seconds as numpy datetime64, which matplotlib's date axis understands natively."""
    return (np.asarray(seconds, dtype=float) * 1000.0).astype("int64").astype("datetime64[ms]")


def _mpl_text(text: str) -> str:
    """Escape `$` (mathtext) and a leading `_` (hidden from legends) so labels print as written."""
    text = text.replace("$", r"\$")
    return f" {text}" if text.startswith("_") else text


def _draw_series(ax: Axes, series: tuple[Series, ...]) -> None:
    """One line per series, distinct colours (tab20 past ten), thin lines so eight racks stay legible."""
    import matplotlib as mpl

    cmap = mpl.colormaps["tab10" if len(series) <= 10 else "tab20"]
    for i, s in enumerate(series):
        times, values = decimate_minmax(s.times, s.values)
        lonely = int(np.isfinite(values).sum()) == 1
        ax.plot(
            _dates(times),
            values,
            label=_mpl_text(s.name),
            color=cmap(i % cmap.N),
            linewidth=1.3,
            linestyle=_LINESTYLES[s.style],
            marker="o" if lonely else None,
            markersize=4,
        )


def _draw_thresholds(ax: Axes, plot: Plot) -> None:
    """Dashed lines labelled at the right: highest above its line, others below, so close ones stay apart."""
    ordered = sorted(plot.thresholds, key=lambda t: t.value)
    for i, th in enumerate(ordered):
        top = i == len(ordered) - 1
        colour = _THRESHOLD_COLOURS[1 if top else 0]
        ax.axhline(th.value, color=colour, linestyle="--", linewidth=1.0)
        label = dict(xytext=(-3, 2 if top else -2), ha="right", va="bottom" if top else "top", color=colour)
        ax.annotate(
            _mpl_text(th.label),
            xy=(1.0, th.value),
            xycoords=("axes fraction", "data"),
            **label,
            textcoords="offset points",
            fontsize=8,
        )


def _draw_markers(ax: Axes, plot: Plot) -> None:
    """Dotted vertical lines labelled along the top, tying the chart to moments in the story."""
    for mk in plot.markers:
        x = _dates(mk.time)
        ax.axvline(x, color=_MARKER_COLOUR, linestyle=":", linewidth=1.0)
        label = dict(xytext=(2, -3), ha="left", va="top", rotation=90, color=_MARKER_COLOUR)
        ax.annotate(
            _mpl_text(mk.label),
            xy=(x, 1.0),
            xycoords=("data", "axes fraction"),
            **label,
            textcoords="offset points",
            fontsize=8,
        )


def _format_time_axis(ax: Axes, plot: Plot) -> None:
    """HH:MM in UTC; add the day when the plot spans more than one."""
    import matplotlib.dates as mdates

    times = [s.times for s in plot.series if s.times.size]
    span = float(np.ptp(np.concatenate(times))) if times else 0.0
    fmt = "%H:%M" if span <= 86400 else "%d %H:%M"
    locator = mdates.AutoDateLocator(tz=mdates.UTC, minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=mdates.UTC))
    ax.set_xlabel("time (UTC)")


def build_figure(plot: Plot) -> Figure:
    """Lay out one plot: legend below the axes in as many columns as fit, so many series stay readable."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    legend_rows = -(-len(plot.series) // 5)
    fig = Figure(figsize=(10, 3.6 + 0.22 * legend_rows), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _draw_series(ax, plot.series)
    _draw_thresholds(ax, plot)
    _draw_markers(ax, plot)
    _format_time_axis(ax, plot)
    ax.set_title(_mpl_text(plot.title), loc="left")
    ax.set_ylabel(_mpl_text(plot.ylabel))
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    if plot.series:
        fig.legend(loc="outside lower center", ncol=min(len(plot.series), 5), frameon=False, fontsize=8)
    return fig


def plot_to_svg(plot: Plot, id_prefix: str = "") -> str:
    """An `<svg>` element ready to inline in HTML: no XML header, comments or metadata; ids prefixed."""
    import matplotlib as mpl

    with mpl.rc_context(_RC):
        fig = build_figure(plot)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    start = _SVG_START.search(svg)
    svg = svg[start.start() :] if start else svg
    svg = _METADATA.sub("", _COMMENT.sub("", svg))
    if id_prefix:
        svg = _ID_REFS.sub(lambda m: m.group(1) + id_prefix, svg)
    return svg.strip()


def plot_to_png(plot: Plot, path: str | Path) -> Path:
    """Write the plot as a PNG, for looking at a chart while debugging a producer."""
    import matplotlib as mpl

    with mpl.rc_context(_RC):
        build_figure(plot).savefig(path, format="png", dpi=110)
    return Path(path)
