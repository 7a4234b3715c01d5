"""A backtest as a report (terminal and HTML through `coldaisle.report`): per rule, per firing, and what could
not be evaluated, with a timeline of how many GPUs were over each rule's threshold."""

from __future__ import annotations

import time

import numpy as np

from coldaisle.backtest.result import Firing, Result
from coldaisle.report import Marker, Plot, Report, Section, Series, Table
from coldaisle.report.model import format_utc
from coldaisle.units import format_duration

MAX_FIRING_ROWS = 200


def build_report(r: Result) -> Report:
    """The whole backtest for people."""
    sections = [_overview(r), _firings(r)]
    if r.skipped:
        sections.insert(1, Section("Rules that could not be evaluated", _SKIPPED_TEXT, tables=(
            Table("not evaluated", ("rule", "why", "what to do"),
                  tuple((s.rule, s.why, s.hint or "-") for s in r.skipped)),)))
    if r.notes:
        sections.append(Section("Notes", "\n\n".join(r.notes)))
    span = f"{format_utc(r.start, '%Y-%m-%d %H:%M')} to {format_utc(r.end, '%Y-%m-%d %H:%M UTC')}"
    return Report(f"coldaisle policy backtest: {r.policy}", f"{span}, every {r.step:g} s, from {r.prometheus}",
                  time.time(), tuple(sections))


_SKIPPED_TEXT = ("A rule that reads something this history does not hold is left out rather than evaluated "
                 "against silence; the others are evaluated as usual.")


def _overview(r: Result) -> Section:
    acted = sum(t.firings for t in r.totals.values())
    text = (f"{r.gpus} GPUs on {r.nodes} nodes{' matching `' + r.selector + '`' if r.selector else ''}. "
            f"**{acted} firings** of {len(r.totals)} evaluated rules over {format_duration(r.end - r.start)}. "
            f"A GPU whose newest sample is older than {r.lost_after:g} s is lost. The engine evaluated "
            f"{r.steps.get('evaluated', 0):,} of {r.steps.get('grid', 0):,} steps (the others had no condition "
            f"holding and no rule pending); reading took {r.seconds.get('read', 0):.1f} s (Prometheus "
            f"{r.seconds.get('prometheus', 0):.1f} s), evaluating {r.seconds.get('evaluate', 0):.1f} s.")
    rows = tuple((t.rule, t.scope, str(t.firings), str(len(t.nodes)), f"{t.gpu_hours:.2f}",
                  ", ".join(f"{k} x{v}" for k, v in sorted(t.actions.items())) or "-",
                  f"{t.refused} refused, {t.held} held" if t.refused or t.held else "-")
                 for t in r.totals.values())
    table = Table("per rule", ("rule", "scope", "firings", "nodes", "GPU-hours over threshold",
                               "would-be actions", "safety"), rows)
    return Section("What the policy would have done", text, tables=(table,), plots=_timeline(r))


def _timeline(r: Result) -> tuple[Plot, ...]:
    series = []
    for name, total in r.totals.items():
        t, gpus = r.timeline.series(name)
        if total.gpu_hours > 0 and t.size:
            series.append(Series(name, t, gpus.astype(float), "GPUs"))
    if not series:
        return ()
    firsts: dict[str, float] = {}
    for f in r.firings:
        firsts.setdefault(f.rule, f.first)
    markers = tuple(Marker(t, f"{rule} fires") for rule, t in sorted(firsts.items(), key=lambda kv: kv[1])[:8])
    return (Plot("GPUs where each rule's condition holds", "GPUs", tuple(series), markers=markers),)


def _firings(r: Result) -> Section:
    if not r.firings:
        return Section("Firings", "No rule would have fired in this window.")
    shown = r.firings[:MAX_FIRING_ROWS]
    rows = tuple(_row(f) for f in shown)
    more = len(r.firings) - len(shown)
    text = ("Each subject a rule fired for, from the step it fired to the last step it was still firing, with "
            "what the agent would have done and whether a safety rule would have refused it." +
            (f" The first {len(shown)} of {len(r.firings)} are listed (all are in --json)." if more else ""))
    table = Table("firings", ("first", "last", "rule", "subject", "job", "actions", "evidence"), rows)
    return Section("Firings", text, tables=(table,))


def _row(f: Firing) -> tuple[str, ...]:
    fmt = "%m-%d %H:%M:%S"
    acts = []
    for a in f.actions[:6]:
        mark = "" if a.status == "would act" else f" ({a.status})"
        acts.append(f"{a.do} {a.target}{mark}")
    if len(f.actions) > 6 or f.more_actions:
        acts.append(f"+{len(f.actions) - 6 + f.more_actions} more")
    ev = [f"{k}={v}" for k, v in f.evidence.items() if k not in ("condition", "at", "gpu", "stragglers")
          and isinstance(v, (int, float)) and np.isfinite(v)][:5]
    last = format_utc(f.last, fmt) + ("" if f.cleared else " (still firing)")
    return (format_utc(f.first, fmt), last, f.rule, f.subject, f.job or "-", "; ".join(acts) or "-",
            " ".join(ev) or "-")
