"""`coldaisle demo`: the incident replayed on the twin, told as a report (terminal and HTML)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from coldaisle.replay.protected import Guarded
from coldaisle.replay.summary import group_events
from coldaisle.replay.training import training_section
from coldaisle.report import Marker, Plot, Report, Section, Series, Table, Threshold, TimelineRow
from coldaisle.sim.twin import Twin
from coldaisle.telemetry.events import Event, Severity
from coldaisle.units import format_duration

#: Appendix B of the incident report: Rack 4, shelf 2, minutes after 03:00 -> reading.
REPORTED_RACK4_SHELF2 = ((0, 22.0), (5, 45.0), (10, 68.0), (15, 89.0), (16, 92.0), (20, 95.0))
NIGHT_S = 6 * 3600.0
MAX_RACK_CURVES = 8  # a fleet's report plots its hottest racks only
_NOISE = frozenset({"process_exit", "nccl_init"})


def sensor_at(twin: Twin, name: str, t: float) -> float:
    """A named sensor's recorded reading at `t` seconds after start (nearest record)."""
    rec = twin.recorder
    k = [s.name for s in twin.plan.sensors].index(name)
    i = int(np.argmin(np.abs(rec.view("t") - t)))
    return float(rec.view("sensor_c")[i, k])


def build_report(twin: Twin, guarded: Guarded | None = None) -> Report:
    """The replay as a Report: what happened, the curves, the timeline, the bill; with `guarded`, the
    same night under coldaisle's default policy beside it."""
    sections = [_overview(twin), *_training(twin)]
    if guarded is not None:
        sections.append(_comparison(twin, guarded))
    sections += [_curves(twin, "no protection")]
    if guarded is not None:
        sections += [_curves(guarded.twin, "protected by coldaisle"), _actions(guarded)]
    sections.append(_timeline(twin))
    title = f"coldaisle demo: {twin.plan.scenario.name}"
    sub = ("The incident replayed on the digital twin, without and with coldaisle's agent."
           if guarded else "The incident replayed on the digital twin, with no protection.")
    return Report(title, sub, time.time(), tuple(sections))


def protected_report(g: Guarded) -> Report:
    """`coldaisle sim run --policy`'s report: what happened, what the agent did, the curves, the timeline."""
    return Report(f"coldaisle sim run: {g.twin.plan.scenario.name}", f"protected by {g.policy.source}", 0.0,
                  (_overview(g.twin), *_training(g.twin), _actions(g), _curves(g.twin, "protected"), _timeline(g.twin)))


def _training(twin: Twin) -> tuple[Section, ...]:
    """The ETTR section of a failure-mix run (none otherwise)."""
    section = training_section(twin)
    return () if section is None else (section,)


def _first(events: list[Event], pred: Callable[[Event], bool]) -> float | None:
    return min((e.time for e in events if pred(e)), default=None)


def _clock(t: float | None, start: float) -> str:
    return "never" if t is None else time.strftime("%H:%M:%S", time.gmtime(t)) + f" (+{t - start:.0f} s)"


