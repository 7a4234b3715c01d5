"""Which series the policy needs, which of them this Prometheus has, and the GPUs they describe.

Before any sample is read: every name a rule reads is looked up (a mapping file's series, dcgm-exporter's
name, coldaisle's own), a rule that reads something no series holds is set aside with the reason, and the
fleet is the GPUs the liveness series (the GPU temperature) names in the window, each named as the site
names it (node, `gpu` index, `UUID`) with its card facts from the exporter or, by `modelName`, the GPU catalog.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from coldaisle.backtest import sources as S
from coldaisle.backtest.mapping import SiteNames
from coldaisle.backtest.prom import Prometheus, selector
from coldaisle.errors import ColdaisleError
from coldaisle.policy import names as N
from coldaisle.policy.loader import CompiledRule, LoadedPolicy
from coldaisle.telemetry.catalog import GpuSpec, gpu_catalog
from coldaisle.telemetry.frame import DeviceInfo

_LIVENESS = ("temperature_c", "power_w", "utilization_gpu", "memory_used_bytes")


@dataclass(frozen=True)
class Skipped:
    """A rule the history cannot evaluate, and why."""

    rule: str
    why: str
    hint: str = ""


@dataclass
class Needs:
    """What the evaluable rules read, and where each name was found (None: evaluated as unknown)."""

    found: dict[str, S.Candidate | None]
    liveness: S.Candidate
    rules: list[CompiledRule]
    skipped: list[Skipped]
    fb_total: bool = False  # memory_total_bytes is FB_USED + FB_FREE


@dataclass
class Fleet:
    """The GPUs in the window, in the order of the Frame's columns, and their nodes."""

    devices: tuple[DeviceInfo, ...]
    index: dict[tuple[str, str, str], int]
    node_names: list[str]
    node_of: np.ndarray
    notes: list[str] = field(default_factory=list)
    labelled_jobs: bool = False  # some series name a job (Slurm or pod); else each node is one job


def find_needs(prom: Prometheus, lp: LoadedPolicy, site: SiteNames, sel: str, start: float, end: float,
               step: float) -> Needs:
    """Resolve every name the rules read; set aside the rules that cannot be evaluated, with the reason."""
    found: dict[str, S.Candidate | None] = {}
    absent: dict[str, str] = {}

    def have(name: str) -> bool:
        if name in site.unknown:
            found[name] = None
            return True
        if name not in found and name not in absent:
            _resolve(prom, site.sources[name], sel, start, end, found, absent)
        return name in found

    rules, skipped = [], []
    for cr in lp.rules:
        why = _not_evaluable(cr, step, have, absent, site)
        if why is None:
            rules.append(cr)
        else:
            skipped.append(why)
    live = next((found[n] for n in _LIVENESS if have(n) and found.get(n) is not None), None)
    if live is None:
        raise ColdaisleError(f"no GPU series in {prom.url} for {sel or 'any selector'} in the window",
                             hint="check --start/--end and --selector; dcgm-exporter names GPU temperature "
                                  "DCGM_FI_DEV_GPU_TEMP (a mapping file can name another metric)")
    read = {n for cr in rules for n in S.names_read(cr)} | {"lost"}  # a GPU said lost blanks every reading
    found = {n: c for n, c in found.items() if n in read}  # only what the evaluable rules read is fetched
    fb_total = found.get("memory_total_bytes") == _FB
    return Needs(found, live, rules, skipped, fb_total)


_FB = S.Candidate("DCGM_FI_DEV_FB_USED+DCGM_FI_DEV_FB_FREE")


def _resolve(prom: Prometheus, src: S.Source, sel: str, start: float, end: float,
             found: dict[str, S.Candidate | None], absent: dict[str, str]) -> None:
    """The first candidate with series in the window, or why there is none (derived and static: always)."""
    for cand in src.candidates:
        if prom.series(selector(cand.metric, sel, cand.match), start, end):
            found[src.name] = cand
            return
    fb = ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE")
    if src.name == "memory_total_bytes" and all(prom.series(selector(m, sel), start, end) for m in fb):
        found[src.name] = _FB
        return
    if src.kind in (S.STATIC, S.DERIVED) or src.name == "memory_total_bytes":
        found[src.name] = None  # the catalog, or computed from the liveness series
        return
    if src.kind == S.ABSENT:
        absent[src.name] = src.note
        return
    tried = ", ".join(c.metric for c in src.candidates)
    absent[src.name] = f"no series {tried} in the window" if tried else "no metric known for it"


def _not_evaluable(cr: CompiledRule, step: float, have: Callable[[str], bool], absent: dict[str, str],
                   site: SiteNames) -> Skipped | None:
    name = cr.rule.name
    if cr.rule.scope == "process":
        return Skipped(name, f"a process rule: {S.table()['process_power_w'].note}")
    read = S.names_read(cr)
    if S.FAULT_HISTORY in read:
        return Skipped(name, "reads the node's fault history (count(kind, ...)): the agent keeps it on the node, "
                             "Prometheus holds only its counts over the agent's own windows")
    for col in sorted(read):
        if not have(col):
            meaning = {**N.DEVICE, **N.NODE, **N.JOB, **N.PROCESS}.get(col, col)
            why = f"reads {col} ({meaning}): {absent[col]}"
            hint = (f"map {col} to the series that holds it in a --mapping file, or list it under `unknown:` to "
                    "evaluate it as the agent does where it has no source" if site.sources[col].level != "process"
                    else "")
            return Skipped(name, why, hint)
    for fn, col, seconds in S.windows_used(cr):
        need = 2 if fn == "time_to" else 1
        if seconds < need * step - 1e-9:
            return Skipped(name, f"{fn}({col}, {seconds:g}) needs {need + 1} samples within {seconds:g} s; at a "
                                 f"{step:g} s step its window holds fewer, so the rule could never fire",
                           f"use --step {seconds / need:g}s or less, if the data was scraped that often")
    return None


