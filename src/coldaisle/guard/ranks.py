"""Which process is which rank, what each rank is doing, and who the straggler is.

A rank is known from its environment (`RANK`, which torchrun, Slurm launchers and DeepSpeed set; else
`LOCAL_RANK`); its data-loader workers inherit the same variable, so the rank's own process is the
oldest of its family (the one whose parent is not the same rank). The analysis is pure over what the
supervisor gathered (stacks, /proc states, heartbeat steps), so it is tested without processes.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
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


@dataclass(frozen=True, slots=True)
class HangAnalysis:
    """Waiting ranks, stragglers (alive, outside the collective the others wait in) and ranks in I/O."""

    waiting: tuple[RankView, ...]
    stragglers: tuple[RankView, ...]
    io: tuple[RankView, ...]
    unknown: tuple[RankView, ...]
    elsewhere: tuple[RankView, ...] = ()  # outside any collective while nobody waits in one

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
        def one(v: RankView) -> dict[str, Any]:
            return {"rank": v.rank, "pid": v.pid, "activity": str(v.activity), "at": v.where(), "step": v.step,
                    "d_state": v.d_state}
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


def analyse(views: list[RankView]) -> HangAnalysis:
    """Place every rank; stragglers are the ranks outside the collective that the others wait in."""
    by = {a: tuple(sorted((v for v in views if v.activity == a), key=lambda v: v.rank)) for a in Activity}
    waiting, other = by[Activity.COLLECTIVE], by[Activity.OTHER]
    stragglers = other if waiting else ()
    if waiting and not other:  # everyone in a collective: those in a different one than the majority
        ops = Counter(_op(v) for v in waiting)
        if len(ops) > 1:
            (top, n), (_, m) = ops.most_common(2)
            if n > m:
                stragglers = tuple(v for v in waiting if _op(v) != top)
                waiting = tuple(v for v in waiting if _op(v) == top)
    return HangAnalysis(waiting, stragglers, by[Activity.IO], by[Activity.UNKNOWN], () if waiting else other)


def _op(v: RankView) -> str:
    lead = v.stack.main or (v.stack.threads[0] if v.stack.threads else None)
    return lead.at.function if lead and lead.at else "?"


def _who(v: RankView) -> str:
    """`rank 1 (pid 4242)`, or `pid 4242` for a process that names no rank."""
    return f"rank {v.rank} (pid {v.pid})" if v.rank >= 0 else f"pid {v.pid}"


def _names(views: tuple[RankView, ...]) -> str:
    return ", ".join(str(v.rank) for v in views)


def _s(views: tuple[RankView, ...]) -> str:
    return "s" if len(views) > 1 else ""
