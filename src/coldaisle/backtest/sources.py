"""Where every name a policy reads comes from in a Prometheus that scrapes dcgm-exporter or coldaisle's agent.

The table is built from the metric catalog (`telemetry.metrics_catalog`: coldaisle's families and their
dcgm-exporter aliases, with the scale between the Frame's unit and the exported one), plus the few DCGM fields
the catalog does not alias. Names no exporter holds say why (`absent`), so a rule that reads them is reported
as not evaluable rather than evaluated against silence.

Sources: NVIDIA/dcgm-exporter `etc/default-counters.csv` and `etc/dcp-metrics-included.csv` (names, units:
FB_* in MiB, TOTAL_ENERGY_CONSUMPTION in mJ, DCGM_FI_PROF_* bytes per second); go-dcgm `dcgm_fields.h`
bindings (DCGM_FI_DEV_CLOCK_THROTTLE_REASONS, field 112, renamed DCGM_FI_DEV_CLOCKS_EVENT_REASONS in DCGM 3.3;
DCGM_FI_PROF_NVLINK_RX_BYTES/TX_BYTES, fields 1012/1011).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache

from coldaisle.policy import names as N
from coldaisle.policy.loader import CompiledRule
from coldaisle.telemetry.frame import METRICS
from coldaisle.telemetry.metrics_catalog import CATALOG, MetricGroup

#: how a source's samples become the policy's values
GAUGE, COUNTER, BITMASK, XID, STATIC, DERIVED, ABSENT = ("gauge", "counter", "bitmask", "xid", "static",
                                                         "derived", "absent")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One Prometheus metric that may hold a name: multiply its samples by `scale` for the policy's unit."""

    metric: str
    scale: float = 1.0
    match: tuple[tuple[str, str], ...] = ()  # extra label matchers (a mapping file's `match:`)


@dataclass(frozen=True, slots=True)
class Source:
    """A policy name, its level, and the metrics that may hold it (the first one present wins)."""

    name: str
    level: str  # device | node | job | process
    kind: str
    candidates: tuple[Candidate, ...] = ()
    note: str = ""  # where the value comes from, or why no exporter has it

    @property
    def fetched(self) -> bool:
        """Whether samples are read for it (static facts are read once, derived ones computed)."""
        return self.kind in (GAUGE, COUNTER, BITMASK, XID)


_COUNTERS = {m.name for m in METRICS if m.counter}
#: DCGM fields the catalog does not alias: the profiling NVLink counters and the 3.3+ name of the reasons mask
_EXTRA = {
    "nvlink_rx_bytes_per_s": (Candidate("DCGM_FI_PROF_NVLINK_RX_BYTES"),),
    "nvlink_tx_bytes_per_s": (Candidate("DCGM_FI_PROF_NVLINK_TX_BYTES"),),
    "throttle_reasons": (Candidate("DCGM_FI_DEV_CLOCKS_EVENT_REASONS"),),
}
_ABSENT = {
    "inlet_c": "the node's inlet air temperature comes from its BMC: neither dcgm-exporter nor coldaisle's agent "
               "exports it; map your IPMI or Redfish exporter's series in a mapping file",
    "kernel_gpu_errors": "the agent counts GPU errors in the node's kernel log; no exporter publishes the count",
}
#: job values read from one series per rank (or per node): the job's value is the worst rank's, as the agent's own
#: job view (agent.procjobs) combines them; the others (progress age) take the freshest rank's
WORST_RANK = frozenset({"job_latency_p50_s", "job_latency_p99_s", "job_straggler_score"})
_PER_RANK = {"job_straggler_score": (Candidate("coldaisle_job_rank_straggler_score"),)}
_PROCESS = ("per-process rows (PID, GPU, device memory) are read from NVML by the agent; dcgm-exporter and "
            "Prometheus hold no per-process series, so process rules and process_* names cannot be evaluated")
_STATIC_FACTS = {"slowdown_c": "slowdown_temperature_c", "shutdown_c": "shutdown_temperature_c",
                 "power_default_limit_w": "", "power_min_limit_w": "", "power_max_limit_w": ""}
_DERIVED = {
    "lost": "derived: a GPU whose newest sample is older than --lost-after (the samples' own timestamps), "
            "or coldaisle_gpu_lost",
    "sample_age_s": "derived: the step's time minus the newest sample's own timestamp",
    "thermal_throttled": "derived from the clock event reasons bitmask",
    "power_capped": "derived from the clock event reasons bitmask",
}


