"""Which process is which rank, what each rank is doing, and who the straggler is.

A rank is known from its environment (`RANK`, which torchrun, Slurm launchers and DeepSpeed set; else
`LOCAL_RANK`); its data-loader workers inherit the same variable, so the rank's own process is the
oldest of its family (the one whose parent is not the same rank). The analysis is pure over what the
supervisor gathered (stacks, /proc states, heartbeat steps), so it is tested without processes.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coldaisle.guard.heartbeat import HeartbeatSnapshot
from coldaisle.guard.stackscan import Activity, StackReport, parse_dump
from coldaisle.telemetry.procfs import ProcessInfo, any_thread_in_d_state, read_environ


def environ_rank(pid: int, proc: str | os.PathLike[str] = "/proc") -> int | None:
    """`RANK` (else `LOCAL_RANK`) from the process's initial environment; None when absent or unreadable."""
    env = read_environ(pid, proc) or {}
    for name in ("RANK", "LOCAL_RANK"):
        try:
            return int(env[name])
        except (KeyError, ValueError):
            continue
    return None


def rank_leads(members: list[ProcessInfo], proc: str | os.PathLike[str] = "/proc") -> dict[int, ProcessInfo]:
    """rank -> that rank's own process (not its forked workers, which carry the same RANK)."""
    ranks = {p.pid: environ_rank(p.pid, proc) for p in members}
    leads: dict[int, ProcessInfo] = {}
    for p in members:
        r = ranks[p.pid]
        if r is None or ranks.get(p.ppid) == r:
            continue  # no rank, or a worker of a rank process
        if r not in leads or p.starttime < leads[r].starttime:
            leads[r] = p
    return leads


@dataclass(frozen=True, slots=True)
class RankView:
    """One rank at the moment of the verdict."""

    rank: int
    pid: int
    d_state: bool
    stack: StackReport
    step: int | None = None  # last heartbeat step, when it reported

    @property
    def activity(self) -> Activity:
        """D state counts as I/O whatever the stack says: the process cannot even be dumped reliably."""
        return Activity.IO if self.d_state else self.stack.activity

    def where(self) -> str:
        """The frame that says what it is doing, for people."""
        lead = self.stack.main or (self.stack.threads[0] if self.stack.threads else None)
        if lead is None or lead.at is None:
            return "uninterruptible sleep (D state)" if self.d_state else (self.stack.error or "no stack")
        return str(lead.at)

    def placement(self, host: str = "", gpu: str = "", node: int = -1) -> Placement:
        """What the analysis needs of this rank, as plain data (to share with other nodes' supervisors)."""
        lead = self.stack.main or (self.stack.threads[0] if self.stack.threads else None)
        op = lead.at.function if lead and lead.at else "?"
        return Placement(self.rank, self.pid, str(self.activity), op, self.where(), self.step, self.d_state, host, gpu,
                         node)


@dataclass(frozen=True, slots=True)
class Placement:
    """A rank placed: what it was doing, in which call, on which host and GPU. Plain data, so the supervisors of
    a multi-node job can pool theirs and reach the same analysis."""

    rank: int
    pid: int
    activity_name: str
    op: str  # the function the decisive frame is in (all_reduce, barrier, save ...)
    at: str  # that frame, for people
    step: int | None = None
    d_state: bool = False
    host: str = ""
    gpu: str = ""
    node: int = -1  # the job's node rank (torchrun's GROUP_RANK), when it has several nodes

    @property
    def activity(self) -> Activity:
        """The activity (an unknown name from a newer peer counts as OTHER)."""
        try:
            return Activity(self.activity_name)
        except ValueError:
            return Activity.OTHER

    def where(self) -> str:
        """The frame that says what it is doing, for people."""
        return self.at

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"rank": self.rank, "pid": self.pid, "activity": self.activity_name, "op": self.op, "at": self.at,
                "step": self.step, "d_state": self.d_state, "host": self.host, "gpu": self.gpu, "node": self.node}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Placement:
        """From `as_dict`; KeyError/TypeError/ValueError on a malformed one."""
        return cls(int(d["rank"]), int(d["pid"]), str(d["activity"]), str(d["op"]), str(d["at"]),
                   None if d.get("step") is None else int(d["step"]), bool(d.get("d_state")), str(d.get("host", "")),
                   str(d.get("gpu", "")), int(d.get("node", -1)))


