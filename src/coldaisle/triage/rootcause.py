"""Ranked hypotheses: the earliest critical event plus causal rules, each with evidence and blast radius.

Rules (each may yield hypotheses; every hypothesis names its origin host and the lines that support it):
- memory runaway: on one host, a memory symptom (CUDA OOM, page allocation failure, OOM kill, a task stuck
  in D state) followed on the same clock by the GPU or node dying (Xid 79, off the bus, panic).
- collective failure: collective errors or timeouts on peers, and one host with a hardware fault before them
  (or silent among the job's ranks, or behind in the collective count). Without any collective error logged
  (a deadlock with no timeout logs nothing) a hardware fault on a job's node while the job ran, followed by
  cluster-wide symptoms, is reported at lower confidence.
- bootstrap/connection failure: NCCL could not reach a peer; origin is the peer when it shows a fault.
- heat: throttling, thermal shutdowns, fan, cooling and power events; origin is the earliest cause among them.
- any other critical event on a host not explained above.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coldaisle.telemetry.events import Severity
from coldaisle.triage.interface import Hit
from coldaisle.triage.timeline import sort_key

MEMORY = frozenset({"cuda_oom", "page_alloc_failure", "oom_invoked", "oom_kill", "hung_task"})
DEATH = frozenset({"xid", "gpu_fell_off_bus", "kernel_panic", "node_down", "soft_lockup"})
COLLECTIVE = frozenset({"nccl_watchdog_timeout", "nccl_error", "nccl_network_error", "cuda_error"})
HARDWARE = frozenset({"xid", "gpu_fell_off_bus", "pcie_aer", "nvlink_error", "ecc_error", "row_remap",
                      "gsp_timeout", "ib_link_down", "kernel_panic", "driver_load_failure", "dcgm_diag_fail",
                      "soft_lockup", "hung_task"})
HEAT = frozenset({"thermal_throttle_gpu", "thermal_throttle_cpu", "thermal_shutdown", "fan_failure",
                  "cooling_failure", "power_event"})
SYMPTOMS = frozenset({"job_failed", "node_down", *HEAT})
EVIDENCE = 8


@dataclass
class Hypothesis:
    """One ranked explanation."""

    kind: str
    title: str
    origin: str
    confidence: str  # high | medium | low
    time: float | None
    evidence: list[Hit]
    affected: list[str] = field(default_factory=list)
    score: float = 0.0
    note: str = ""

    @property
    def blast_radius(self) -> int:
        """How many hosts the hypothesis touches."""
        return len(self.affected)


def _ordered(hits: Iterable[Hit]) -> list[Hit]:
    return sorted(hits, key=sort_key)


def _first_time(hits: Iterable[Hit]) -> float | None:
    times = [h.time for h in hits if h.time is not None]
    return min(times) if times else None


def _before(a: Hit, b: Hit) -> bool | None:
    """Whether a happened before b, when their clocks allow saying so."""
    if a.time is not None and b.time is not None:
        return a.time <= b.time
    if a.uptime is not None and b.uptime is not None and a.host == b.host:
        return a.uptime <= b.uptime
    if a.file == b.file:
        return a.order <= b.order
    return None


def memory_runaways(by_host: dict[str, list[Hit]]) -> list[Hypothesis]:
    """Memory symptom then GPU/node death on the same host."""
    out = []
    for host, hits in by_host.items():
        mem = [h for h in hits if h.cls in MEMORY]
        if not mem:
            continue
        first = mem[0]
        deaths = [h for h in hits if h.cls in DEATH and h.severity >= Severity.ERROR and _before(first, h)]
        chain = _ordered([*mem, *deaths])
        steps = " -> ".join(dict.fromkeys(_step(h) for h in chain))
        sev = max(h.severity for h in chain)
        out.append(Hypothesis("memory", f"memory runaway on {host}: {steps}", host,
                              "high" if deaths else "medium", _first_time(chain), chain[:EVIDENCE], [host],
                              score=10 * sev + (5 if deaths else 0)))
    return out


def _step(h: Hit) -> str:
    if h.cls == "xid":
        return f"Xid {h.fields.get('xid')}"
    if h.cls == "hung_task":
        return "task in D state"
    return h.cls.replace("_", " ")


def collective_failures(hits: Sequence[Hit], by_host: dict[str, list[Hit]], explained: set[str]) -> list[Hypothesis]:
    """Collective errors on peers traced to the host with a fault, the silent rank or the laggard."""
    coll = [h for h in hits if h.cls in COLLECTIVE and h.severity >= Severity.ERROR]
    members = {h.host for h in hits if h.cls == "nccl_init"}
    faults = {host: [h for h in hs if h.cls in HARDWARE and h.severity >= Severity.WARNING]
              for host, hs in by_host.items() if host not in explained}
    faults = {h: f for h, f in faults.items() if f}
    if coll:
        return [_with_errors(coll, members, faults, hits)]
    symptoms = [h for h in hits if h.cls in SYMPTOMS and h.severity >= Severity.WARNING]
    suspects = {h: f for h, f in faults.items() if not members or h in members}
    lagging = _laggard_group(hits)
    if lagging is not None:  # the ranks' last enqueue traces say who never entered the collective
        return [_laggard_hypothesis(*lagging, suspects, symptoms)]
    if not suspects or not symptoms:
        return []
    host = min(suspects, key=lambda h: sort_key(suspects[h][0]))
    hosts = sorted({h.host for h in symptoms} | {host})
    ev = [*suspects[host][:3], *_ordered(symptoms)[:EVIDENCE - 3]]
    return [Hypothesis("collective", f"collective stall: hardware fault on {host} ({_step(suspects[host][0])}) "
                       "while its job ran, then cluster-wide symptoms", host, "low" if len(suspects) > 1 else "medium",
                       _first_time(ev), ev, hosts, score=20,
                       note="no collective error or timeout was logged (a hang without a timeout logs nothing); "
                            f"{host} is the only job node with a hardware fault" if len(suspects) == 1 else "")]


def _with_errors(coll: list[Hit], members: set[str], faults: dict[str, list[Hit]],
                 hits: Sequence[Hit]) -> Hypothesis:
    reporters = {h.host for h in coll}
    first = _ordered(coll)[0]
    scores: dict[str, float] = defaultdict(float)
    for host, fs in faults.items():
        scores[host] += 1 + max(f.severity for f in fs)
        if any(_before(f, first) for f in fs):
            scores[host] += 3
    for host in members - reporters:
        scores[host] += 2  # a member that reported nothing is the one the others waited for
    laggard = _laggard(hits)
    if laggard:
        scores[laggard] += 2
    silent = _silent_rank_hosts(coll, hits)
    for host in silent:
        scores[host] += 3  # the rank that never timed out is the one every other rank waited for
    origin = max(scores, key=lambda h: (scores[h], -min((sort_key(f) for f in faults.get(h, [first])),
                                                        default=(9, "", 0.0, 0))[2])) if scores else first.host
    ev = [*faults.get(origin, [])[:3], *_ordered(coll)[:EVIDENCE - 3]]
    affected = sorted(reporters | members | {origin})
    why = [w for w, ok in (("hardware fault", origin in faults),
                           ("before the collective errors", any(_before(f, first) for f in faults.get(origin, []))),
                           ("its rank never timed out", origin in silent), ("lowest collective count",
                                                                           origin == laggard)) if ok]
    title = (f"collective failure originating on {origin} ({', '.join(why) or 'first to fail'}); "
             f"{len(coll)} collective errors/timeouts on {len(reporters)} hosts")
    return Hypothesis("collective", title, origin, "high" if origin in faults else "medium", _first_time(ev), ev,
                      affected, score=30 + len(reporters) ** 0.5)


def _laggard_hypothesis(host: str, traces: list[Hit], suspects: dict[str, list[Hit]],
                        symptoms: list[Hit]) -> Hypothesis:
    """No error was logged, but every rank's last opCount was: the one behind is where the others wait."""
    behind = [h for h in traces if h.host == host]
    low = min(int(str(h.fields.get("op_count", "0")), 16) for h in behind)
    top = max(int(str(h.fields.get("op_count", "0")), 16) for h in traces)
    mine = [h for h in behind if int(str(h.fields.get("op_count", "0")), 16) == low]
    ev = [*suspects.get(host, [])[:3], *mine[:2], *_ordered(symptoms)[:EVIDENCE - 5]]
    why = ["lowest collective count"] + (["hardware fault"] if host in suspects else [])
    return Hypothesis("collective", f"collective stall originating on {host} ({', '.join(why)}): its rank's last "
                      f"collective is opCount {low:#x} while the others entered {top:#x}", host,
                      "high" if host in suspects else "medium", _first_time(ev), ev,
                      sorted({h.host for h in traces} | {h.host for h in symptoms} | {host}),
                      score=30 + len({h.host for h in traces}) ** 0.5 + (10 if host in suspects else 0),
                      note="no collective error or timeout was logged (a hang without a timeout logs nothing); "
                           "the NCCL enqueue traces (NCCL_DEBUG_SUBSYS=COLL) show which rank fell behind")