def _comparison(twin: Twin, g: Guarded) -> Section:
    """Side by side: what the night cost unprotected and protected."""
    from coldaisle.actions.audit import read

    start = twin.plan.start_epoch
    records = list(read(g.audit_path, backups=True))
    decisions = [r for r in records if r.get("kind") == "decision"]
    outcomes = [r for r in records if r.get("kind") == "outcome" and r.get("status") == "done"]
    first_d = min((_epoch(r["time"]) for r in decisions), default=None)
    first_a = min((_epoch(r["time"]) for r in outcomes if r.get("action") != "notify"), default=None)
    deadlock = _first(twin.events, lambda e: e.cls == "collective_deadlock")

    def row(label: str, f: Callable[[Twin], str]) -> tuple[str, str, str]:
        return (label, f(twin), f(g.twin))

    rows = (
        row("hottest GPU", lambda t: f"{t.state.peak_c.max():.1f} C"),
        row("GPUs above slowdown", lambda t: str(int((t.state.above_slowdown_s > 0).sum()))),
        row("GPU-minutes above slowdown", lambda t: f"{t.state.above_slowdown_s.sum() / 60:.0f}"),
        row("energy burnt busy-waiting", lambda t: f"{t.physics.spin_j / 3.6e6:,.1f} kWh"),
        row("facility energy", lambda t: f"{t.physics.facility_j / 3.6e6:,.0f} kWh"),
        row("GPUs lost", lambda t: str(int(t.state.lost.sum()))),
        row("nodes down", lambda t: str(int((~t.state.node_up).sum()))),
        row("nodes drained", lambda t: ", ".join(t.plan.layout.node_names[n] for n in
                                                np.flatnonzero(t.state.node_drained)) or "none"),
        ("first detection", "never", _clock(first_d, start)),
        ("first action", "a person at 03:20", _clock(first_a, start)),
    )
    text = (f"The collective deadlocked at {_clock(deadlock, start)}. Unprotected, every GPU busy-waited until a "
            "person cut the power. Protected, the agent saw the collective-spin signature, drained the straggler "
            "and stopped the job, then capped power through the cooling failure.")
    return Section("Unprotected and protected, side by side", text,
                   tables=(Table("The night, two ways", ("measure", "no protection", "coldaisle"), rows),))


def _actions(g: Guarded) -> Section:
    """What the agent did, grouped by rule and action."""
    from collections import Counter

    from coldaisle.actions.audit import read

    counts: Counter[tuple[str, str, str]] = Counter()
    first: dict[tuple[str, str, str], str] = {}
    for r in read(g.audit_path, backups=True):
        if r.get("kind") == "outcome":
            key = (str(r.get("rule")), str(r.get("action")), str(r.get("status")))
            counts[key] += 1
            first.setdefault(key, str(r.get("time", ""))[11:19])
    rows = tuple((first[k], k[0], k[1], k[2], str(v)) for k, v in sorted(counts.items(), key=lambda kv: first[kv[0]]))
    return Section("What the agent did", f"Every decision and outcome is in the audit log: `{g.audit_path}`.",
                   tables=(Table("Actions by rule", ("first (UTC)", "rule", "action", "outcome", "count"), rows),))


