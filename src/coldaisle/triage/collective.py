"""The collective-failure rule: which host the ranks of a failed or hung collective were waiting for.

With collective errors or timeouts logged, every host is scored: a hardware fault that alarms (more if it came
before the first collective error, more again for a network fault when the errors are network errors), the
peers whose NCCL transport or connection errors name it, being the job member that reported nothing, the rank
that never timed out, the lowest collective count. Without any (a deadlock with no timeout logs nothing) the
ranks' last enqueued collectives, or a hardware fault on a job node followed by cluster-wide symptoms, name it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from coldaisle.telemetry.events import Severity
from coldaisle.triage.interface import Hit
from coldaisle.triage.model import (
    COLLECTIVE,
    EVIDENCE,
    HARDWARE,
    NETWORK,
    SYMPTOMS,
    Hypothesis,
    step,
)
from coldaisle.triage.when import When

PEER_CLASSES = frozenset({"nccl_network_error", "nccl_connection_failure"})


def collective_failures(hits: Sequence[Hit], by_host: dict[str, list[Hit]], explained: set[str],
                        when: When) -> list[Hypothesis]:
    """Collective errors on peers traced to the host with a fault, the silent rank or the laggard."""
    coll = [h for h in hits if h.cls in COLLECTIVE and h.alarm and h.severity >= Severity.ERROR]
    members = {h.host for h in hits if h.cls == "nccl_init"}
    faults = {host: [h for h in hs if h.cls in HARDWARE and h.alarm]
              for host, hs in by_host.items() if host not in explained}
    faults = {h: when.ordered(f) for h, f in faults.items() if f}
    if coll:
        return [_with_errors(coll, members, faults, hits, when)]
    symptoms = [h for h in hits if h.cls in SYMPTOMS and h.alarm]
    suspects = {h: f for h, f in faults.items() if not members or h in members}
    lagging = _laggard_group(hits)
    if lagging is not None:  # the ranks' last enqueue traces say who never entered the collective
        return [_laggard_hypothesis(*lagging, suspects, symptoms, when)]
    if not suspects or not symptoms:
        return []
    host = min(suspects, key=lambda h: when.key(suspects[h][0]))
    hosts = sorted({h.host for h in symptoms} | {host})
    ev = [*suspects[host][:3], *when.ordered(symptoms)[:EVIDENCE - 3]]
    return [Hypothesis("collective", f"collective stall: hardware fault on {host} ({step(suspects[host][0])}) "
                       "while its job ran, then cluster-wide symptoms", host, "low" if len(suspects) > 1 else "medium",
                       when.first(ev), ev, hosts, score=20,
                       note="no collective error or timeout was logged (a hang without a timeout logs nothing); "
                            f"{host} is the only job node with a hardware fault" if len(suspects) == 1 else "")]


def named_peers(coll: Sequence[Hit]) -> dict[str, set[str]]:
    """Host -> the other hosts whose NCCL transport/connection errors name it as the peer."""
    out: dict[str, set[str]] = defaultdict(set)
    for h in coll:
        peer = h.fields.get("peer")
        if h.cls in PEER_CLASSES and peer and str(peer) != h.host:
            out[str(peer)].add(h.host)
    return out


def _fault_score(fs: list[Hit], first: Hit, network: bool, when: When) -> float:
    score = 1 + max(f.severity for f in fs)
    if any(when.before(f, first) for f in fs):
        score += 3
    if network and any(f.cls in NETWORK for f in fs):
        score += 3  # the collective failed on the network, and this host's network failed
    return float(score)


def _scores(coll: list[Hit], first: Hit, members: set[str], faults: dict[str, list[Hit]], hits: Sequence[Hit],
            when: When) -> tuple[dict[str, float], dict[str, set[str]], set[str], str | None]:
    """Every candidate host's score, with what it rests on: peers naming it, silent ranks, the laggard."""
    named = named_peers([h for h in hits if h.cls in PEER_CLASSES])
    network = bool(named) or any(h.cls == "nccl_network_error" for h in coll)
    scores: dict[str, float] = defaultdict(float)
    for host, fs in faults.items():
        scores[host] += _fault_score(fs, first, network, when)
    for host, by in named.items():
        scores[host] += min(2 * len(by), 6)
    for host in members - {h.host for h in coll}:
        scores[host] += 2  # a member that reported nothing is the one the others waited for
    laggard = _laggard(hits)
    if laggard:
        scores[laggard] += 2
    silent = _silent_rank_hosts(coll, hits)
    for host in silent:
        scores[host] += 3  # the rank that never timed out is the one every other rank waited for
    return scores, named, silent, laggard


def _with_errors(coll: list[Hit], members: set[str], faults: dict[str, list[Hit]], hits: Sequence[Hit],
                 when: When) -> Hypothesis:
    reporters = {h.host for h in coll}
    first = when.ordered(coll)[0]
    scores, named, silent, laggard = _scores(coll, first, members, faults, hits, when)
    origin = max(scores, key=lambda h: (scores[h], -(when.first(faults.get(h, [])) or float("inf")))) \
        if scores else first.host
    mine = faults.get(origin, [])
    ev = [*mine[:3], *when.ordered(coll)[:EVIDENCE - 3]]
    why = [w for w, ok in ((_fault_words(mine), bool(mine)),
                           ("before the collective errors", any(when.before(f, first) for f in mine)),
                           (f"named by {len(named.get(origin, ()))} peers' NCCL transport errors", origin in named),
                           ("its rank never timed out", origin in silent),
                           ("lowest collective count", origin == laggard)) if ok]
    title = (f"collective failure originating on {origin} ({', '.join(why) or 'first to fail'}); "
             f"{len(coll)} collective errors/timeouts on {len(reporters)} hosts")
    return Hypothesis("collective", title, origin, "high" if mine else "medium", when.first(ev), ev,
                      sorted(reporters | members | {origin}), score=30 + len(reporters) ** 0.5)


def _fault_words(fs: list[Hit]) -> str:
    """`hardware fault`, or what it was when the network failed (`ibp193s0 link down`)."""
    link = next((f for f in fs if f.cls == "ib_link_down"), None)
    if link is not None:
        return f"{link.fields.get('device') or link.fields.get('pci') or 'IB/RoCE'} link down"
    return "NIC fault" if any(f.cls in NETWORK for f in fs) else "hardware fault"


def _laggard_hypothesis(host: str, traces: list[Hit], suspects: dict[str, list[Hit]],
                        symptoms: list[Hit], when: When) -> Hypothesis:
    """No error was logged, but every rank's last opCount was: the one behind is where the others wait."""
    behind = [h for h in traces if h.host == host]
    low = min(int(str(h.fields.get("op_count", "0")), 16) for h in behind)
    top = max(int(str(h.fields.get("op_count", "0")), 16) for h in traces)
    mine = [h for h in behind if int(str(h.fields.get("op_count", "0")), 16) == low]
    ev = [*suspects.get(host, [])[:3], *mine[:2], *when.ordered(symptoms)[:EVIDENCE - 5]]
    why = ["lowest collective count"] + (["hardware fault"] if host in suspects else [])
    return Hypothesis("collective", f"collective stall originating on {host} ({', '.join(why)}): its rank's last "
                      f"collective is opCount {low:#x} while the others entered {top:#x}", host,
                      "high" if host in suspects else "medium", when.first(ev), ev,
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
