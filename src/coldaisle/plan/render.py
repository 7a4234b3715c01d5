"""Plans for people: a verdict, a breakdown table and a stacked bar, in the terminal (rich) or as HTML.

Every size says its unit: GiB (2^30 bytes) first, because that is what nvidia-smi's MiB add up to, and
GB (10^9 bytes) beside it, because that is what datasheets and papers print.
"""

from __future__ import annotations

import html
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from coldaisle.plan.results import GiB, MemoryPlan, PowerPlan

COLOURS = {"weights": "#4e79a7", "kv_cache": "#e15759", "activations": "#f28e2b", "gradients": "#76b7b2",
           "optimizer_states": "#59a14f", "cuda_context": "#9c755f", "fragmentation": "#bab0ac"}
RESERVED = "#d3d3d3"


def gib(b: float) -> str:
    """Bytes as GiB with the unit."""
    return f"{b / GiB:,.2f} GiB"


def gb(b: float) -> str:
    """Bytes as GB (10^9) with the unit."""
    return f"{b / 1e9:,.2f} GB"


def verdict(p: MemoryPlan) -> str:
    """One paragraph: fits or not, by how much, what dominates, what would fit."""
    lay = p.layout
    head = (f"{p.model} on {lay.gpus} x {p.gpu_name} (tp {lay.tp} x pp {lay.pp} x dp {lay.dp}"
            f"{f' x ep {lay.ep}' if lay.ep > 1 else ''}), {p.mode}, batch {p.batch}, context {p.context:,}, "
            f"{p.dtype} weights.")
    worst = f"stage {p.worst_stage}" if lay.pp > 1 else "each GPU"
    need = f"needs {gib(p.total_bytes)} of {gib(p.usable_bytes)} usable ({p.capacity_bytes / 2**20:,.0f} MiB " \
           f"driver-reported, {gib(p.reserved_bytes)} reserved)"
    if p.fits:
        status = f"FITS: the worst GPU ({worst}) {need}; headroom {gib(p.margin_bytes)} ({gb(p.margin_bytes)})."
    else:
        status = (f"DOES NOT FIT: the worst GPU ({worst}) {need}; it misses by {gib(-p.margin_bytes)} "
                  f"({gb(-p.margin_bytes)}).")
    dom = p.term(p.dominant)
    parts = [head, status, f"Largest term: {dom.label}, {gib(dom.bytes)} ({dom.bytes / p.total_bytes:.0%})."]
    if p.mode == "inference":
        parts.append(f"KV cache: {p.kv_bytes_per_token / 2**20:,.3f} MiB per token for the whole model, "
                     f"{p.kv_bytes_per_token_gpu / 2**20:,.3f} MiB per token on the worst GPU.")
    parts.append(_answers(p))
    return " ".join(parts)


def _answers(p: MemoryPlan) -> str:
    what = "context" if p.mode == "inference" else "sequence length"
    ctx = f"{p.largest_context:,} tokens" if p.largest_context else "none (not even 1 token)"
    out = f"Largest {what} that fits this layout: {ctx}."
    if p.largest_batch is not None:
        out += f" Largest batch at this context: {p.largest_batch:,}."
    if p.fewest_gpus is not None:
        f = p.fewest_gpus
        out += f" Fewest {p.gpu} that fit: {f.gpus} (tp {f.tp} x pp {f.pp} x dp {f.dp})."
    else:
        out += f" No layout of {p.gpu} up to the searched size fits."
    return out