def _silent_rank_hosts(coll: list[Hit], hits: Sequence[Hit]) -> set[str]:
    """Hosts of the ranks missing from a watchdog timeout storm (rank -> host from NCCL init lines)."""
    timed_out = {int(h.fields["rank"]) for h in coll if h.cls == "nccl_watchdog_timeout" and "rank" in h.fields}
    inits = {int(h.fields["rank"]): (h.host, int(h.fields.get("nranks", 0))) for h in hits
             if h.cls == "nccl_init" and "rank" in h.fields}
    nranks = max((n for _, n in inits.values()), default=0)
    if not inits or len(timed_out) < nranks / 2:
        return set()
    known = sorted(inits)
    out = set()
    for r in set(range(nranks)) - timed_out:
        below = [k for k in known if k <= r]
        if below:
            out.add(inits[below[-1]][0])  # a node's ranks are contiguous from its first GPU's
    return out if len(out) <= 3 else set()


def _laggard(hits: Sequence[Hit]) -> str | None:
    """The host whose ranks' last enqueued collective is behind the rest of the same job's ranks."""
    group = _laggard_group(hits)
    return group[0] if group else None


def _laggard_group(hits: Sequence[Hit]) -> tuple[str, list[Hit]] | None:
    """(laggard host, the traces of its job) for the job spanning the most hosts whose ranks disagree.

    Traces are compared within one job's log (same file name on every node, e.g. slurm-<jobid>.out): two
    jobs' operation counters have nothing to do with each other."""
    by_job: dict[str, list[Hit]] = defaultdict(list)
    for h in hits:
        if h.cls == "nccl_op_trace":
            by_job[Path(h.file).name].append(h)
    best: tuple[str, list[Hit]] | None = None
    for traces in by_job.values():
        last: dict[str, int] = {}
        for h in traces:
            n = int(str(h.fields.get("op_count", "0")), 16)
            last[h.host] = min(last.get(h.host, n), n)
        if len(last) < 2 or len(set(last.values())) < 2:
            continue
        if best is None or len({h.host for h in traces}) > len({h.host for h in best[1]}):
            best = (min(last, key=lambda k: last[k]), traces)
    return best


