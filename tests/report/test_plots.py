"""Plots keep what matters (peaks, gaps, labels) while staying small enough to inline."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from coldaisle.report.model import Marker, Plot, Series, Threshold
from coldaisle.report.plots import MAX_POINTS, decimate_minmax, plot_to_png, plot_to_svg

T0 = 1_700_000_000.0


def _spiky(n: int = 10_000, spike_at: int = 6_543, spike: float = 97.5) -> tuple[np.ndarray, np.ndarray]:
    """A gently varying series with one sharp spike, like a single sensor reading at the alarm."""
    times = T0 + np.arange(n, dtype=float)
    values = 40.0 + np.sin(np.arange(n) / 250.0)
    values[spike_at] = spike
    return times, values


def test_decimation_keeps_the_spike_and_bounds_the_size() -> None:
    times, values = _spiky()
    t, v = decimate_minmax(times, values)
    assert len(v) <= MAX_POINTS
    assert v.max() == 97.5
    assert t[np.argmax(v)] == times[6_543]
    assert v.min() == values.min()


def test_decimation_keeps_time_order_and_first_last_extremes() -> None:
    times, values = _spiky(n=7_777)
    t, v = decimate_minmax(times, values, max_points=500)
    assert len(v) <= 500
    assert np.all(np.diff(t) > 0)
    assert set(v).issubset(set(values))


def test_decimation_keeps_a_gap() -> None:
    times, values = _spiky()
    values[3_000:3_400] = np.nan
    t, v = decimate_minmax(times, values)
    assert len(v) <= MAX_POINTS
    inside = (t >= times[3_000]) & (t < times[3_400])
    assert inside.any()
    assert np.isnan(v[inside]).all()
    assert v[np.isfinite(v)].max() == 97.5


def test_decimation_keeps_a_short_gap_inside_one_bucket() -> None:
    times, values = _spiky()
    values[5_001] = np.nan
    _, v = decimate_minmax(times, values)
    assert np.isnan(v).sum() == 1


def test_short_series_are_untouched() -> None:
    times, values = _spiky(n=100, spike_at=50)
    t, v = decimate_minmax(times, values)
    np.testing.assert_array_equal(v, values)
    np.testing.assert_array_equal(t, times)


def _plot(series: tuple[Series, ...]) -> Plot:
    """A plot with the guides an incident chart carries."""
    return Plot(
        "Rack 4 <shelf 2> $inlet",
        "°C",
        series,
        thresholds=(Threshold("slowdown 92 C", 92.0), Threshold("shutdown 97 C", 97.0)),
        markers=(Marker(T0 + 240, "03:04 deadlock"),),
    )


def test_svg_is_inlinable_and_labelled() -> None:
    times, values = _spiky()
    svg = plot_to_svg(_plot((Series("rack-4", times, values, "C"),)))
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<!--" not in svg
    for label in ("rack-4", "slowdown 92 C", "shutdown 97 C", "03:04 deadlock", "$inlet"):
        assert label in svg
    assert "&lt;shelf 2&gt;" in svg
    assert "<shelf 2>" not in svg
    assert "<text" in svg  # svg.fonttype none: text stays text, not glyph paths


def test_svg_time_axis_is_utc_hh_mm() -> None:
    times = T0 - T0 % 86400 + 3 * 3600 + np.arange(0, 1800, 10.0)
    svg = plot_to_svg(Plot("p", "W", (Series("a", times, np.ones(times.size), "W"),)))
    labels = re.findall(r">(\d\d:\d\d)<", svg)
    assert labels
    assert all(label.startswith("03:") for label in labels)


def test_svg_file_size_stays_bounded_for_long_series() -> None:
    times, values = _spiky(n=200_000, spike_at=100_000)
    svg = plot_to_svg(Plot("long", "C", (Series("a", times, values, "C"),)))
    assert len(svg) < 400_000


def test_id_prefix_keeps_ids_unique_across_inlined_plots() -> None:
    times, values = _spiky(n=50, spike_at=10)
    plot = Plot("p", "C", (Series("a", times, values, "C"),))
    ids_a = set(re.findall(r'\sid="([^"]+)"', plot_to_svg(plot, id_prefix="a-")))
    ids_b = set(re.findall(r'\sid="([^"]+)"', plot_to_svg(plot, id_prefix="b-")))
    assert ids_a and not ids_a & ids_b
    svg = plot_to_svg(plot, id_prefix="a-")
    for ref in re.findall(r'href="#([^"]+)"|url\(#([^)]+)\)', svg):
        assert (ref[0] or ref[1]).startswith("a-")


@pytest.mark.parametrize(
    "series",
    [
        (),
        (Series("empty", [], [], "W"),),
        (Series("nan", T0 + np.arange(5.0), np.full(5, np.nan), "W"),),
        (Series("one", [T0], [3.0], "W"),),
        (Series("flat", T0 + np.arange(100.0), np.full(100, 5.0), "W", style="dotted"),),
    ],
)
def test_degenerate_series_still_render(series: tuple[Series, ...]) -> None:
    svg = plot_to_svg(Plot("degenerate", "W", series))
    assert svg.startswith("<svg")


def test_many_plots_leave_no_pyplot_figures_behind() -> None:
    times, values = _spiky(n=100, spike_at=10)
    for _ in range(20):
        plot_to_svg(Plot("p", "C", (Series("a", times, values, "C"),)))
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []


def test_png_for_debugging(tmp_path) -> None:
    times, values = _spiky(n=500, spike_at=10)
    path = plot_to_png(_plot((Series("a", times, values, "C"),)), tmp_path / "p.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_series_is_sorted_read_only_and_validated() -> None:
    s = Series("a", [3.0, 1.0, 2.0], [30.0, 10.0, 20.0], "C")
    np.testing.assert_array_equal(s.values, [10.0, 20.0, 30.0])
    with pytest.raises(ValueError):
        s.values[0] = 1.0
    with pytest.raises(ValueError, match="2 times but 1 values"):
        Series("b", [1.0, 2.0], [1.0], "C")
    with pytest.raises(ValueError, match="style"):
        Series("c", [1.0], [1.0], "C", style="wiggly")