def _epoch(iso_time: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


def _overview(twin: Twin) -> Section:
    plan, s, ph = twin.plan, twin.state, twin.physics
    rows = []
    if "rack4-shelf2" in [x.name for x in plan.sensors]:
        for minute, reported in REPORTED_RACK4_SHELF2:
            got = sensor_at(twin, "rack4-shelf2", minute * 60.0)
            rows.append((f"03:{minute:02d}", f"{reported:.0f}", f"{got:.1f}", f"{got - reported:+.1f}"))
    check = Table("Rack 4, shelf 2: the report's Appendix B against the twin (C)",
                  ("time (UTC)", "report", "twin", "difference"), tuple(rows))
    lost = int(s.lost.sum())
    bill = Table("What it cost", ("measure", "value"), (
        ("hottest GPU", f"{s.peak_c.max():.1f} C ({plan.layout.gpu_label(int(np.argmax(s.peak_c)))})"),
        ("GPUs above slowdown at some point", f"{int((s.above_slowdown_s > 0).sum())} of {plan.layout.n_gpus}"),
        ("GPU-minutes above slowdown", f"{s.above_slowdown_s.sum() / 60:.0f}"),
        ("GPUs lost or shut down", str(lost)),
        ("nodes down", str(int((~s.node_up).sum()))),
        ("energy burnt busy-waiting", f"{ph.spin_j / 3.6e6:,.0f} kWh"),
        ("IT energy", f"{ph.it_j / 3.6e6:,.0f} kWh"),
        ("facility energy (with PUE)", f"{ph.facility_j / 3.6e6:,.0f} kWh"),
        ("peak PUE", f"{twin.recorder.view('pue').max():.2f}"),
    ))
    acts = [f"{f.by}: {f.fault.replace('_', ' ')}" for f in plan.scenario.timeline if getattr(f, "by", None)]
    who = f" but what people did in the scenario ({'; '.join(dict.fromkeys(acts))})" if acts else ""
    text = (f"{plan.scenario.description}\n\nSimulated {format_duration(twin.t)} of "
            f"{plan.layout.n_gpus} GPUs in {plan.layout.n_racks} racks. Nothing intervened{who}.")
    tables = (check, bill) if rows else (bill,)
    return Section("What happened", text, tables=tables)


def _curves(twin: Twin, label: str) -> Section:
    plan, rec = twin.plan, twin.recorder
    t = rec.view("t")
    night = t <= (NIGHT_S if twin.campaign is None else np.inf)  # a failure mix: its whole run
    times = plan.start_epoch + t[night]
    card = plan.card
    limits = (Threshold(f"slowdown {card.slowdown_c:.0f} C", card.slowdown_c),
              Threshold(f"shutdown {card.shutdown_c:.0f} C", card.shutdown_c))
    marks = tuple(Marker(e.time, e.cls.replace("_", " ")) for e in twin.events
                  if e.source == "twin" and e.cls in ("pcie_jitter",)) + tuple(
        Marker(e.time, "power off" if "power" in e.cls else "cooling fails") for e in twin.events
        if e.cls in ("emergency_power_off", "cooling_failure"))
    sensors = tuple(Series(sp.name, times, rec.view("sensor_c")[night, k], "C")
                    for k, sp in enumerate(plan.sensors))
    reported = ()
    if any(sp.name == "rack4-shelf2" for sp in plan.sensors):
        rt = plan.start_epoch + np.array([m * 60.0 for m, _ in REPORTED_RACK4_SHELF2])
        reported = (Series("report, Appendix B", rt, np.array([v for _, v in REPORTED_RACK4_SHELF2]), "C",
                           style="dotted"),)
    racks = tuple(Series(f"rack {r + 1} hottest GPU", times,
                         rec.view("gpu_temp_c")[night][:, plan.layout.gpu_rack == r].max(axis=1), "C")
                  for r in _racks_to_plot(twin))
    power = (Series("IT power", plan.start_epoch + t, rec.view("it_kw"), "kW"),
             Series("facility power", plan.start_epoch + t, rec.view("facility_kw"), "kW", style="dashed"))
    plots = (
        Plot(f"Sensors through the night, {label}", "temperature (C)", sensors + reported, limits, marks),
        Plot("Hottest GPU of each rack", "temperature (C)", racks, limits, marks),
        Plot("Power drawn, whole run", "power (kW)", power),
    )
    return Section(f"Temperatures and power, {label}", plots=plots)


def _racks_to_plot(twin: Twin) -> list[int]:
    """Every rack of a small cluster; the hottest MAX_RACK_CURVES racks of a large one, in rack order."""
    lay = twin.plan.layout
    if lay.n_racks <= 2 * MAX_RACK_CURVES:
        return list(range(lay.n_racks))
    peak = np.full(lay.n_racks, -np.inf)
    np.maximum.at(peak, lay.gpu_rack, twin.state.peak_c)
    return sorted(np.argsort(-peak)[:MAX_RACK_CURVES].tolist())


def _timeline(twin: Twin) -> Section:
    rows = tuple(
        TimelineRow(g.first.time, g.first.host if g.count == 1 else f"{len(set(g.hosts))} hosts",
                    g.first.severity.name.lower(), g.first.cls.replace("_", " "), _detail(g.first.fields, g),
                    g.count)
        for g in group_events(twin.events, min_severity=Severity.INFO, skip=_NOISE)
    )
    return Section("Timeline", "Every event the twin logged or knows happened, grouped per minute.",
                   timeline=rows)


def _detail(fields: dict[str, object], group: object) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in fields.items() if v is not None and k not in ("tid",))
    hosts = getattr(group, "detail", lambda: "")()
    return f"{shown}; {hosts}" if getattr(group, "count", 1) > 1 else shown