def connection_failures(hits: Sequence[Hit], by_host: dict[str, list[Hit]]) -> list[Hypothesis]:
    """One hypothesis per (host, peer) pair NCCL could not connect."""
    pairs: dict[tuple[str, str], list[Hit]] = defaultdict(list)
    for h in hits:
        if h.cls == "nccl_connection_failure" and h.severity >= Severity.WARNING:
            pairs[(h.host, str(h.fields.get("peer") or h.fields.get("peer_ip") or "?"))].append(h)
    out = []
    for (host, peer), hs in pairs.items():
        peer_faults = [h for h in by_host.get(peer, []) if h.cls in HARDWARE | DEATH]
        port = hs[0].fields.get("port")
        reason = hs[0].fields.get("reason", "failed")
        origin = peer if peer_faults else host
        out.append(Hypothesis("bootstrap", f"NCCL connection from {host} to {peer}"
                              f"{f' port {port}' if port else ''} failed ({reason})", origin,
                              "high" if peer_faults else "medium", _first_time(hs), [*hs, *peer_faults][:EVIDENCE],
                              sorted({host, peer}), score=15 + len(hs) ** 0.5,
                              note=f"{peer} shows faults" if peer_faults else f"{peer} logged no fault"))
    return out


def heat(hits: Sequence[Hit], samples_max: dict[str, float]) -> list[Hypothesis]:
    """Throttling, thermal shutdowns, fans, cooling and power events as one heat hypothesis."""
    hot = _ordered(h for h in hits if h.cls in HEAT and h.severity >= Severity.WARNING)
    if not hot:
        return []
    causes = [h for h in hot if h.cls in ("fan_failure", "cooling_failure")]
    origin_hit = causes[0] if causes and _before(causes[0], hot[0]) else hot[0]
    hosts = sorted({h.host for h in hot})
    throttled = {h.host for h in hot if h.cls.startswith("thermal")}
    peak = max(samples_max.items(), key=lambda kv: kv[1]) if samples_max else None
    note = f"hottest sensor {peak[0]} peaked at {peak[1]:.0f} C" if peak else ""
    ev = [origin_hit, *[h for h in hot if h is not origin_hit][:EVIDENCE - 1]]
    what = f"{len(throttled)} hosts throttled or shut down for temperature" if throttled else "no throttling logged"
    return [Hypothesis("heat", f"heat: {what}{f', {len(causes)} fan/cooling failures' if causes else ''}",
                       origin_hit.host,
                       "medium", _first_time(hot), ev, hosts, score=10 * max(h.severity for h in hot) / 2
                       + len(hosts) ** 0.5, note=note)]


