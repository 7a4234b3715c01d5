"""The post-mortem draft: summary, root cause, timeline, impact, evidence, plots (HTML, Markdown, terminal).

Built once as a `coldaisle.report` Report, so HTML and terminal rendering are the shared ones; Markdown is
written here from the same model, with the plots saved as SVG files beside it.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from coldaisle.report.model import Plot, Report, Section, Series, Table, TimelineRow, format_utc
from coldaisle.report.plots import plot_to_svg
from coldaisle.triage.analyze import TriageResult
from coldaisle.triage.hostlist import compact
from coldaisle.triage.interface import Hit
from coldaisle.triage.timeline import EventGroup

TOP_HOSTS = 8
BINS = 60


def _when(h: Hit | None) -> str:
    if h is None:
        return "-"
    if h.time is not None:
        return format_utc(h.time)
    return f"{h.host} +{h.uptime:.3f} s since boot" if h.uptime is not None else "no timestamp"


def _summary(r: TriageResult) -> str:
    s = r.reading.stats
    lines = [f"Read {s.files} files ({s.bytes / 1e6:.1f} MB, {s.lines} lines) in {r.elapsed_s:.2f} s with "
             f"{r.engine}; {len(r.alarms)} events in {len(r.groups)} groups on "
             f"{len({h.host for h in r.alarms})} hosts."]
    if r.hypotheses:
        top = r.hypotheses[0]
        lines.append(f"**Most likely root cause:** {top.title} (origin `{top.origin}`, {top.confidence} "
                     f"confidence, {top.blast_radius} hosts affected).")
    bad = len(s.unreadable) + len(s.truncated) + s.binary_files + s.invalid_utf8_blocks + s.long_lines
    if bad:
        lines.append(f"Damaged input: {len(s.unreadable)} unreadable, {len(s.truncated)} truncated, "
                     f"{s.binary_files} with binary bytes, {s.invalid_utf8_blocks} blocks of invalid UTF-8, "
                     f"{s.long_lines} overlong lines (all readable lines were read).")
    return "\n\n".join(lines)


def _root_cause(r: TriageResult) -> Section:
    rows = tuple((str(i), h.kind, h.origin, h.confidence, format_utc(h.time) if h.time is not None  # common clock
                  else _when(h.evidence[0] if h.evidence else None),
                  str(h.blast_radius), h.title + (f" ({h.note})" if h.note else ""))
                 for i, h in enumerate(r.hypotheses, start=1))
    table = Table("Hypotheses, most likely first", ("#", "kind", "origin", "confidence", "first evidence",
                                                    "hosts", "what"), rows)
    return Section("Root cause", "Ranked by severity, blast radius and which came first.", tables=(table,))


def _row(g: EventGroup) -> TimelineRow | None:
    first = g.first
    if first is None or first.time is None:
        return None
    key = ", ".join(f"{k}={v}" for k, v in g.key if v is not None)
    return TimelineRow(first.time, compact(g.hosts), g.severity.name.lower(), g.cls + (f" ({key})" if key else ""),
                       first.raw[:160], g.count)


def _relative(r: TriageResult) -> Table:
    rows = tuple((g.first.host if g.first else "-", _when(g.first), g.severity.name.lower(), g.cls, str(g.count),
                  (g.first.raw[:120] if g.first else "")) for g in r.groups if g.first and g.first.time is None)
    return Table("Events without a wall-clock time (dmesg uptime with no boot reference, or no timestamp)",
                 ("host", "when", "severity", "class", "count", "first line"), rows)


def _impact(r: TriageResult) -> Table:
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for h in r.alarms:
        per[h.cls][h.host] += 1
    rows = tuple((cls, str(sum(c.values())), str(len(c)), compact(c)) for cls, c in
                 sorted(per.items(), key=lambda kv: -len(kv[1])))
    return Table("Impact by class", ("class", "events", "hosts", "hosts"), rows)


def _evidence(r: TriageResult) -> Table:
    rows = tuple((str(i), e.host, _when(e), f"{Path(e.file).name}:{e.line}", e.raw[:200])
                 for i, h in enumerate(r.hypotheses, start=1) for e in h.evidence)
    return Table("Evidence lines per hypothesis", ("#", "host", "when", "file:line", "line"), rows)


def density_plot(r: TriageResult) -> Plot | None:
    """Events per node over time: the busiest nodes, and the rest summed."""
    timed = [h for h in r.alarms if h.time is not None]
    if not timed:
        return None
    t = np.array([h.time for h in timed])
    edges = np.linspace(t.min(), t.max() + 1.0, BINS + 1)
    busiest = [h for h, _ in Counter(h.host for h in timed).most_common(TOP_HOSTS)]
    series = []
    for host in busiest:
        mask = np.array([h.host == host for h in timed])
        series.append(Series(host, edges[:-1], np.histogram(t[mask], edges)[0].astype(float), "events"))
    rest = np.array([h.host not in busiest for h in timed])
    if rest.any():
        series.append(Series("all other nodes", edges[:-1], np.histogram(t[rest], edges)[0].astype(float),
                             "events", "dashed"))
    return Plot("Event density per node", "events per bin", tuple(series))


def temperature_plot(r: TriageResult) -> Plot | None:
    """Every temperature found (sensor CSVs, nvidia-smi dumps)."""
    per: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in r.reading.samples:
        per[s.sensor].append((s.time, s.celsius))
    if not per:
        return None
    hottest = sorted(per, key=lambda k: -max(c for _, c in per[k]))[:10]
    return Plot("Temperatures found", "°C", tuple(Series(k, np.array([a for a, _ in per[k]]),
                                                       np.array([b for _, b in per[k]]), "C") for k in hottest))


def build(r: TriageResult, generated_at: float = 0.0) -> Report:
    """The post-mortem draft as a Report."""
    plots = tuple(p for p in (density_plot(r), temperature_plot(r)) if p is not None)
    rows = tuple(row for g in r.groups if (row := _row(g)) is not None)
    return Report("Incident triage (draft post-mortem)", f"{r.reading.stats.files} files, "
                  f"{len({h.host for h in r.alarms})} hosts", generated_at, (
                      Section("Summary", _summary(r)), _root_cause(r),
                      Section("Timeline", "Repeats folded into one row with their count and hosts.",
                              tables=(_relative(r),), timeline=rows, plots=plots),
                      Section("Impact", tables=(_impact(r),)), Section("Evidence", tables=(_evidence(r),))))


def _md_table(t: Table) -> str:
    esc = [[c.replace("|", "\\|").replace("\n", " ") for c in row] for row in t.rows]
    head = f"**{t.title}**\n\n| " + " | ".join(t.columns) + " |\n|" + "---|" * len(t.columns)
    return head + "".join("\n| " + " | ".join(row) + " |" for row in esc)


def markdown(report: Report, svg_prefix: Path | None = None) -> str:
    """Markdown text; plots are written as `<prefix>-<n>.svg` and linked when a prefix is given."""
    out = [f"# {report.title}", "", f"_{report.subtitle}_", ""]
    n = 0
    for sec in report.sections:
        out += [f"## {sec.title}", "", sec.text, ""] if sec.text else [f"## {sec.title}", ""]
        for row in sec.timeline:
            out.append(f"- `{format_utc(row.time)}` **{row.severity}** {row.what} x{row.count} on {row.host}: "
                       f"`{row.detail}`")
        out += [_md_table(t) + "\n" for t in sec.tables if t.rows]
        for plot in sec.plots if svg_prefix is not None else ():
            n += 1
            path = svg_prefix.with_name(f"{svg_prefix.name}-{n}.svg")
            write_atomic(path, plot_to_svg(plot))
            out += [f"![{plot.title}]({path.name})", ""]
    return "\n".join(out) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary name beside `path`, then rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def terminal_view(report: Report) -> Report:
    """The report without its long evidence and impact tables, for a terminal."""
    keep = tuple(s for s in report.sections if s.title in ("Summary", "Root cause", "Timeline"))
    return Report(report.title, report.subtitle, report.generated_at, keep)