def _catalog_candidates(source: str) -> tuple[Candidate, ...]:
    """dcgm-exporter's alias first, then coldaisle's own family, each scaled back to the Frame's unit."""
    rows = [m for m in CATALOG if m.source == source and m.group in (MetricGroup.DCGM, MetricGroup.GPU,
                                                                     MetricGroup.HOST, MetricGroup.JOB)]
    rows.sort(key=lambda m: m.group is not MetricGroup.DCGM)
    return tuple(Candidate(m.name, 1.0 / m.scale) for m in rows)


@cache
def table() -> dict[str, Source]:
    """Every policy name -> its Source."""
    out: dict[str, Source] = {}
    for name in N.DEVICE:
        out[name] = _device(name)
    out["throttle_reasons"] = Source("throttle_reasons", "device", BITMASK, _dcgm_first(
        (*_catalog_candidates("throttle_reasons"), *_EXTRA["throttle_reasons"])))
    for name in N.PROCESS:
        out[name] = Source(name, "process", ABSENT, note=_PROCESS)
    for level, names in (("node", N.NODE), ("job", N.JOB)):
        for name in names:
            found = _catalog_candidates(name) or _PER_RANK.get(name, ())
            note = _ABSENT.get(name) or f"{name} is not exported under any name coldaisle knows"
            out[name] = Source(name, level, GAUGE, found) if found else Source(name, level, ABSENT, note=note)
    return out


def _device(name: str) -> Source:
    if name in _DERIVED:
        cands = _catalog_candidates("lost") if name == "lost" else ()
        return Source(name, "device", DERIVED, cands, _DERIVED[name])
    if name in _STATIC_FACTS:
        attr = _STATIC_FACTS[name]
        cands = _catalog_candidates(attr) if attr else ()
        return Source(name, "device", STATIC, cands, "the GPU catalog by the modelName label" +
                      (", unless the exporter publishes it" if cands else ""))
    if name == "xid":
        return Source(name, "device", XID, _catalog_candidates("last_xid"),
                      "the last Xid gauge: a change of its value is an Xid event")
    if name == "memory_total_bytes":
        return Source(name, "device", GAUGE, _catalog_candidates(name),
                      "DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE when no total is exported; else the GPU catalog")
    cands = _dcgm_first((*_catalog_candidates(name), *_EXTRA.get(name, ())))
    return Source(name, "device", COUNTER if name in _COUNTERS else GAUGE, cands)


def _dcgm_first(cands: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
    """dcgm-exporter's names before coldaisle's (a site that runs both reads the exporter it had first)."""
    return tuple(sorted(cands, key=lambda c: not c.metric.startswith("DCGM_")))


#: what `count(kind[, code], window)` reads: the node's durable fault history, kept by the agent on the node
FAULT_HISTORY = "fault history"


def names_read(cr: CompiledRule) -> set[str]:
    """The policy names a rule's conditions read (through its `let`s too); FAULT_HISTORY for `count(kind, ...)`."""
    known = table()
    kinds = getattr(N, "HISTORY", {})
    found: set[str] = set()
    for text in (cr.rule.when, cr.rule.clear or "", cr.rule.straggler or "", *cr.rule.let.values()):
        flat = " ".join(text.split())
        if not flat:
            continue
        skip: set[int] = set()
        for node in ast.walk(ast.parse(flat, mode="eval")):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "count"
                    and len(node.args) in (2, 3) and isinstance(node.args[0], ast.Name) and node.args[0].id in kinds):
                found.add(FAULT_HISTORY)
                skip.add(id(node.args[0]))
            elif isinstance(node, ast.Name) and node.id in known and id(node) not in skip:
                found.add(node.id)
    if {"thermal_throttled", "power_capped"} & found:
        found.add("throttle_reasons")
    return found


def windows_used(cr: CompiledRule) -> list[tuple[str, str, float]]:
    """(function, column, seconds) of every windowed call in a rule, e.g. ("rate", "temperature_c", 30.0)."""
    out = []
    for text in (cr.rule.when, cr.rule.clear or "", cr.rule.straggler or "", *cr.rule.let.values()):
        flat = " ".join(text.split())
        for node in ast.walk(ast.parse(flat, mode="eval")) if flat else ():
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in N.WINDOWED
                    and node.args and isinstance(node.args[0], ast.Name)
                    and isinstance(node.args[-1], ast.Constant)):
                out.append((node.func.id, node.args[0].id, float(node.args[-1].value)))
    return out