def others(by_host: dict[str, list[Hit]], explained: set[str]) -> list[Hypothesis]:
    """Critical events on hosts no rule above explained."""
    out = []
    for host, hits in by_host.items():
        crit = [h for h in hits if h.severity >= Severity.CRITICAL and h.cls not in HEAT]
        if crit and host not in explained:
            out.append(Hypothesis("fault", f"{_step(crit[0])} on {host}", host, "medium", _first_time(crit),
                                  crit[:EVIDENCE], [host], score=10 * Severity.CRITICAL))
    return out


def rank(hits: Sequence[Hit], samples_max: dict[str, float] | None = None) -> list[Hypothesis]:
    """Every rule's hypotheses, best first (score, then earliest)."""
    alarms = [h for h in _ordered(hits) if not h.benign or h.cls in ("nccl_init", "nccl_op_trace")]
    by_host: dict[str, list[Hit]] = defaultdict(list)
    for h in alarms:
        if not h.benign:
            by_host[h.host].append(h)
    mem = memory_runaways(by_host)
    explained = {h.origin for h in mem}
    coll = collective_failures(alarms, by_host, explained)
    conn = connection_failures(alarms, by_host)
    explained |= {h.origin for h in coll} | {h.origin for h in conn}
    out = [*coll, *mem, *conn, *heat(alarms, samples_max or {}), *others(by_host, explained)]
    earliest = _first_time(h for h in alarms if h.severity >= Severity.ERROR)
    for h in out:
        if earliest is not None and h.time == earliest:
            h.score += 5
    return sorted(out, key=lambda h: (-h.score, h.time if h.time is not None else float("inf")))