@dataclass(frozen=True, slots=True)
class HangAnalysis:
    """Waiting ranks, stragglers (alive, outside the collective the others wait in) and ranks in I/O."""

    waiting: tuple[Placement, ...]
    stragglers: tuple[Placement, ...]
    io: tuple[Placement, ...]
    unknown: tuple[Placement, ...]
    elsewhere: tuple[Placement, ...] = ()  # outside any collective while nobody waits in one

    @property
    def io_stall(self) -> bool:
        """A rank is in I/O and nobody is stuck elsewhere: a slow checkpoint or NFS, not a collective hang."""
        return bool(self.io) and not self.stragglers

    def summary(self) -> str:
        """One sentence for the verdict."""
        parts = []
        if self.waiting:
            parts.append(f"rank{_s(self.waiting)} {_names(self.waiting)} waiting in "
                         f"{', '.join(sorted({_op(v) for v in self.waiting}))}")
        if self.stragglers:
            parts.append("straggler: " + "; ".join(f"{_who(v)} not in the collective, in {v.where()}"
                                                   for v in self.stragglers))
        if self.io:
            parts.append("in I/O: " + "; ".join(f"{_who(v)} {v.where()}" for v in self.io))
        if self.elsewhere:
            parts.append("no rank in a collective: " + "; ".join(f"{_who(v)} in {v.where()}"
                                                                 for v in self.elsewhere))
        if self.unknown:
            parts.append(f"no stack for rank{_s(self.unknown)} {_names(self.unknown)}")
        return "; ".join(parts) if parts else "no process of the job names its rank (RANK, LOCAL_RANK, a heartbeat)"

    def evidence(self) -> dict[str, Any]:
        """The same as data for verdict.json."""
        def one(v: Placement) -> dict[str, Any]:
            out = {"rank": v.rank, "pid": v.pid, "activity": str(v.activity), "at": v.where(), "step": v.step,
                   "d_state": v.d_state}
            return out | ({"host": v.host, "gpu": v.gpu} if v.host or v.gpu else {}) | (
                {"node": v.node} if v.node >= 0 else {})
        return {"waiting_ranks": [v.rank for v in self.waiting], "straggler_ranks": [v.rank for v in self.stragglers],
                "io_ranks": [v.rank for v in self.io], "ranks": [one(v) for v in
                                                                 (*self.waiting, *self.stragglers, *self.io,
                                                                  *self.elsewhere, *self.unknown)]}


def rank_views(members: list[ProcessInfo], stacks: Mapping[int, str], heartbeats: HeartbeatSnapshot | None,
               proc: str | os.PathLike[str] = "/proc") -> list[RankView]:
    """Each rank's own process (from RANK in its environment, else its heartbeat) with its stack and state."""
    ranks = heartbeats.ranks if heartbeats else ()
    steps = {r.pid: r.step for r in ranks}
    leads = {p.pid: r for r, p in rank_leads(members, proc).items()}
    alive = {p.pid for p in members}
    for r in ranks:
        if r.pid in alive and r.pid not in leads:
            leads[r.pid] = r.rank
    return [RankView(rank, pid, any_thread_in_d_state(pid, proc), parse_dump(stacks.get(pid, "")), steps.get(pid))
            for pid, rank in sorted(leads.items(), key=lambda kv: kv[1])]


def analyse(views: Sequence[RankView | Placement]) -> HangAnalysis:
    """Place every rank; stragglers are the ranks outside the collective that the others wait in (computing,
    loading a batch, evaluating: anything but I/O, which is judged apart)."""
    placed = [v.placement() if isinstance(v, RankView) else v for v in views]
    by = {a: tuple(sorted((v for v in placed if v.activity == a), key=lambda v: v.rank)) for a in Activity}
    waiting = by[Activity.COLLECTIVE]
    other = tuple(sorted((*by[Activity.OTHER], *by[Activity.LOADING], *by[Activity.EVALUATION]),
                         key=lambda v: v.rank))
    stragglers = other if waiting else ()
    if waiting and not other:  # everyone in a collective: those in a different one than the majority
        ops = Counter(_op(v) for v in waiting)
        if len(ops) > 1:
            (top, n), (_, m) = ops.most_common(2)
            if n > m:
                stragglers = tuple(v for v in waiting if _op(v) != top)
                waiting = tuple(v for v in waiting if _op(v) == top)
    return HangAnalysis(waiting, stragglers, by[Activity.IO], by[Activity.UNKNOWN], () if waiting else other)


def _op(v: Placement) -> str:
    return v.op


def _who(v: Placement) -> str:
    """`rank 1 (pid 4242)`, or `pid 4242` for a process that names no rank; with its host when known."""
    who = f"rank {v.rank} (pid {v.pid})" if v.rank >= 0 else f"pid {v.pid}"
    if v.node >= 0:
        who += f" on node {v.node}" + (f" ({v.host})" if v.host else "")
    elif v.host:
        who += f" on {v.host}"
    return who + (f" GPU {v.gpu}" if v.gpu else "")


def _names(views: tuple[Placement, ...]) -> str:
    return ", ".join(str(v.rank) for v in views)


def _s(views: tuple[Placement, ...]) -> str:
    return "s" if len(views) > 1 else ""
