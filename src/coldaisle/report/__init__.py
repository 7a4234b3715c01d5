"""Rendering shared by `coldaisle demo`, triage and run bundles: one data model, HTML and terminal views.

Producers build a `Report` of plain values; `render_html`/`write_html` and `render_terminal` draw it.
This package imports nothing from sim, policy or agent: those parts depend on report, never the reverse.
"""

from coldaisle.report.html import render_html, write_html
from coldaisle.report.model import (
    Marker,
    Plot,
    Report,
    Section,
    Series,
    Table,
    Threshold,
    TimelineRow,
)
from coldaisle.report.terminal import render_terminal

__all__ = [
    "Marker",
    "Plot",
    "Report",
    "Section",
    "Series",
    "Table",
    "Threshold",
    "TimelineRow",
    "render_html",
    "render_terminal",
    "write_html",
]
