"""Ranked hypotheses: the earliest critical event plus causal rules, each with evidence and blast radius.

Rules (each may yield hypotheses; every hypothesis names its origin host and the lines that support it):
- memory runaway: on one host, a memory symptom (CUDA OOM, page allocation failure, OOM kill, a task stuck
  in D state) followed on the same clock by the GPU or node dying (Xid 79, off the bus, panic).
- collective failure (collective.py): collective errors or timeouts on peers, and the host they waited for.
- bootstrap/connection failure: NCCL could not reach a peer; origin is the peer when it shows a fault.
- heat: throttling, thermal shutdowns, fan, cooling and power events; origin is the earliest cause among them.
- any other critical event on a host not explained above.

Times are compared on the common clock (`When`: each host's estimated skew corrected), and only events that
alarm count as faults (a lone corrected PCIe error does not, a stream of them does).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from coldaisle.telemetry.events import Severity
from coldaisle.triage.collective import collective_failures
from coldaisle.triage.interface import Hit
from coldaisle.triage.model import DEATH, EVIDENCE, HARDWARE, HEAT, MEMORY, Hypothesis, step
from coldaisle.triage.when import When

__all__ = ["Hypothesis", "rank"]


def memory_runaways(by_host: dict[str, list[Hit]], when: When) -> list[Hypothesis]:
    """Memory symptom then GPU/node death on the same host (without a death, a weaker hypothesis)."""
    out = []
    for host, hits in by_host.items():
        mem = [h for h in hits if h.cls in MEMORY]
        if not mem:
            continue
        first = mem[0]
        deaths = [h for h in hits if h.cls in DEATH and h.severity >= Severity.ERROR and when.before(first, h)]
        chain = when.ordered([*mem, *deaths])
        steps = " -> ".join(dict.fromkeys(step(h) for h in chain))
        sev = max(h.severity for h in chain)
        out.append(Hypothesis("memory", f"memory runaway on {host}: {steps}", host,
                              "high" if deaths else "medium", when.first(chain), chain[:EVIDENCE], [host],
                              score=10 * sev + 5 if deaths else 5 * sev))
    return out


def connection_failures(hits: Sequence[Hit], by_host: dict[str, list[Hit]], when: When) -> list[Hypothesis]:
    """One hypothesis per (host, peer) pair NCCL could not connect."""
    pairs: dict[tuple[str, str], list[Hit]] = defaultdict(list)
    for h in hits:
        if h.cls == "nccl_connection_failure" and h.alarm:
            pairs[(h.host, str(h.fields.get("peer") or h.fields.get("peer_ip") or "?"))].append(h)
    out = []
    for (host, peer), hs in pairs.items():
        peer_faults = [h for h in by_host.get(peer, []) if h.cls in HARDWARE | DEATH]
        port = hs[0].fields.get("port")
        reason = hs[0].fields.get("reason", "failed")
        origin = peer if peer_faults else host
        out.append(Hypothesis("bootstrap", f"NCCL connection from {host} to {peer}"
                              f"{f' port {port}' if port else ''} failed ({reason})", origin,
                              "high" if peer_faults else "medium", when.first(hs), [*hs, *peer_faults][:EVIDENCE],
                              sorted({host, peer}), score=15 + len(hs) ** 0.5,
                              note=f"{peer} shows faults" if peer_faults else f"{peer} logged no fault"))
    return out


def heat(hits: Sequence[Hit], samples_max: dict[str, float], when: When) -> list[Hypothesis]:
    """Throttling, thermal shutdowns, fans, cooling and power events as one heat hypothesis."""
    hot = when.ordered(h for h in hits if h.cls in HEAT and h.alarm)
    if not hot:
        return []
    causes = [h for h in hot if h.cls in ("fan_failure", "cooling_failure")]
    origin_hit = causes[0] if causes and when.before(causes[0], hot[0]) else hot[0]
    hosts = sorted({h.host for h in hot})
    throttled = {h.host for h in hot if h.cls.startswith("thermal")}
    peak = max(samples_max.items(), key=lambda kv: kv[1]) if samples_max else None
    note = f"hottest sensor {peak[0]} peaked at {peak[1]:.0f} C" if peak else ""
    ev = [origin_hit, *[h for h in hot if h is not origin_hit][:EVIDENCE - 1]]
    what = f"{len(throttled)} hosts throttled or shut down for temperature" if throttled else "no throttling logged"
    return [Hypothesis("heat", f"heat: {what}{f', {len(causes)} fan/cooling failures' if causes else ''}",
                       origin_hit.host,
                       "medium", when.first(hot), ev, hosts, score=10 * max(h.severity for h in hot) / 2
                       + len(hosts) ** 0.5, note=note)]


def others(by_host: dict[str, list[Hit]], explained: set[str], when: When) -> list[Hypothesis]:
    """Critical events on hosts no rule above explained."""
    out = []
    for host, hits in by_host.items():
        crit = [h for h in hits if h.severity >= Severity.CRITICAL and h.cls not in HEAT]
        if crit and host not in explained:
            out.append(Hypothesis("fault", f"{step(crit[0])} on {host}", host, "medium", when.first(crit),
                                  crit[:EVIDENCE], [host], score=10 * Severity.CRITICAL))
    return out


def _skew_note(h: Hypothesis, when: When) -> None:
    skew = when.skews.get(h.origin)
    if skew:
        h.note = "; ".join(filter(None, [h.note, f"{h.origin}'s clock runs {abs(skew):.1f} s "
                                         f"{'ahead' if skew > 0 else 'behind'}; its times are corrected here"]))


def rank(hits: Sequence[Hit], samples_max: dict[str, float] | None = None,
         skews: dict[str, float] | None = None) -> list[Hypothesis]:
    """Every rule's hypotheses, best first (score, then earliest); `skews` are hosts' trusted clock offsets."""
    when = When(skews)
    alarms = [h for h in when.ordered(hits) if h.alarm or h.cls in ("nccl_init", "nccl_op_trace")]
    by_host: dict[str, list[Hit]] = defaultdict(list)
    for h in alarms:
        if h.alarm:
            by_host[h.host].append(h)
    mem = memory_runaways(by_host, when)
    explained = {h.origin for h in mem if h.confidence == "high"}
    coll = collective_failures(alarms, by_host, explained, when)
    conn = connection_failures(alarms, by_host, when)
    explained |= {h.origin for h in [*mem, *coll, *conn]}
    out = [*coll, *mem, *conn, *heat(alarms, samples_max or {}, when), *others(by_host, explained, when)]
    earliest = when.first(h for h in alarms if h.severity >= Severity.ERROR)
    for h in out:
        if earliest is not None and h.time == earliest:
            h.score += 5
        _skew_note(h, when)
    return sorted(out, key=lambda h: (-h.score, h.time if h.time is not None else float("inf")))
