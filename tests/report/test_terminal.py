"""The terminal view shows the same report over ssh, at any width, whatever the data looks like."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from coldaisle.report import (
    Marker,
    Plot,
    Report,
    Section,
    Series,
    Table,
    Threshold,
    TimelineRow,
    render_terminal,
)
from coldaisle.report.terminal import chart_text

T0 = 1_699_930_800.0  # 2023-11-14 03:00:00 UTC
BRAILLE = range(0x2801, 0x2900)


def _render(report: Report, width: int = 100) -> str:
    console = Console(record=True, width=width)
    render_terminal(report, console)
    return console.export_text()


def _incident() -> Report:
    times = T0 + np.arange(0, 1800, 5.0)
    racks = tuple(Series(f"rack-{i}", times, 18.0 + i + np.arange(times.size) * 0.2, "C") for i in range(8))
    plot = Plot(
        "Cold aisle inlet",
        "°C",
        racks,
        (Threshold("slowdown 92 C", 92.0),),
        (Marker(T0 + 240, "03:04 deadlock"),),
    )
    table = Table("Hosts", ("host", "power"), (("node-gpu-88", "700 W"), ("node-gpu-102", "12.5 kW")))
    timeline = (
        TimelineRow(T0 + 244, "node-gpu-88", "warning", "PCIe clock jitter"),
        TimelineRow(T0 + 960, "node-gpu-102", "critical", "Xid 79", "fell off the bus", count=8),
    )
    return Report(
        "Incident [bold]x[/bold]",
        "replay",
        T0 + 7200,
        (
            Section("Summary", "Collective **deadlocked** at `03:04`.\n\nSecond paragraph.", (table,)),
            Section("Thermals", plots=(plot,)),
            Section("Events", timeline=timeline),
        ),
    )


def test_titles_cells_and_plot_labels_are_printed() -> None:
    out = _render(_incident())
    for expected in (
        "Incident [bold]x[/bold]",
        "Summary",
        "Thermals",
        "Events",
        "node-gpu-102",
        "12.5 kW",
        "Cold aisle inlet",
        "rack-0",
        "rack-7",
        "slowdown 92 C",
        "03:04 deadlock",
        "PCIe clock jitter",
        "Xid 79 ×8",
        "fell off the bus",
        "2023-11-14 05:00:00 UTC",
    ):
        assert expected in out, expected
    assert "**" not in out and "`" not in out
    assert "Collective deadlocked at 03:04." in out


def test_chart_has_axis_labels_and_time_at_both_ends() -> None:
    times = T0 + np.arange(0, 1800, 5.0)
    plot = Plot("p", "C", (Series("a", times, np.linspace(18.0, 95.0, times.size), "C"),))
    lines = chart_text(plot, width=80).plain.splitlines()
    assert lines[1].startswith("95 ┤")
    assert any(line.startswith("18 ┤") for line in lines)
    assert "03:00" in lines[-2] and "03:29 UTC" in lines[-2]
    assert any(ord(ch) in BRAILLE for ch in "".join(lines))


@pytest.mark.parametrize("width", [40, 80, 160])
def test_chart_fits_the_console_width(width: int) -> None:
    out = _render(_incident(), width=width)
    chart_lines = [line for line in out.splitlines() if "┤" in line or "│" in line[:8]]
    assert chart_lines
    assert all(len(line) <= width for line in out.splitlines())


def test_gap_leaves_blank_columns() -> None:
    times = T0 + np.arange(100.0)
    values = np.full(100, 5.0)
    values[:50] = np.linspace(0, 10, 50)
    values[40:60] = np.nan
    text = chart_text(Plot("gap", "C", (Series("a", times, values, "C"),)), width=60, rows=4).plain
    grid = [line.split("┤", 1)[-1].split("│", 1)[-1] for line in text.splitlines()[1:5]]
    columns = ["".join(row[c] for row in grid) for c in range(len(grid[0]))]
    blank = [all(ord(ch) == 0x2800 for ch in col) for col in columns]
    middle = len(columns) // 2
    assert blank[middle]
    assert not blank[0] and not blank[-1]


@pytest.mark.parametrize(
    ("series", "expect"),
    [
        ((), "(no data)"),
        ((Series("empty", [], [], "W"),), "(no data)"),
        ((Series("nan", T0 + np.arange(5.0), np.full(5, np.nan), "W"),), "(no data)"),
        ((Series("one", [T0], [3.0], "W"),), "one"),
        ((Series("flat", T0 + np.arange(100.0), np.full(100, 5.0), "W"),), "flat"),
    ],
)
def test_degenerate_plots_do_not_crash(series: tuple[Series, ...], expect: str) -> None:
    report = Report("r", "", T0, (Section("Odd data", plots=(Plot("odd", "W", series),)),))
    out = _render(report)
    assert "Odd data" in out and "odd" in out and expect in out


def test_single_point_and_constant_series_are_visible() -> None:
    for series in (
        Series("one", [T0], [3.0], "W"),
        Series("flat", T0 + np.arange(9.0), np.full(9, 5.0), "W"),
    ):
        chart = chart_text(Plot("p", "W", (series,)), width=60).plain
        assert any(ord(ch) in BRAILLE for ch in chart)


def test_eight_long_series_render_with_every_legend_entry() -> None:
    times = T0 + np.arange(200_000.0)
    series = tuple(Series(f"r{i}", times, np.sin(times / 1000 + i), "C") for i in range(8))
    text = chart_text(Plot("big", "C", series), width=120).plain
    assert "r7" in text
