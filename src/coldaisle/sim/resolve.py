"""Cross-field checks that turn a validated Scenario into a runnable Plan (indices, seconds, cards).

Pydantic checks each field; this checks what only the whole file knows: nodes that must
exist, GPUs within a node, rows and racks in range, times in order and inside the run.
Every error names file, line and field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from coldaisle.config import Loc, Located
from coldaisle.errors import ColdaisleError
from coldaisle.sim.failmix import FailurePlan, resolve_failures
from coldaisle.sim.scenario import (
    Card,
    FanFailure,
    FanFailures,
    Fault,
    Job,
    Scenario,
    Sensor,
)
from coldaisle.sim.topology import Layout
from coldaisle.telemetry.catalog import gpu_spec
from coldaisle.units import UnitError, parse_quantity

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


@dataclass(frozen=True)
class CardSpec:
    """The scenario's GPU with catalog numbers and scenario overrides merged."""

    key: str
    name: str
    memory_total_bytes: float
    tdp_w: float
    idle_w: float
    min_limit_w: float
    slowdown_c: float
    shutdown_c: float
    physics: Card


@dataclass(frozen=True)
class JobPlan:
    """A job with its GPUs and communicators resolved to global GPU indices."""

    spec: Job
    start_s: float
    gpus: NDArray[np.int32]
    groups: tuple[NDArray[np.int32], ...]
    stage: NDArray[np.int32]


@dataclass(frozen=True)
class SensorPlan:
    """A named sensor and what it reads."""

    name: str
    kind: str
    gpus: NDArray[np.int32]
    row: int = -1
    rack: int = -1


@dataclass(frozen=True)
class TimedFault:
    """A timeline entry at `at_s` seconds after start, with node/GPU resolved to indices."""

    at_s: float
    fault: Fault
    node: int = -1
    gpu: int = -1
    peer: int = -1
    cause: str = ""  # the failure-mix category that drew it ("" for a timeline entry)


@dataclass(frozen=True)
class Plan:
    """Everything the twin needs, checked and resolved."""

    scenario: Scenario
    layout: Layout
    card: CardSpec
    jobs: tuple[JobPlan, ...]
    sensors: tuple[SensorPlan, ...]
    faults: tuple[TimedFault, ...]
    start_epoch: float
    duration_s: float
    failures: FailurePlan | None = None  # the failure-mix kind's job, checkpoints, restarts and draws


def resolve(scenario: Scenario, lines: dict[Loc, int], file: str) -> Plan:
    """Check the scenario as a whole and resolve it into a Plan, or raise ConfigError."""
    at = Located(file, lines)
    layout = Layout(scenario.topology)
    card = _card(scenario, at)
    if scenario.duration <= 0:
        raise at.error(("duration",), "the duration must be positive")
    if scenario.step <= 0:
        raise at.error(("step",), "the step must be positive")
    if scenario.max_step < scenario.step:
        raise at.error(("max_step",), "max_step must be at least one step", hint=f"write at least {scenario.step:g} s")
    if scenario.record_every < scenario.step:
        raise at.error(("record_every",), "record_every must be at least one step")
    _check_stability(scenario, at)
    jobs = tuple(_job(scenario, layout, at, i, job, card) for i, job in enumerate(scenario.jobs))
    names = [j.name for j in scenario.jobs]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise at.error(("jobs", i, "name"), f"job name {name!r} is used twice")
    sensors = tuple(_sensor(layout, at, i, s) for i, s in enumerate(scenario.sensors))
    faults = _timeline(scenario, layout, at, set(names))
    failures, draws = resolve_failures(scenario, layout, at)
    if draws:
        drawn = (TimedFault(d.at_s, d.fault, d.node, d.gpu, cause=d.category) for d in draws)
        faults = tuple(sorted((*faults, *drawn), key=lambda f: f.at_s))
    return Plan(scenario, layout, card, jobs, sensors, faults, scenario.start_epoch, scenario.duration, failures)


def _card(scenario: Scenario, at: Located) -> CardSpec:
    c = scenario.card
    try:
        spec = gpu_spec(c.model)
    except ColdaisleError as exc:
        raise at.error(("card", "model"), exc.message, hint=exc.hint) from None
    card = CardSpec(
        key=c.model, name=spec.name, memory_total_bytes=spec.memory_total,
        tdp_w=c.tdp or spec.tdp, idle_w=c.idle_power or spec.idle_power,
        min_limit_w=c.min_power_limit or spec.min_power_limit,
        slowdown_c=c.slowdown or spec.slowdown, shutdown_c=c.shutdown or spec.shutdown, physics=c,
    )
    if card.shutdown_c <= card.slowdown_c:
        raise at.error(("card", "shutdown"), "shutdown temperature must be above slowdown")
    if not card.idle_w < card.tdp_w:
        raise at.error(("card", "idle_power"), "idle power must be below the TDP")
    return card


