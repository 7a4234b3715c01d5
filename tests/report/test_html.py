"""The HTML report opens anywhere, offline, shows every cell and never runs what a log line contains."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from coldaisle.report import (
    Marker,
    Plot,
    Report,
    Section,
    Series,
    Table,
    Threshold,
    TimelineRow,
    render_html,
    write_html,
)

T0 = 1_699_930_800.0  # 2023-11-14 03:00:00 UTC
CHECKED_TAGS = (
    "html",
    "head",
    "body",
    "header",
    "main",
    "section",
    "table",
    "thead",
    "tbody",
    "tr",
    "td",
    "th",
    "svg",
    "figure",
    "p",
    "h2",
    "h3",
    "style",
    "title",
)


class _TagCounter(HTMLParser):
    """Counts start and end tags, and collects every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.opened: dict[str, int] = {}
        self.closed: dict[str, int] = {}
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.opened[tag] = self.opened.get(tag, 0) + 1
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action", "poster")]
        self.urls += re.findall(r"url\(([^)]*)\)", " ".join(v or "" for _, v in attrs))

    def handle_endtag(self, tag: str) -> None:
        self.closed[tag] = self.closed.get(tag, 0) + 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(document: str) -> _TagCounter:
    parser = _TagCounter()
    parser.feed(document)
    parser.close()
    return parser


def _series(n: int = 600) -> tuple[Series, ...]:
    times = T0 + np.arange(n) * 3.0
    return tuple(Series(f"rack-{i}", times, 18.0 + i + np.arange(n) * 0.1, "C") for i in range(8))


def _report(title: str = "Incident <script>alert('x')</script>") -> Report:
    plot = Plot(
        "Cold aisle inlet",
        "°C",
        _series(),
        (Threshold("slowdown 92 C", 92.0),),
        (Marker(T0 + 240, "03:04 deadlock"),),
    )
    power = Plot("Power", "kW", (Series("cluster", T0 + np.arange(10.0), np.linspace(100, 358, 10), "kW"),))
    table = Table(
        "Hosts",
        ("host", "power", "note"),
        (("node-gpu-88", "700 W", "PCIe jitter"), ("node-gpu-102", "12.5 kW", "a < b & c > d")),
    )
    timeline = (
        TimelineRow(T0 + 244, "node-gpu-88", "warning", "PCIe clock jitter"),
        TimelineRow(T0 + 960, "node-gpu-102", "critical", "Xid 79", "GPU has fallen off the bus", count=8),
        TimelineRow(T0 + 4320, "node-gpu-44", "error", "NCCL bootstrap timeout", "<img src=x onerror=1>"),
    )
    return Report(
        title,
        "prometheus-unbound replay",
        T0 + 7200,
        (
            Section(
                "Summary", "The collective **deadlocked** at `03:04`.\n\nSecond <b>paragraph</b>.", (table,)
            ),
            Section("Thermals", plots=(plot, power)),
            Section("Timeline", timeline=timeline),
        ),
    )


def test_document_is_well_formed() -> None:
    parsed = _parse(render_html(_report()))
    for tag in CHECKED_TAGS:
        assert parsed.opened.get(tag, 0) == parsed.closed.get(tag, 0), tag
    assert parsed.opened["section"] == 3
    assert parsed.opened["html"] == parsed.opened["body"] == 1


def test_one_svg_per_plot() -> None:
    assert render_html(_report()).count("<svg ") == 2


def test_every_table_cell_and_timeline_field_is_shown() -> None:
    text = " ".join(_parse(render_html(_report())).text)
    for cell in ("node-gpu-88", "700 W", "PCIe jitter", "12.5 kW", "a < b & c > d"):
        assert cell in text
    for field in ("PCIe clock jitter", "GPU has fallen off the bus", "NCCL bootstrap timeout", "×8"):
        assert field in text
    assert "03:04:04" in text and "04:12:00" in text
    assert "2023-11-14 05:00:00 UTC" in text


def test_text_is_escaped_and_nothing_can_run() -> None:
    document = render_html(_report())
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in document
    assert "<script" not in document.lower()
    assert "<img" not in document
    assert "&lt;b&gt;paragraph&lt;/b&gt;" in document
    assert "<strong>deadlocked</strong>" in document
    assert "<code>03:04</code>" in document


def test_no_network_urls() -> None:
    document = render_html(_report())
    parsed = _parse(document)
    assert parsed.urls
    assert all(u.startswith("#") for u in parsed.urls), parsed.urls
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", document)
    assert not re.search(r"@import", document)
    outside_namespaces = re.sub(r'xmlns(:\w+)?="[^"]*"', "", document)
    assert not re.search(r"https?://", outside_namespaces)


def test_numeric_columns_are_right_aligned_and_severities_badged() -> None:
    document = render_html(_report())
    assert '<th class="num">power</th>' in document
    assert '<td class="num">700 W</td>' in document
    assert "<th>note</th>" in document
    for level in ("critical", "error", "warning"):
        assert f'class="badge sev-{level}"' in document


def test_write_html_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    assert write_html(_report(), target) == target
    assert target.read_text(encoding="utf-8") == render_html(_report())
    assert os.listdir(tmp_path) == ["report.html"]


class _Unprintable:
    """A cell whose text cannot be produced: render fails midway through the document."""

    def __str__(self) -> str:
        raise RuntimeError("boom")


def test_failed_render_leaves_existing_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("previous report")
    bad = Report("t", "s", T0, (Section("Broken", tables=(Table("x", ("a",), ((_Unprintable(),),)),)),))
    with pytest.raises(RuntimeError, match="boom"):
        write_html(bad, target)
    assert target.read_text() == "previous report"
    assert os.listdir(tmp_path) == ["report.html"]


def test_failed_rename_removes_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    target.write_text("previous report")

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk went away"):
        write_html(_report(), target)
    assert target.read_text() == "previous report"
    assert os.listdir(tmp_path) == ["report.html"]


def test_ragged_table_is_rejected_where_it_is_built() -> None:
    with pytest.raises(ValueError, match="row 0 has 1 cells, not 2"):
        Table("t", ("a", "b"), (("only",),))
