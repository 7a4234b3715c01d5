"""Draw a Snapshot with rich: header, GPUs with sparklines, processes, rules with time to fire, recent actions.

A pure function of the Snapshot (no clock, no IO), so the screen a test captures from tmux and the one a
unit test renders into a recording Console are the same drawing.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from coldaisle.actions.interface import Outcome, Status
from coldaisle.top.state import GpuRow, ProcessRow, RuleRow, Snapshot

BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24
MAX_ACTIONS = 8
_STATUS_STYLE = {Status.DONE: "green", Status.DRY_RUN: "cyan", Status.REFUSED: "yellow", Status.FAILED: "red"}


def sparkline(values: np.ndarray, lo: float, hi: float, width: int = SPARK_WIDTH) -> str:
    """The last `width` values as block characters on a fixed lo..hi scale (a gap where a reading is missing)."""
    vals = np.asarray(values, dtype=float)[-width:]
    span = hi - lo if hi > lo else 1.0
    levels = np.clip(np.rint((vals - lo) / span * (len(BARS) - 1)), 0, len(BARS) - 1)
    chars = [" " if math.isnan(v) else BARS[int(k)] for v, k in zip(vals.tolist(), levels.tolist(), strict=True)]
    return "".join(chars).rjust(width)


def render(snap: Snapshot, width: int = 120) -> RenderableType:
    """The whole screen, its sparklines sized to a terminal `width` columns wide."""
    spark = max(8, min(40, (width - 56) // 3))
    parts: list[RenderableType] = [header(snap), gpu_table(snap.gpus, spark)]
    if snap.processes:
        parts.append(process_table(snap.processes))
    parts += [rule_table(snap.rules), action_table(snap.actions, width)]
    parts += [Text(f"note: {n}", style="yellow", overflow="ellipsis", no_wrap=True) for n in snap.notes]
    parts.append(Text("q quits", style="dim"))
    return Group(*parts)


def header(snap: Snapshot) -> Text:
    """Node, where readings come from, simulated or real time, mode and policy; host signals below."""
    when = datetime.fromtimestamp(snap.time, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if snap.time else "-"
    mode_style = "bold red" if snap.mode == "ENFORCING" else "bold cyan"
    t = Text.assemble(("coldaisle top ", "bold"), (snap.node, "bold magenta"), f"  {snap.source}  {when}  ",
                      (snap.mode, mode_style), f"  policy {snap.policy}  sample {snap.samples}")
    if snap.node_values:
        t.append("\nhost: " + "  ".join(f"{k} {_num(v)}" for k, v in sorted(snap.node_values.items())), "dim")
    return t


def gpu_table(gpus: tuple[GpuRow, ...], spark: int = SPARK_WIDTH) -> Table:
    """One line per GPU: now, and the recent past as sparklines on fixed scales (comparable across GPUs).

    Scales: temperature 20 C .. the GPU's shutdown temperature, power 0 .. its maximum limit, memory 0 .. total."""
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="GPUs", title_justify="left", title_style="bold")
    for col, justify in (("GPU", "right"), ("temp", "right"), ("", "left"), ("power W", "right"), ("", "left"),
                         ("util", "right"), ("memory GiB", "right"), ("", "left")):
        t.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for g in gpus:
        d = g.info
        if g.lost:
            t.add_row(str(d.index), Text("LOST", style="bold red"), "", "", "", "", "", "")
            continue
        t.add_row(
            str(d.index), Text(f"{g.temperature_c:.0f} C", style=_temp_style(g)),
            Text(sparkline(g.temperature_history, 20.0, d.shutdown_temperature_c, spark), style=_temp_style(g)),
            f"{g.power_w:.0f}/{g.power_limit_w:.0f}",
            sparkline(g.power_history, 0.0, d.power_max_limit_w or max(g.power_limit_w, 1.0), spark),
            f"{g.utilization_gpu:.0f}%",
            f"{_gib(g.memory_used_bytes)}/{_gib(d.memory_total_bytes)}",
            sparkline(g.memory_history, 0.0, float(d.memory_total_bytes), spark))
    return t