def _check_stability(scenario: Scenario, at: Located) -> None:
    f = scenario.facility
    limit = min(f.control_time_constant, f.air_thermal_mass / max(f.row_mixing, 1e-9)) / 4
    if scenario.step > limit:
        raise at.error(("step",), f"a step of {scenario.step:g} s is too long for this room's air model",
                       hint=f"use at most {limit:g} s (a quarter of the control and mixing time constants)")


def _job(scenario: Scenario, layout: Layout, at: Located, i: int, job: Job, card: CardSpec) -> JobPlan:
    try:
        nodes = layout.expand_nodes(job.nodes)
    except KeyError as exc:
        raise at.error(("jobs", i, "nodes"), str(exc.args[0])) from None
    start = resolve_time(job.start, scenario, at, ("jobs", i, "start"))
    gpn = scenario.topology.gpus_per_node
    gpus = np.array([n * gpn + k for n in nodes for k in range(gpn)], dtype=np.int32)
    per = job.group_nodes or len(nodes)
    groups = tuple(gpus[s:s + per * gpn] for s in range(0, len(gpus), per * gpn))
    within = np.concatenate([np.arange(len(g)) for g in groups])
    stage = (within * job.pipeline_stages // max(1, per * gpn)).astype(np.int32)
    for key in ("compute_power", "spin_power"):
        if not card.idle_w <= getattr(job, key) <= card.tdp_w:
            raise at.error(("jobs", i, key), f"must be between the card's idle power ({card.idle_w:g} W) "
                                             f"and its TDP ({card.tdp_w:g} W)")
    if job.memory_per_gpu > card.memory_total_bytes:
        raise at.error(("jobs", i, "memory_per_gpu"), "more than the card's memory")
    return JobPlan(job, start, gpus, groups, stage)


def _sensor(layout: Layout, at: Located, i: int, s: Sensor) -> SensorPlan:
    path: tuple[str | int, ...] = ("sensors", i)
    if s.kind == "aisle":
        if s.row is None or not 1 <= s.row <= layout.n_rows:
            raise at.error((*path, "row"), f"an aisle sensor needs a row between 1 and {layout.n_rows}")
        return SensorPlan(s.name, s.kind, np.zeros(0, np.int32), row=s.row - 1)
    if s.rack is None or not 1 <= s.rack <= layout.n_racks:
        raise at.error((*path, "rack"), f"needs a rack between 1 and {layout.n_racks}")
    mask = layout.gpu_rack == s.rack - 1
    if s.shelf is not None:
        if not 1 <= s.shelf <= layout.topology.shelves_per_rack:
            raise at.error((*path, "shelf"), f"shelf must be 1..{layout.topology.shelves_per_rack}")
        mask &= layout.node_shelf[layout.gpu_node] == s.shelf - 1
    gpus = np.flatnonzero(mask).astype(np.int32)
    if gpus.size == 0:
        raise at.error((*path, "shelf"), "no GPU sits on that shelf")
    return SensorPlan(s.name, s.kind, gpus, rack=s.rack - 1)


def _timeline(scenario: Scenario, layout: Layout, at: Located, jobs: set[str]) -> tuple[TimedFault, ...]:
    out: list[TimedFault] = []
    last = -1.0
    for i, fault in enumerate(scenario.timeline):
        t = resolve_time(fault.at, scenario, at, ("timeline", i, "at"))
        if t < last:
            raise at.error(("timeline", i, "at"), "timeline entries must be in time order",
                           hint="sort the timeline by `at`")
        last = t
        if isinstance(fault, FanFailures):
            out.extend(_fan_failures(scenario, layout, at, i, fault, t))
            continue
        out.append(_locate(scenario, layout, at, i, fault, t, jobs))
    return tuple(sorted(out, key=lambda f: f.at_s))


def _locate(scenario: Scenario, layout: Layout, at: Located, i: int, fault: Fault, t: float,
            jobs: set[str]) -> TimedFault:
    path: tuple[str | int, ...] = ("timeline", i)
    node = gpu = peer = -1
    if hasattr(fault, "node"):
        node = _node(layout, at, (*path, "node"), fault.node)
    if hasattr(fault, "gpu"):
        if not 0 <= fault.gpu < scenario.topology.gpus_per_node:
            raise at.error((*path, "gpu"), f"GPU index must be 0..{scenario.topology.gpus_per_node - 1}")
        gpu = layout.gpu(node, fault.gpu)
    if hasattr(fault, "peer"):
        peer = _node(layout, at, (*path, "peer"), fault.peer)
    if hasattr(fault, "span") and node + fault.span > layout.n_nodes:
        raise at.error((*path, "span"), f"only {layout.n_nodes - node} nodes from {fault.node} on")
    if hasattr(fault, "row") and not 1 <= fault.row <= layout.n_rows:
        raise at.error((*path, "row"), f"row must be 1..{layout.n_rows}")
    if hasattr(fault, "rack") and not 1 <= fault.rack <= layout.n_racks:
        raise at.error((*path, "rack"), f"rack must be 1..{layout.n_racks}")
    if hasattr(fault, "job") and fault.job not in jobs:
        raise at.error((*path, "job"), f"no job named {fault.job!r}")
    return TimedFault(t, fault, node, gpu, peer)


def _node(layout: Layout, at: Located, path: tuple[str | int, ...], name: str) -> int:
    if name not in layout.node_index:
        raise at.error(path, f"no node named {name!r}",
                       hint=f"the cluster has {layout.node_names[0]}..{layout.node_names[-1]}")
    return layout.node_index[name]


def _fan_failures(scenario: Scenario, layout: Layout, at: Located, i: int, f: FanFailures,
                  t0: float) -> list[TimedFault]:
    t1 = resolve_time(f.until, scenario, at, ("timeline", i, "until"))
    if t1 <= t0:
        raise at.error(("timeline", i, "until"), "`until` must be after `at`")
    for r in f.rows:
        if not 1 <= r <= layout.n_rows:
            raise at.error(("timeline", i, "rows"), f"row {r} does not exist (rows are 1..{layout.n_rows})")
    candidates = np.flatnonzero(np.isin(layout.gpu_row, np.array(f.rows) - 1))
    if f.count > candidates.size:
        raise at.error(("timeline", i, "count"), f"only {candidates.size} GPUs in those rows")
    rng = np.random.default_rng(scenario.seed + 7919 * i)
    gpus = rng.choice(candidates, size=f.count, replace=False)
    times = np.sort(rng.uniform(t0, t1, size=f.count))
    return [
        TimedFault(float(t), FanFailure(fault="fan_failure", at=f"+{t}s",
                                        node=layout.node_names[int(layout.gpu_node[g])],
                                        gpu=int(layout.gpu_local[g])),
                   int(layout.gpu_node[g]), int(g))
        for t, g in zip(times, gpus, strict=True)
    ]


def resolve_time(spec: Any, scenario: Scenario, at: Located, path: tuple[str | int, ...]) -> float:
    """Seconds after the scenario start for "03:04", "03:04:30", "+5 min" or an ISO timestamp."""
    start = datetime.fromtimestamp(scenario.start_epoch, tz=UTC)
    if isinstance(spec, str) and "T" in spec:
        try:
            spec = datetime.fromisoformat(spec.strip())
        except ValueError:
            raise at.error(path, f"cannot read {spec!r} as an ISO timestamp") from None
    if isinstance(spec, datetime):
        when = spec if spec.tzinfo else spec.replace(tzinfo=UTC)
        offset = (when - start).total_seconds()
    elif isinstance(spec, str) and spec.strip().startswith("+"):
        try:
            offset = parse_quantity(spec.strip()[1:], "duration")
        except UnitError as exc:
            raise at.error(path, str(exc)) from None
    elif isinstance(spec, str) and (m := _CLOCK.match(spec.strip())):
        h, mnt, sec = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if h > 23 or mnt > 59 or sec > 59:
            raise at.error(path, f"{spec!r} is not a time of day")
        when = start.replace(hour=h, minute=mnt, second=sec, microsecond=0)
        if when < start:
            when += timedelta(days=1)
        offset = (when - start).total_seconds()
    else:
        raise at.error(path, f"cannot read {spec!r} as a time",
                       hint='write "03:04", "03:04:30", "+5 min" or "2024-05-21T03:04:00Z"')
    if not 0 <= offset <= scenario.duration:
        raise at.error(path, f"{spec} is outside the scenario (start {start:%Y-%m-%d %H:%M} UTC, "
                             f"duration {scenario.duration / 3600:g} h)")
    return offset
