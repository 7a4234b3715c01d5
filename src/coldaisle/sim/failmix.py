"""The failure mix: checks a `failures:` block and draws its faults, deterministically for its seed.

Each category of the mix (sim/failure_categories.yaml: Llama 3's Table 5 components) has a rate per GPU-day,
node-day or switch-day. Over the scenario's duration a category fails a Poisson number of times, each at a
uniform time on a uniform GPU, node or leaf switch; each failure becomes the twin fault the category maps to.
Every error names the file, line and field.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from coldaisle.config import Located
from coldaisle.sim.mixschema import FailureMix, LinkDown, NodeDown, RankCrash, ThermalInterface, XidFault
from coldaisle.sim.scenario import CollectiveDeadlock, GpuLost, Scenario
from coldaisle.sim.topology import Layout

DAY_S = 86400.0
MAX_DRAWS = 1_000_000  # a rate that would draw more faults than this is a typo
_RATE = re.compile(r"^\s*(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)\s*(?:/|per\s+)\s*"
                   r"(gpu|node|switch)[- ]?days?\s*$", re.IGNORECASE)
_KINDS: dict[str, Any] = {"gpu_lost": GpuLost, "xid": XidFault, "collective_deadlock": CollectiveDeadlock,
                          "link_down": LinkDown, "node_down": NodeDown, "thermal_interface": ThermalInterface,
                          "rank_crash": RankCrash}


@dataclass(frozen=True)
class Category:
    """One component of Table 5 and the twin fault it becomes."""

    key: str
    component: str
    interruptions: int
    scope: str  # gpu | node | switch
    fault: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Draw:
    """One drawn failure: when, which fault, where (node, GPU: -1 if none), and its category."""

    at_s: float
    fault: Any
    node: int
    gpu: int
    category: str


@dataclass(frozen=True)
class FailurePlan:
    """The failure-mix block resolved: the job's index, its checkpoint and restart times, what was drawn."""

    spec: FailureMix
    job: int
    expected: dict[str, float]  # category -> expected failures over the run
    drawn: dict[str, int]  # category -> failures drawn


@cache
def categories() -> dict[str, Category]:
    """The shipped categories (Table 5's components), by key."""
    raw = yaml.safe_load((Path(__file__).with_name("failure_categories.yaml")).read_text(encoding="utf-8"))
    return {k: Category(k, v["component"], int(v["interruptions"]), v["scope"], v["fault"], dict(v.get("with") or {}))
            for k, v in raw["categories"].items()}


def parse_rate(text: str) -> tuple[float, str] | None:
    """`"1.67e-4 /gpu-day"` -> (failures per unit per day, "gpu"); None if it is not a rate."""
    m = _RATE.match(str(text))
    return (float(m.group(1)), m.group(2).lower()) if m else None


def resolve_failures(sc: Scenario, layout: Layout, at: Located) -> tuple[FailurePlan | None, list[Draw]]:
    """Check the `failures:` block and draw its faults (none without a block)."""
    fm = sc.failures
    if fm is None:
        return None, []
    names = [j.name for j in sc.jobs]
    if fm.job not in names:
        raise at.error(("failures", "job"), f"no job named {fm.job!r}", hint=f"jobs are: {', '.join(names) or 'none'}")
    if fm.checkpoint_every <= 0:
        raise at.error(("failures", "checkpoint_every"), "checkpoints must come at a positive interval")
    for key in ("restart", "swap", "agent_quiet_every"):
        if getattr(fm, key) < 0:
            raise at.error(("failures", key), "must not be negative")
    switches = math.ceil(layout.n_nodes / fm.nodes_per_switch)
    population = {"gpu": layout.n_gpus, "node": layout.n_nodes, "switch": switches}
    expected: dict[str, float] = {}
    drawn: dict[str, int] = {}
    out: list[Draw] = []
    for i, entry in enumerate(fm.mix):
        cat, per_day = _checked(fm, i, entry.category, entry.rate, at, expected)
        lam = per_day * population[cat.scope] * sc.duration / DAY_S
        if lam > MAX_DRAWS:
            raise at.error(("failures", "mix", i, "rate"), f"{entry.rate} would draw about {lam:,.0f} failures",
                           hint="rates are per GPU-, node- or switch-day; check the exponent")
        expected[cat.key] = lam
        draws = _draw(fm.seed, cat, lam, population[cat.scope], sc.duration, layout, fm.nodes_per_switch)
        drawn[cat.key] = len(draws)
        out.extend(draws)
    out.sort(key=lambda d: d.at_s)
    return FailurePlan(fm, names.index(fm.job), expected, drawn), out


def _checked(fm: FailureMix, i: int, key: str, rate: str | float, at: Located,
             seen: dict[str, float]) -> tuple[Category, float]:
    path = ("failures", "mix", i)
    cats = categories()
    cat = cats.get(key)
    if cat is None:
        raise at.error((*path, "category"), f"unknown failure category {key!r}",
                       hint=f"categories are: {', '.join(cats)}")
    if key in seen:
        raise at.error((*path, "category"), f"category {key!r} is listed twice")
    parsed = parse_rate(str(rate))
    if parsed is None:
        raise at.error((*path, "rate"), f"cannot read {rate!r} as a failure rate",
                       hint='write a non-negative number per GPU-, node- or switch-day, e.g. "1.67e-4 /gpu-day"')
    per_day, scope = parsed
    if scope != cat.scope:
        raise at.error((*path, "rate"), f"{key} ({cat.component}) fails per {cat.scope}, not per {scope}",
                       hint=f"write its rate per {cat.scope}-day")
    return cat, per_day


def _draw(seed: int, cat: Category, lam: float, population: int, duration_s: float, layout: Layout,
          per_switch: int) -> list[Draw]:
    """A category's failures: a Poisson count, uniform times and targets, from a stream of its own."""
    rng = np.random.default_rng([seed, zlib.crc32(cat.key.encode())])
    n = int(rng.poisson(lam))
    times = rng.uniform(0.0, duration_s, n)
    targets = rng.integers(0, population, n)
    return [_one(cat, float(t), int(x), layout, per_switch) for t, x in zip(times, targets, strict=True)]


def _one(cat: Category, t: float, target: int, layout: Layout, per_switch: int) -> Draw:
    """The twin fault of one failure of `cat` on GPU, node or switch number `target`."""
    fields: dict[str, Any] = {"fault": cat.fault, "at": f"+{t}s", **cat.params}
    gpu = -1
    if cat.scope == "gpu":
        gpu, node = target, int(layout.gpu_node[target])
        fields["gpu"] = int(layout.gpu_local[target])
    elif cat.scope == "switch":
        node = target * per_switch
        fields["span"] = min(per_switch, layout.n_nodes - node)
    else:
        node = target
    fields["node"] = layout.node_names[node]
    return Draw(t, _KINDS[cat.fault](**fields), node, gpu, cat.key)