def process_table(procs: tuple[ProcessRow, ...]) -> Table:
    """GPU processes with the job each belongs to (Slurm job, pod, or the twin's job)."""
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="processes", title_justify="left", title_style="bold")
    for col in ("GPU", "PID", "name", "job", "GPU memory"):
        t.add_column(col, no_wrap=True, justify="right" if col in ("GPU", "PID", "GPU memory") else "left")
    for p in procs:
        t.add_row(str(p.gpu), str(p.pid), p.name or "?", p.job or "-", f"{_gib(p.memory_bytes)} GiB")
    return t


def rule_table(rules: tuple[RuleRow, ...]) -> Table:
    """Every rule: firing (how many subjects), pending (and how long until it fires), or quiet."""
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="rules", title_justify="left", title_style="bold")
    for col, least in (("rule", 12), ("scope", 7), ("severity", 8), ("for", 5), ("state", 30)):
        t.add_column(col, no_wrap=True, min_width=least, overflow="ellipsis")
    order = sorted(rules, key=lambda r: (-(r.firing > 0), -(r.pending > 0), r.name))
    for r in order:
        t.add_row(r.name, r.scope, r.severity, f"{r.for_s:g} s", rule_state(r))
    return t


def rule_state(r: RuleRow) -> Text:
    """`FIRING (1)`, `pending (4), fires in 7 s`, or `ok`."""
    if r.firing:
        state = Text(f"FIRING ({r.firing})", style="bold red")
        if r.pending:
            state.append(f", pending ({r.pending})", style="yellow")
        return state
    if r.pending:
        fires = "" if r.fires_in_s is None else f", fires in {math.ceil(r.fires_in_s - 1e-9):d} s"
        return Text(f"pending ({r.pending}){fires}", style="bold yellow")
    return Text("ok", style="dim green")


def action_table(actions: tuple[Outcome, ...], width: int = 120) -> Table:
    """The latest actions (newest first) with their outcome; long cells clipped here so no column vanishes."""
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="recent actions", title_justify="left",
              title_style="bold")
    detail = width >= 120  # a narrower terminal keeps who/what/outcome and drops the prose
    room = width - 41  # time, action, status and the gaps between columns take about 41
    rule_n, target_n = min(24, max(10, room * 2 // 5)), min(32, max(12, room - min(24, max(10, room * 2 // 5))))
    for col in ("time", "rule", "action", "target", "status", "detail")[: 6 if detail else 5]:
        t.add_column(col, no_wrap=True)
    rows = []
    for o in list(actions)[-MAX_ACTIONS:][::-1]:
        d = o.decision
        action = f"un-{d.action}" if d.restore else str(d.action)
        rows.append((datetime.fromtimestamp(o.time, tz=UTC).strftime("%H:%M:%S"), _clip(d.rule, rule_n),
                     _clip(action, 9), _clip(d.target.label(), target_n), o.status, o.detail))
    used = max((sum(len(str(c)) for c in r[:5]) for r in rows), default=0) + 6 * 3
    for *cells, status, text in rows:
        t.add_row(*cells, Text(str(status), style=_STATUS_STYLE.get(status, "")),
                  *([_clip(text, width - used - 6)] if detail else []))
    if not rows:
        t.add_row("-", "none yet", *[""] * (4 if detail else 3))
    return t


def _clip(text: str, n: int) -> str:
    """`text` in at most `n` characters, an ellipsis marking a cut."""
    n = max(n, 4)
    return text if len(text) <= n else text[: n - 1] + "…"


def _temp_style(g: GpuRow) -> str:
    slow = g.info.slowdown_temperature_c
    if g.temperature_c >= slow - 8:
        return "bold red"
    return "yellow" if g.temperature_c >= slow - 20 else "green"


def _gib(n: float) -> str:
    return "-" if math.isnan(n) else f"{n / 2**30:.1f}"


def _num(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