def _natural(text: str) -> tuple[object, ...]:
    """node-gpu-9 before node-gpu-10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def first_label(labels: dict[str, str], names: list[str]) -> str:
    """The value of the first of `names` the series has ('' when none)."""
    return next((labels[n] for n in names if labels.get(n)), "")


def device_key(labels: dict[str, str], site: SiteNames, metric: str = "") -> tuple[str, str, str]:
    """(node, gpu index, UUID): a GPU as the site names it (a mapped series may name its node by its own label)."""
    lb = site.labels
    node = list(site.node_labels.get(metric, ())) or lb.node
    return first_label(labels, node), first_label(labels, lb.gpu), first_label(labels, lb.uuid)


def discover(prom: Prometheus, needs: Needs, site: SiteNames, sel: str, start: float, end: float) -> Fleet:
    """The GPUs the liveness series names in [start, end], sorted by node and index, with their card facts."""
    live = needs.liveness
    seen: dict[tuple[str, str, str], dict[str, str]] = {}
    labelled_jobs = False
    for labels in prom.series(selector(live.metric, sel, live.match), start, end):
        key = device_key(labels, site)
        if key[0]:
            seen.setdefault(key, labels)
            labelled_jobs = labelled_jobs or bool(job_of_labels(labels, site))
    keys = sorted(seen, key=lambda k: (_natural(k[0]), _natural(k[1]), k[2]))
    statics = _static_series(prom, needs, site, sel, start, end)
    unknown: set[str] = set()
    devices = tuple(_device(k, seen[k], site, statics, unknown) for k in keys)
    notes = [f"{m or 'GPUs without a model label'}: not in the GPU catalog, so slowdown and shutdown temperatures "
             "and power limits are unknown unless the exporter publishes them" for m in sorted(unknown)]
    node_names = sorted({k[0] for k in keys}, key=_natural)
    where = {n: i for i, n in enumerate(node_names)}
    return Fleet(devices, {k: i for i, k in enumerate(keys)}, node_names,
                 np.array([where[k[0]] for k in keys], dtype=np.intp), notes, labelled_jobs)


def job_of_labels(labels: dict[str, str], site: SiteNames) -> str:
    """`slurm:<id>` from dcgm-exporter's HPC job label, `pod:<namespace>/<pod>` from its pod labels, or ''."""
    lb = site.labels
    job = first_label(labels, lb.job)
    if job:
        return f"slurm:{job}"
    pod = first_label(labels, lb.pod)
    return f"pod:{first_label(labels, lb.namespace)}/{pod}" if pod else ""


def _static_series(prom: Prometheus, needs: Needs, site: SiteNames, sel: str, start: float,
                   end: float) -> dict[str, dict[tuple[str, str, str], float]]:
    """Card facts an exporter publishes (slowdown and shutdown temperatures): the last value in the window."""
    out: dict[str, dict[tuple[str, str, str], float]] = {}
    span = f"{max(1, math.ceil(end - start))}s"
    for name in ("slowdown_c", "shutdown_c"):
        cand = needs.found.get(name)
        if cand is not None:
            rows = prom.instant(f"last_over_time({selector(cand.metric, sel, cand.match)}[{span}])", end)
            out[name] = {device_key(lb, site, cand.metric): v * cand.scale for lb, v in rows}
    return out


def _device(key: tuple[str, str, str], labels: dict[str, str], site: SiteNames,
            statics: dict[str, dict[tuple[str, str, str], float]], unknown: set[str]) -> DeviceInfo:
    model = first_label(labels, site.labels.model)
    spec = _spec(model)
    if spec is None:
        unknown.add(model)
    nan = float("nan")
    slowdown = statics.get("slowdown_c", {}).get(key, spec.slowdown if spec else nan)
    shutdown = statics.get("shutdown_c", {}).get(key, spec.shutdown if spec else nan)
    index = int(key[1]) if key[1].isdigit() else -1
    return DeviceInfo(node=key[0], index=index, uuid=key[2], name=model,
                      memory_total_bytes=int(spec.memory_total) if spec else 0,
                      power_default_limit_w=spec.tdp if spec else nan, power_max_limit_w=spec.tdp if spec else nan,
                      power_min_limit_w=spec.min_power_limit if spec else nan, slowdown_temperature_c=slowdown,
                      shutdown_temperature_c=shutdown, pci_bus_id=labels.get("pci_bus_id", ""))


def _spec(model: str) -> GpuSpec | None:
    """The catalog entry whose name is the `modelName` label (as NVML reports it), case aside."""
    wanted = model.strip().lower()
    return next((s for s in gpu_catalog().values() if s.name.lower() == wanted), None) if wanted else None
