"""Jobs, communicators and processes on the twin: progress, collective semantics, memory, signals.

A job places one rank (one process) on each GPU of its nodes, grouped into communicators.
When one rank stops progressing, every other rank of its communicator ends up spinning in the
collective (after a pipeline-stage delay) with nothing logged, unless the job set an NCCL
timeout. A rank that exits while its communicator is healthy makes the peers abort; peers
already blocked in a deadlocked collective keep spinning.

With `rank_events: summary` (a fleet-scale scenario), what thousands of ranks do at once (start, exit,
trace a collective, time out) is done in one vectorised step and logged as one event with the rank count;
the state is exactly what rank-by-rank handling gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from coldaisle.sim.events import EventClass as E
from coldaisle.sim.resolve import JobPlan
from coldaisle.sim.state import Work
from coldaisle.telemetry.events import Severity

if TYPE_CHECKING:
    from coldaisle.sim.twin import Twin

FIRST_PID = 12849  # the report's python3 process id; each node allocates upwards from here


@dataclass
class Communicator:
    """One communicator: its GPUs, status and progress counter."""

    job: int
    gpus: np.ndarray
    status: str = "running"  # running | stalled | failed | ended
    progress: float = 0.0
    since: float = 0.0
    stalled_gpu: int = -1
    alive: int = 0  # ranks still running


class Workload:
    """Process table and job state of the twin."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        n = twin.plan.layout.n_gpus
        self.pid = np.zeros(n, np.int64)
        self.group_of = np.full(n, -1, np.int32)
        self.dstate = np.zeros(n, bool)
        self.exit_at = np.full(n, np.inf)
        self.groups: list[Communicator] = []
        self.job_status = ["pending"] * len(twin.plan.jobs)
        self._next_pid = np.full(twin.plan.layout.n_nodes, FIRST_PID, np.int64)
        self.cancelled: set[int] = set()
        self.version = 0  # bumped on every change of who runs where (views of the twin cache on it)
        self.summary = twin.plan.scenario.rank_events == "summary"
        self.signalled: dict[int, float] = {}  # job -> when a signal last reached one of its ranks
        self.live_ranks = [0] * len(twin.plan.jobs)  # per job: its ranks still running, over all its communicators

    # -- jobs -------------------------------------------------------------------------------
    def start_job(self, j: int, t: float) -> None:
        """Place job j's ranks on its GPUs that are up, undrained and free."""
        jp = self.twin.plan.jobs[j]
        self.job_status[j] = "running"
        self.version += 1
        self.twin.emit(t, self._host(jp.gpus[0]), "slurm", E.JOB_START, Severity.INFO, job=jp.spec.name,
                       job_id=jp.spec.id, nodes=len(set(self.twin.plan.layout.gpu_node[jp.gpus])),
                       user=jp.spec.user)
        for gpus in jp.groups:
            ok = gpus[self._usable(gpus)]
            if ok.size == 0:
                continue
            gi = len(self.groups)
            self.groups.append(Communicator(j, ok, since=t, alive=int(ok.size)))
            self.live_ranks[j] += int(ok.size)
            if self.summary:
                self._spawn_all(ok, gi, jp, t)
                continue
            for g in ok:
                self._spawn(int(g), gi, jp, t)

    def _usable(self, gpus: np.ndarray) -> np.ndarray:
        s = self.twin.state
        nodes = self.twin.plan.layout.gpu_node[gpus]
        return s.node_up[nodes] & ~s.node_drained[nodes] & ~s.link_down[nodes] & ~s.lost[gpus] & (self.pid[gpus] == 0)

    def _spawn_all(self, ok: np.ndarray, gi: int, jp: JobPlan, t: float) -> None:
        """`_spawn` for every GPU of `ok` at once (sorted, so each node's pids count up as one by one)."""
        s, lay = self.twin.state, self.twin.plan.layout
        nodes = lay.gpu_node[ok]
        first = np.searchsorted(nodes, nodes)  # position of each node's first GPU in `ok`
        self.pid[ok] = self._next_pid[nodes] + (np.arange(ok.size) - first)
        np.add.at(self._next_pid, nodes, 1)
        self.group_of[ok] = gi
        s.work[ok] = Work.COMPUTE
        s.demand[Work.COMPUTE, ok] = jp.spec.compute_power
        s.demand[Work.SPIN, ok] = jp.spec.spin_power
        s.demand_version += 1
        s.memory_bytes[ok] = jp.spec.memory_per_gpu
        s.touch("memory_bytes")
        self.version += 1
        g = int(ok[0])
        self.twin.emit(t, self._host(g), "nccl", E.NCCL_INIT, Severity.INFO, pid=int(self.pid[g]),
                       tid=int(self.pid[g]) + 101, rank=int(np.searchsorted(jp.gpus, g)),
                       gpu=int(lay.gpu_local[g]), job=jp.spec.name, ranks=int(ok.size))

    def _spawn(self, g: int, gi: int, jp: JobPlan, t: float) -> None:
        s, node = self.twin.state, int(self.twin.plan.layout.gpu_node[g])
        self.version += 1
        self.pid[g] = self._next_pid[node]
        self._next_pid[node] += 1
        self.group_of[g] = gi
        s.work[g] = Work.COMPUTE
        s.demand[Work.COMPUTE, g] = jp.spec.compute_power
        s.demand[Work.SPIN, g] = jp.spec.spin_power
        s.demand_version += 1
        s.memory_bytes[g] = jp.spec.memory_per_gpu
        s.touch("memory_bytes")
        if self.twin.plan.layout.gpu_local[g] == 0:
            self.twin.emit(t, self._host(g), "nccl", E.NCCL_INIT, Severity.INFO, pid=int(self.pid[g]),
                           tid=int(self.pid[g]) + 101, rank=int(np.searchsorted(jp.gpus, g)), gpu=0,
                           job=jp.spec.name)

    def progress(self, j: int, t: float) -> float:
        """Steps completed by job j (summed over its communicators)."""
        rate = self.twin.plan.jobs[j].spec.steps_per_second
        return sum(g.progress + (rate * (t - g.since) if g.status == "running" else 0.0)
                   for g in self.groups if g.job == j)

    def _freeze(self, gr: Communicator, t: float) -> None:
        rate = self.twin.plan.jobs[gr.job].spec.steps_per_second
        if gr.status == "running":
            gr.progress += rate * (t - gr.since)
        gr.since = t

    # -- faults -----------------------------------------------------------------------------
    def stall_rank(self, g: int, t: float, op: str = "ALLREDUCE") -> bool:
        """Rank on GPU g stops progressing; its communicator deadlocks. False if no running rank there."""
        gi = int(self.group_of[g])
        if gi < 0 or self.groups[gi].status != "running":
            return False
        gr, jp = self.groups[gi], self.twin.plan.jobs[self.groups[gi].job]
        self._freeze(gr, t)
        gr.status, gr.stalled_gpu = "stalled", g
        self.version += 1
        self.twin.state.work[g] = Work.STALLED
        self.twin.truth(t, self._host(g), "collective_deadlock", gpu=int(self.twin.plan.layout.gpu_local[g]),
                        job=jp.spec.name, op=op, ranks=len(gr.gpus))
        self._last_ops(gr, jp, g, t, op)
        stage = jp.stage[np.searchsorted(jp.gpus, gr.gpus)]
        mine = jp.stage[np.searchsorted(jp.gpus, g)]
        hops = np.abs(stage - mine)
        for h in np.unique(hops):
            peers = gr.gpus[(hops == h) & (gr.gpus != g)]
            self.twin.at(t + max(float(h), 1.0) * jp.spec.stage_delay, self._spin, peers, gi)
        if jp.spec.nccl_timeout is not None:
            self.twin.at(t + jp.spec.nccl_timeout, self._watchdog, gi, op)
        return True

    def _last_ops(self, gr: Communicator, jp: Any, stalled: int, t: float, op: str) -> None:
        """Each rank's last NCCL enqueue trace (NCCL_DEBUG_SUBSYS=COLL): the peers entered op N, the stalled
        rank never did, so its last opCount is N-1; that difference is the evidence a log reader has."""
        n = int(gr.progress) + 1
        ranks = gr.gpus[self.pid[gr.gpus] != 0]
        if self.summary:  # the evidence a reader needs: the stalled rank's count and one peer's
            ranks = np.array([stalled, *ranks[ranks != stalled][:1]], dtype=ranks.dtype)
        for g in ranks:
            self.twin.emit(t, self._host(int(g)), "nccl", E.COLLECTIVE_STALL, Severity.INFO, pid=int(self.pid[g]),
                           tid=int(self.pid[g]) + 101, rank=int(np.searchsorted(jp.gpus, g)),
                           gpu=int(self.twin.plan.layout.gpu_local[g]), job=jp.spec.name, op=op,
                           seq=n - 1 if g == stalled else n, nranks=len(gr.gpus))

    def _spin(self, t: float, peers: np.ndarray, gi: int) -> None:
        s = self.twin.state
        live = peers[(self.group_of[peers] == gi) & (s.work[peers] == Work.COMPUTE)]
        s.work[live] = Work.SPIN

    def _watchdog(self, t: float, gi: int, op: str) -> None:
        gr = self.groups[gi]
        if gr.status != "stalled":
            return
        jp = self.twin.plan.jobs[gr.job]
        timeout_ms = int(jp.spec.nccl_timeout * 1000)
        peers = gr.gpus[(self.group_of[gr.gpus] == gi) & (gr.gpus != gr.stalled_gpu)]
        if self.summary and peers.size:
            g = int(peers[0])
            self.twin.emit(t, self._host(g), "torch", E.NCCL_WATCHDOG_TIMEOUT, Severity.ERROR,
                           rank=int(np.searchsorted(jp.gpus, g)), pid=int(self.pid[g]), op=op,
                           seq=int(gr.progress) + 1, timeout_ms=timeout_ms, ran_ms=timeout_ms + 12,
                           job=jp.spec.name, ranks=int(peers.size))
            self.exit_many(t, peers, "nccl watchdog timeout")
            return
        for g in peers:
            self.twin.emit(t, self._host(g), "torch", E.NCCL_WATCHDOG_TIMEOUT, Severity.ERROR,
                           rank=int(np.searchsorted(jp.gpus, g)), pid=int(self.pid[g]), op=op,
                           seq=int(gr.progress) + 1, timeout_ms=timeout_ms, ran_ms=timeout_ms + 12,
                           job=jp.spec.name)
            self.exit(int(g), t, "nccl watchdog timeout")

    # -- processes --------------------------------------------------------------------------
    def exit(self, g: int, t: float, why: str) -> None:
        """The process on GPU g is gone: memory freed, GPU idle, its communicator reacts."""
        self.version += 1
        gi = int(self.group_of[g])
        if self.pid[g] == 0:
            return
        s = self.twin.state
        job = self.twin.plan.jobs[self.groups[gi].job].spec.name if gi >= 0 else None
        self.twin.truth(t, self._host(g), "process_exit", pid=int(self.pid[g]),
                        gpu=int(self.twin.plan.layout.gpu_local[g]), job=job, why=why)
        self.pid[g], self.group_of[g], self.dstate[g], self.exit_at[g] = 0, -1, False, np.inf
        s.memory_bytes[g] = 0.0
        s.touch("memory_bytes")
        if s.work[g] != Work.OFF:
            s.work[g] = Work.IDLE
        if gi >= 0:
            self.groups[gi].alive -= 1
            self.live_ranks[self.groups[gi].job] -= 1
            self._after_exit(gi, t)

    def exit_many(self, t: float, gpus: np.ndarray, why: str) -> None:
        """`exit` for every GPU of `gpus` that still has a process, at once, logged as one event."""
        s = self.twin.state
        live = gpus[self.pid[gpus] != 0]
        self.version += 1
        if live.size == 0:
            return
        groups = self.group_of[live]
        first = int(live[0])
        job = self.twin.plan.jobs[self.groups[int(groups[0])].job].spec.name if groups[0] >= 0 else None
        self.twin.truth(t, self._host(first), "process_exit", pid=int(self.pid[first]),
                        gpu=int(self.twin.plan.layout.gpu_local[first]), job=job, why=why, ranks=int(live.size))
        self.pid[live], self.group_of[live], self.dstate[live], self.exit_at[live] = 0, -1, False, np.inf
        s.memory_bytes[live] = 0.0
        s.touch("memory_bytes")
        s.work[live] = np.where(s.work[live] == Work.OFF, Work.OFF, Work.IDLE)
        ids, counts = np.unique(groups[groups >= 0], return_counts=True)
        for gi, n in zip(ids.tolist(), counts.tolist(), strict=True):
            self.groups[gi].alive -= n
            self.live_ranks[self.groups[gi].job] -= n
            self._after_exit(gi, t)

    def _after_exit(self, gi: int, t: float) -> None:
        gr = self.groups[gi]
        if gr.status == "running":
            alive = gr.gpus[self.group_of[gr.gpus] == gi]
            self._freeze(gr, t)
            gr.status = "failed"
            if self.summary:
                self.twin.at(t + 2.0, self.exit_many, alive, "peer exited")
            else:
                for g in alive:
                    self.twin.at(t + 2.0, lambda tt, g=int(g): self.exit(g, tt, "peer exited"))
        if gr.alive == 0 and gr.status not in ("ended", "failed"):
            gr.status = "failed"  # a stalled communicator whose last rank died
        if gr.alive == 0:
            self._maybe_job_end(gr.job, t)
        else:
            self.twin.rank_lost(gr.job, t)

    def _maybe_job_end(self, j: int, t: float) -> None:
        """The job ends when its last rank has exited (a count kept as ranks start and exit: a job restarted
        hundreds of times has as many communicators, and looking through all of them at every exit grew as the
        square of the restarts)."""
        self.version += 1
        if self.job_status[j] == "running" and self.live_ranks[j] == 0:
            state = "cancelled" if j in self.cancelled else "failed"
            self.job_status[j] = state
            jp = self.twin.plan.jobs[j]
            self.twin.emit(t, self._host(jp.gpus[0]), "slurm", E.JOB_END, Severity.INFO, job=jp.spec.name,
                           job_id=jp.spec.id, state=state.upper())
            self.twin.job_ended(j, t)

    def signal(self, g: int, sig: str, t: float) -> str:
        """Deliver SIGTERM/SIGKILL to the process on GPU g; returns what happened."""
        if self.pid[g] == 0:
            return "no such process"
        if self.group_of[g] >= 0:
            self.signalled[self.groups[int(self.group_of[g])].job] = t
        if self.dstate[g]:
            return "unkillable: process is in D state (uninterruptible sleep)"
        if sig == "SIGKILL":
            self.exit(g, t, "SIGKILL")
            return "killed"
        grace = self.twin.plan.jobs[self.groups[int(self.group_of[g])].job].spec.term_grace
        if np.isinf(self.exit_at[g]):
            self.exit_at[g] = t + grace
            pid = int(self.pid[g])
            self.twin.at(t + grace, lambda tt, g=g, pid=pid: self._term(g, pid, tt))
        return "terminating"

    def _term(self, g: int, pid: int, t: float) -> None:
        if self.pid[g] == pid and not self.dstate[g]:
            self.exit(g, t, "SIGTERM")

    def _host(self, g: int) -> str:
        lay = self.twin.plan.layout
        return lay.node_names[int(lay.gpu_node[g])]
