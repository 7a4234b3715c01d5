"""One self-contained HTML file per report: inline CSS and SVG, nothing fetched from the network.

An incident report is read on a laptop at 4 a.m., attached to a ticket, or printed; it must open anywhere,
offline, and every string in it (log lines included) is escaped.
"""

from __future__ import annotations

import os
import secrets
from html import escape
from pathlib import Path

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
from coldaisle.report.plots import plot_to_svg
from coldaisle.version import __version__

_CSS = """
:root{--crit:#8b1a1a;--err:#b22222;--warn:#b36b00;--ok:#2e6b30;--muted:#666;--line:#ddd;--bg:#fafafa}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#1d1d1d;background:#fff}
header.top{position:sticky;top:0;z-index:2;background:#1f2328;color:#fff;padding:.6rem 1.5rem;
display:flex;flex-wrap:wrap;align-items:baseline;gap:.4rem 1.2rem}
header.top h1{font-size:1.25rem;margin:0}
header.top .sub{color:#d0d7de;margin:0}
header.top .gen{margin:0 0 0 auto;color:#d0d7de;font-size:.85rem}
nav.toc{padding:.5rem 1.5rem;border-bottom:1px solid var(--line);background:var(--bg);font-size:.9rem}
nav.toc a{color:#1f4e79;margin-right:1rem;text-decoration:none}
main{max-width:1100px;margin:0 auto;padding:1rem 1.5rem 3rem}
section{margin:1.5rem 0 2.5rem}
h2{font-size:1.2rem;border-bottom:2px solid #1f2328;padding-bottom:.2rem}
h3{font-size:1rem;margin:1.2rem 0 .4rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;background:#f0f0f0;
padding:0 .25em;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem;font-size:.9rem}
th,td{border-bottom:1px solid var(--line);padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.detail{color:#333;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.82rem;word-break:break-word}
td.time{white-space:nowrap;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 .5em;border-radius:3px;font-size:.78rem;font-weight:600;color:#fff;
text-transform:uppercase;letter-spacing:.03em}
.sev-critical{background:var(--crit)}.sev-error{background:var(--err)}.sev-warning{background:var(--warn)}
.sev-info{background:var(--ok)}.sev-unknown{background:var(--muted)}
tr.row-critical td{background:#fbeaea}tr.row-error td{background:#fdf1f1}tr.row-warning td{background:#fff6e5}
.count{color:var(--muted);font-weight:600;margin-left:.4em}
figure.plot{margin:.5rem 0 1.5rem}
figure.plot svg{max-width:100%;height:auto;display:block}
footer{color:var(--muted);font-size:.8rem;text-align:center;padding:1rem}
@media print{header.top{position:static;background:#fff;color:#000;border-bottom:2px solid #000}
header.top .sub,header.top .gen{color:#000}nav.toc{display:none}
figure.plot,table{break-inside:avoid}.badge,tr[class^=row-] td{print-color-adjust:exact;
-webkit-print-color-adjust:exact}}
"""


def _text(value: object) -> str:
    """Escape anything for HTML text or attribute context (quotes included)."""
    return escape(str(value), quote=True)


def _prose(text: str) -> str:
    """Blank-line paragraphs with `**bold**` and `` `code` `` only; everything else is literal."""
    tags = {"bold": "strong", "code": "code"}
    out = []
    for para in paragraphs(text):
        parts = [
            _text(s) if kind == "text" else f"<{tags[kind]}>{_text(s)}</{tags[kind]}>"
            for kind, s in inline_spans(para)
        ]
        out.append(f"<p>{''.join(parts)}</p>")
    return "\n".join(out)


def _table(table: Table) -> str:
    """A table whose numeric columns are right-aligned so digits line up."""
    numeric = table.numeric_columns()
    cls = [' class="num"' if n else "" for n in numeric]
    head = "".join(f"<th{cls[i]}>{_text(c)}</th>" for i, c in enumerate(table.columns))
    body = "\n".join(
        "<tr>" + "".join(f"<td{cls[i]}>{_text(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    title = f"<h3>{_text(table.title)}</h3>\n" if table.title else ""
    return f"{title}<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _timeline_row(row: TimelineRow, fmt: str) -> str:
    """One event: UTC time, host, a coloured severity badge, what (×N when folded) and detail."""
    level = severity_level(row.severity)
    count = f'<span class="count">×{row.count}</span>' if row.count > 1 else ""
    iso = format_utc(row.time, "%Y-%m-%dT%H:%M:%SZ")
    return (
        f'<tr class="row-{level}"><td class="time"><time datetime="{iso}">{_text(format_utc(row.time, fmt))}'
        f'</time></td><td>{_text(row.host)}</td><td><span class="badge sev-{level}">{_text(row.severity)}'
        f'</span></td><td>{_text(row.what)}{count}</td><td class="detail">{_text(row.detail)}</td></tr>'
    )


def _timeline(rows: tuple[TimelineRow, ...]) -> str:
    """The incident timeline as a table, in the order the producer gave."""
    fmt = timeline_time_format([r.time for r in rows])
    body = "\n".join(_timeline_row(r, fmt) for r in rows)
    head = "<tr><th>Time (UTC)</th><th>Host</th><th>Severity</th><th>What</th><th>Detail</th></tr>"
    table = f'<table class="timeline">\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>'
    return f"<h3>Timeline</h3>\n{table}"


def _figure(plot: Plot, prefix: str) -> str:
    """An inline SVG chart, labelled for screen readers with the plot's title."""
    svg = plot_to_svg(plot, id_prefix=prefix)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{_text(plot.title)}" ', 1)
    return f'<figure class="plot">\n{svg}\n</figure>'


def _section(section: Section, index: int) -> str:
    """A section in reading order: prose, tables, plots, then the timeline."""
    parts = [f'<section id="s{index}">', f"<h2>{_text(section.title)}</h2>"]
    if section.text:
        parts.append(_prose(section.text))
    parts.extend(_table(t) for t in section.tables)
    parts.extend(_figure(p, f"s{index}p{j}-") for j, p in enumerate(section.plots))
    if section.timeline:
        parts.append(_timeline(section.timeline))
    parts.append("</section>")
    return "\n".join(parts)


def render_html(report: Report) -> str:
    """The whole report as one HTML5 document that needs nothing but a browser."""
    generated = format_utc(report.generated_at)
    toc = "".join(f'<a href="#s{i}">{_text(s.title)}</a>' for i, s in enumerate(report.sections))
    body = "\n".join(_section(s, i) for i, s in enumerate(report.sections))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_text(report.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<header class="top"><h1>{_text(report.title)}</h1><p class="sub">{_text(report.subtitle)}</p>'
        f'<p class="gen">Generated <time>{_text(generated)}</time></p></header>\n'
        f'<nav class="toc">{toc}</nav>\n<main>\n{body}\n</main>\n'
        f"<footer>coldaisle {_text(__version__)}</footer>\n</body>\n</html>\n"
    )


def write_html(report: Report, path: str | Path) -> Path:
    """Render, then write to a temporary name beside `path` and rename: readers never see half a file."""
    target = Path(path)
    document = render_html(report).encode("utf-8")
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(document)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target
