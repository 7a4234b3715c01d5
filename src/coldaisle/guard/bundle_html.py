"""The bundle's `report.html`: the verdict, every rank, the last minutes of telemetry as plots, the last output.

Built from the same report model as the demo and triage (coldaisle.report), so it is one self-contained page
with inline SVG that opens anywhere, offline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from coldaisle.report.html import render_html
from coldaisle.report.model import Marker, Plot, Report, Section, Series, Table

if TYPE_CHECKING:
    from coldaisle.guard.bundle import Incident
    from coldaisle.guard.recent import RecentTelemetry

# plots by what a series measures: (title, unit label, name test)
_GROUPS = (("Job host memory", "GiB", lambda n: n.startswith("job host memory")),
           ("Heartbeat: seconds since the freshest rank progressed", "s", lambda n: n == "progress age (s)"),
           ("GPU temperature", "C", lambda n: n.endswith(" temperature_c")),
           ("GPU power", "W", lambda n: n.endswith(" power_w")),
           ("GPU utilisation", "%", lambda n: n.endswith(" utilization_gpu")),
           ("GPU memory used", "GiB", lambda n: n.endswith(" memory_used_bytes")))


def bundle_report(incident: Incident) -> str:
    """The page, as HTML text."""
    v = incident.verdict
    facts = Table("Run", ("what", "value"), (
        ("verdict", str(v.kind)), ("exit code", str(incident.exit_code)), ("job", incident.job_status),
        ("command", " ".join(incident.command)), ("duration", f"{incident.ended - incident.started:.1f} s")))
    sections = [Section("Verdict", v.reason, tables=(facts, *_ranks(v.evidence.get("ranks"))))]
    if incident.telemetry is not None and incident.telemetry.rows:
        sections.append(Section("The last minutes", "One row per second of the supervisor's watch; the marker is "
                                "the verdict. The same rows are in telemetry.csv.",
                                plots=_plots(incident.telemetry, incident.ended)))
    actions = Table("What coldaisle run did", ("action",), tuple((a,) for a in incident.actions) or (("none",),))
    output = Table("The job's last output lines", ("line",), tuple((ln,) for ln in incident.output[-40:]) or (
        ("(none)",),))
    sections.append(Section("Actions and output", tables=(actions, output)))
    return render_html(Report(f"coldaisle run: {v.kind}", " ".join(incident.command)[:120], incident.ended,
                              tuple(sections)))


def _ranks(ranks: object) -> tuple[Table, ...]:
    if not isinstance(ranks, list) or not ranks:
        return ()
    return (Table("Ranks at the verdict", ("rank", "pid", "doing", "at", "last step"),
                  tuple((str(r["rank"]), str(r["pid"]), str(r["activity"]), str(r["at"]),
                         "-" if r.get("step") is None else str(r["step"])) for r in ranks)),)


def _plots(recent: RecentTelemetry, verdict_at: float) -> tuple[Plot, ...]:
    names = recent.series()
    plots = []
    for title, unit, wanted in _GROUPS:
        mine = [n for n in names if wanted(n) and not np.isnan(recent.column(n)[1]).all()]  # no empty plots
        if mine:
            series = tuple(Series(n.split(" ")[0] if n.startswith("gpu") else n, *recent.column(n), unit)
                           for n in mine)
            plots.append(Plot(title, unit, series, markers=(Marker(verdict_at, "verdict"),)))
    return tuple(plots)