def memory_table(p: MemoryPlan) -> Table:
    """The worst GPU's terms with GiB, GB, share and the arithmetic."""
    t = Table(title=f"Memory per GPU (worst: stage {p.worst_stage})", title_justify="left")
    for col in ("term", "GiB", "GB", "share"):
        t.add_column(col, justify="left" if col == "term" else "right")
    t.add_column("how (formula with numbers)", overflow="fold")
    for term in p.terms:
        t.add_row(Text(term.label, style=COLOURS.get(term.key, "")), f"{term.bytes / GiB:,.2f}",
                  f"{term.bytes / 1e9:,.2f}", f"{term.bytes / p.total_bytes:.0%}", term.formula)
    t.add_row("total", f"{p.total_bytes / GiB:,.2f}", f"{p.total_bytes / 1e9:,.2f}", "100%", "", style="bold")
    t.add_row("usable", f"{p.usable_bytes / GiB:,.2f}", f"{p.usable_bytes / 1e9:,.2f}", "",
              f"{p.capacity_bytes / 2**20:,.0f} MiB driver-reported x (1 - {p.reserved_bytes / p.capacity_bytes:.0%} "
              "reserved)")
    return t


def stacked_bar(p: MemoryPlan, width: int = 72) -> Text:
    """One bar of the terms against the card; `|` marks usable memory, `‖` the card's full capacity."""
    scale = max(p.total_bytes, p.capacity_bytes) / width
    bar = Text()
    for term in p.terms:
        n = round(term.bytes / scale)
        bar.append("█" * n, style=COLOURS.get(term.key, "white"))
    used = len(bar.plain)
    marks = [" "] * (width + 1)
    for pos, ch in ((round(p.usable_bytes / scale), "|"), (round(p.capacity_bytes / scale), "‖")):
        if 0 <= pos <= width:
            marks[pos] = ch
    bar.append(" " * max(0, width - used))
    legend = Text("  ".join(f"■ {t.label}" for t in p.terms if t.bytes / scale >= 0.5))
    return Text("\n").join([bar, Text("".join(marks), style="bold red"), legend])


def power_table(pw: PowerPlan) -> Table:
    """Each site limit against the demand at full and typical draw, and the cap that keeps it."""
    t = Table(title=f"Power and cooling on {pw.site}: {pw.gpus} x {pw.gpu} at {pw.gpu_power_w:g} W",
              title_justify="left")
    for col in ("limit", "capacity", f"demand at {pw.gpu_power_w:g} W", f"at typical ({pw.typical_fraction:.0%})",
                "cap that fits"):
        t.add_column(col, justify="left" if col == "limit" else "right")
    for c in pw.constraints:
        cap = "not needed" if c.demand_tdp_w <= c.capacity_w else (f"{c.cap_w:g} W" if c.cap_w else "none in range")
        t.add_row(c.name, f"{c.capacity_w / 1e3:,.1f} kW", f"{c.demand_tdp_w / 1e3:,.1f} kW",
                  f"{c.demand_typical_w / 1e3:,.1f} kW", cap)
    return t


def power_verdict(pw: PowerPlan) -> str:
    """One paragraph: draw, cap, throughput cost, minutes to the aisle limit."""
    parts = [f"Cluster draw {pw.cluster_tdp_w / 1e3:,.1f} kW at {pw.gpu_power_w:g} W per GPU, "
             f"{pw.cluster_typical_w / 1e3:,.1f} kW at typical load (hosts included)."]
    if pw.fits_at_full:
        parts.append("Every rack PDU and row cooling budget holds at full draw.")
    elif pw.cap_w is None:
        parts.append(f"{pw.binding} cannot be met by any power cap in the card's range.")
    else:
        parts.append(f"Binding limit: {pw.binding}. Cap every GPU at {pw.cap_w:g} W to fit; expected throughput "
                     f"{pw.throughput_at_cap:.0%} of uncapped ({pw.throughput_source}).")
    if pw.minutes_to_limit is not None:
        parts.append(f"Without the cap, at full draw the cold aisle passes {pw.aisle_limit_c:g} C after "
                     f"{pw.minutes_to_limit:.1f} min (the twin's room model).")
    else:
        parts.append(f"At full draw the cold aisle stays below {pw.aisle_limit_c:g} C for {pw.horizon_min:g} min "
                     f"(peak {pw.peak_aisle_c:.1f} C).")
    if pw.cap_w is not None and not pw.fits_at_full:
        held = "never passes" if pw.minutes_to_limit_capped is None else \
            f"passes it after {pw.minutes_to_limit_capped:.1f} min"
        parts.append(f"Capped at {pw.cap_w:g} W, the aisle {held} {pw.aisle_limit_c:g} C "
                     f"within {pw.horizon_min:g} min.")
    return " ".join(parts)


