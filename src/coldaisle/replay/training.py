"""ETTR and goodput of a failure-mix run, for `sim run --json`, the reports and `sim compare`.

The numbers come from the twin's campaign (sim.campaign, booked by sim.ettr); this module only shapes them:
the summary's `training` object, and report tables of time lost by cause and by failure category.
"""

from __future__ import annotations

import math
from typing import Any

from coldaisle.report import Section, Table
from coldaisle.sim.ettr import CAUSES, Ledger
from coldaisle.sim.failmix import categories
from coldaisle.sim.twin import Twin

CAUSE_LABELS = {"detection": "detection delay", "restart": "restart (requeue, reload, swap in spares)",
                "lost_work": "work lost since the last checkpoint", "false_drains": "false drains"}


def training_summary(twin: Twin) -> dict[str, Any] | None:
    """The summary's `training` object (None for a scenario without a failure mix)."""
    c = twin.campaign
    if c is None:
        return None
    led = c.ledger(twin.t)
    rate = twin.plan.jobs[c.j].spec.steps_per_second
    drawn, expected = c.plan.drawn, c.plan.expected
    return {
        "job": twin.plan.jobs[c.j].spec.name,
        "checkpoint_every_s": c.spec.checkpoint_every, "restart_s": c.spec.restart, "swap_s": c.spec.swap,
        "wall_s": led.wall_s, "productive_s": led.productive_s, "ettr": _round(led.ettr),
        "lost_s": {k: round(v, 3) for k, v in led.lost_s.items()},
        "goodput": {"steps_kept": round(led.productive_s * rate, 1),
                    "steps_computed": round(twin.workload.progress(c.j, twin.t), 1),
                    "steps_per_s": _round(led.productive_s * rate / led.wall_s if led.wall_s else math.nan)},
        "interruptions": led.interruptions,
        "nodes_swapped": c.swaps,
        "by_category": {k: {"interruptions": led.by_cause.get(k, 0),
                            "lost_s": round(led.lost_by_category.get(k, 0.0), 3),
                            "failures_drawn": drawn.get(k, 0), "failures_expected": round(expected.get(k, 0.0), 3)}
                        for k in sorted(set(drawn) | set(led.by_cause))},
        "interruption_log": [{"cause": i.cause, "node": i.node, "stop_s": i.stop_s, "end_s": i.end_s,
                              "checkpoint_s": i.checkpoint_s, "restart_s": None if math.isnan(i.restart_s) else
                              i.restart_s, "swapped": list(i.swapped), "false_swap": i.false_swap}
                             for i in c.interruptions],
    }


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 5)


def hours(seconds: float) -> str:
    """`12.3 h` for people."""
    return f"{seconds / 3600:,.1f} h"


def ledger_rows(led: Ledger) -> list[tuple[str, str]]:
    """(measure, value) rows: ETTR, productive time and each cause of lost time."""
    share = (lambda s: f" ({s / led.wall_s:.1%})") if led.wall_s else (lambda s: "")
    rows = [("ETTR (productive / wall)", f"{led.ettr:.1%}" if led.wall_s else "n/a"),
            ("wall time", hours(led.wall_s)), ("productive", hours(led.productive_s) + share(led.productive_s)),
            ("interruptions", str(led.interruptions))]
    rows += [(f"lost: {CAUSE_LABELS[k]}", hours(led.lost_s[k]) + share(led.lost_s[k])) for k in CAUSES]
    return rows


def training_section(twin: Twin) -> Section | None:
    """The report's ETTR section: where the wall time went, and which failures cost the most."""
    c = twin.campaign
    if c is None:
        return None
    led = c.ledger(twin.t)
    names = categories()
    by_cat = tuple(
        (names[k].component if k in names else k, str(led.by_cause.get(k, 0)), str(c.plan.drawn.get(k, 0)),
         hours(led.lost_by_category.get(k, 0.0)))
        for k in sorted(set(c.plan.drawn) | set(led.by_cause), key=lambda k: -led.lost_by_category.get(k, 0.0)))
    text = (f"{twin.plan.jobs[c.j].spec.name} checkpoints every {c.spec.checkpoint_every / 60:g} min; each "
            f"interruption waits {c.spec.restart / 60:g} min to restart, plus {c.spec.swap / 60:g} min when a "
            f"spare must replace a node. {c.swaps} nodes were swapped. ETTR is productive time over wall time "
            "(docs/sim.md).")
    return Section("Effective training time (ETTR)", text, tables=(
        Table("Where the wall time went", ("measure", "value"), tuple(ledger_rows(led))),
        Table("Interruptions by failure category", ("category", "interruptions", "failures drawn", "time lost"),
              by_cat)))