def render_terminal(p: MemoryPlan, pw: PowerPlan | None, console: Console) -> None:
    """Verdict, table, bar, warnings and assumptions; then the power answer when a site was given."""
    console.print(verdict(p), soft_wrap=False)
    console.print(memory_table(p))
    console.print(stacked_bar(p, min(72, max(20, console.width - 4))))
    for w in p.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print("[dim]assumptions: " + "; ".join(p.assumptions) + "[/dim]")
    if pw is not None:
        console.print(power_table(pw))
        console.print(power_verdict(pw))


def _svg_bar(p: MemoryPlan, width: int = 720, height: int = 36) -> str:
    scale = max(p.total_bytes, p.capacity_bytes) / width
    x, rects = 0.0, []
    for term in p.terms:
        w = term.bytes / scale
        fill = COLOURS.get(term.key, "#888")
        rects.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{fill}">'
                     f"<title>{html.escape(term.label)}: {gib(term.bytes)}</title></rect>")
        x += w
    for b, label in ((p.usable_bytes, "usable"), (p.capacity_bytes, "capacity")):
        lx = b / scale
        rects.append(f'<line x1="{lx:.1f}" x2="{lx:.1f}" y1="0" y2="{height + 14}" stroke="#c00" stroke-width="2"/>'
                     f'<text x="{lx + 3:.1f}" y="{height + 12}" font-size="11">{label} {gib(b)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 140}" height="{height + 20}" role="img">'
            + "".join(rects) + "</svg>")


def render_html(p: MemoryPlan, pw: PowerPlan | None) -> str:
    """A self-contained HTML page: verdict, stacked bar (inline SVG), breakdown and power tables."""
    rows = "".join(f'<tr><td><span style="color:{COLOURS.get(t.key, "#000")}">■</span> {html.escape(t.label)}</td>'
                   f"<td>{t.bytes / GiB:,.2f}</td><td>{t.bytes / 1e9:,.2f}</td><td>{html.escape(t.formula)}</td>"
                   f"<td>{html.escape(t.source)}</td></tr>" for t in p.terms)
    body = [f"<h1>coldaisle plan: {html.escape(p.model)}</h1>", f"<p>{html.escape(verdict(p))}</p>", _svg_bar(p),
            "<table><tr><th>term</th><th>GiB</th><th>GB</th><th>formula</th><th>source</th></tr>" + rows
            + f"<tr><th>total</th><th>{p.total_bytes / GiB:,.2f}</th><th>{p.total_bytes / 1e9:,.2f}</th></tr></table>",
            "<ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in (*p.warnings, *p.assumptions)) + "</ul>"]
    if pw is not None:
        prow = "".join(f"<tr><td>{html.escape(c.name)}</td><td>{c.capacity_w / 1e3:,.1f}</td>"
                       f"<td>{c.demand_tdp_w / 1e3:,.1f}</td><td>{c.demand_typical_w / 1e3:,.1f}</td></tr>"
                       for c in pw.constraints)
        body += ["<h2>Power and cooling</h2>", f"<p>{html.escape(power_verdict(pw))}</p>",
                 "<table><tr><th>limit</th><th>capacity kW</th><th>full kW</th><th>typical kW</th></tr>"
                 + prow + "</table>"]
    style = "body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{border:1px solid #ccc;padding:4px}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>coldaisle plan</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>")


def write_html(p: MemoryPlan, pw: PowerPlan | None, path: Path) -> Path:
    """Write the HTML page to a temporary name, then rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_html(p, pw), encoding="utf-8")
    tmp.replace(path)
    return path
