"""The failure-mix kind's training run: checkpoints, interruptions, restarts from the last checkpoint.

The job checkpoints every `checkpoint_every` while it makes progress. When its last rank is gone (a crash is
torn down in seconds; a hang only when a watchdog or a policy stops it), the run waits `restart` (requeue,
reload, NCCL init), swaps a spare in for every node it cannot use (down, a GPU lost or needing a reset, its
link down, or drained), which takes `swap`, and starts again from the last checkpoint. What each interruption
cost is booked by sim.ettr.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from coldaisle.sim.ettr import Interruption, Ledger, ledger
from coldaisle.sim.failmix import FailurePlan
from coldaisle.sim.resolve import TimedFault
from coldaisle.sim.state import Work

if TYPE_CHECKING:
    from coldaisle.sim.twin import Twin

TEARDOWN_S = 5.0  # from a rank's exit to the launcher killing the ranks still left

#: faults that leave their node unusable until it is swapped (the rest strike the job, not the hardware)
HARDWARE = frozenset({"gpu_lost", "xid", "link_down", "node_down", "thermal_interface", "pcie_jitter",
                      "fan_failure", "kv_growth"})


class Campaign:
    """Watches the failure mix's job on a twin: books interruptions, restarts it, swaps spares in."""

    def __init__(self, twin: Twin, plan: FailurePlan) -> None:
        self.twin, self.plan, self.spec, self.j = twin, plan, plan.spec, plan.job
        jp = twin.plan.jobs[plan.job]
        self.nodes = np.unique(twin.plan.layout.gpu_node[jp.gpus])
        self.first_start = self.run_start = jp.start_s
        self.first_group = 0  # the job's first communicator of the current run
        self.interruptions: list[Interruption] = []
        self.faulty: dict[int, str] = {}  # node -> the category of a fault not yet repaired (a spare swaps it)
        self._hits: list[tuple[float, str, str]] = []  # faults that struck the running job: (time, cause, node)
        self._job_nodes = set(self.nodes.tolist())
        self._teardown_at_run = False  # a teardown is scheduled for the current run
        self.swaps = 0

    # -- what happens ------------------------------------------------------------------------
    def note_fault(self, tf: TimedFault, t: float) -> None:
        """A fault was applied: remember broken hardware, and a fault that struck the running job."""
        kind, cause = tf.fault.fault, tf.cause or tf.fault.fault
        span = range(tf.node, tf.node + int(getattr(tf.fault, "span", 1))) if tf.node >= 0 else range(0)
        if kind in HARDWARE:
            for n in span:
                self.faulty.setdefault(n, cause)
        hit = [n for n in span if n in self._job_nodes]
        if hit and self.twin.workload.job_status[self.j] == "running":
            self._hits.append((t, cause, self.twin.plan.layout.node_names[hit[0]]))

    def rank_lost(self, t: float) -> None:
        """A rank exited: the launcher (torchrun, srun) kills what is left of a failed run a moment later."""
        if not self._teardown_at_run:
            self._teardown_at_run = True
            self.twin.at(t + TEARDOWN_S, self._teardown)

    def _teardown(self, t: float) -> None:
        wl = self.twin.workload
        gpus = self.twin.plan.jobs[self.j].gpus
        left = gpus[(wl.pid[gpus] != 0) & ~wl.dstate[gpus]]
        if left.size:
            wl.exit_many(t, left, "killed by the launcher")

    def job_ended(self, t: float) -> None:
        """The job's last rank is gone: book the interruption and schedule the restart."""
        wl = self.twin.workload
        if wl.job_status[self.j] != "failed":
            return  # cancelled by a person: the run is over
        mine = [g for g in wl.groups[self.first_group:] if g.job == self.j]
        stop = min((g.since for g in mine), default=t)
        every = self.spec.checkpoint_every
        ckpt = self.run_start + math.floor(max(stop - self.run_start, 0.0) / every + 1e-9) * every
        cause, node = self._cause(stop)
        self.interruptions.append(Interruption(cause, node, self.run_start, stop, t, min(ckpt, stop)))
        self._hits.clear()
        self.twin.at(t + self.spec.restart, self._restart)

    def _cause(self, stop: float) -> tuple[str, str]:
        """The first fault that struck this run, else the agent if it signalled the job, else unknown."""
        if self._hits:
            _, cause, node = self._hits[0]
            return cause, node
        signalled = self.twin.workload.signalled.get(self.j, -math.inf)
        return ("policy", "") if signalled >= self.run_start else ("unknown", "")

    def _restart(self, t: float) -> None:
        """Swap spares in for unusable nodes (taking `swap`), then start the job again."""
        bad = self.unusable()
        last = self.interruptions[-1]
        if bad.size == 0 or self.spec.swap <= 0:
            self._start(t, bad)
            return
        last.swap_s = self.spec.swap
        last.false_swap = not any(int(n) in self.faulty for n in bad)
        self.twin.at(t + self.spec.swap, self._start, bad)

    def unusable(self) -> np.ndarray:
        """The job's nodes it cannot start on: down, link down, drained, a GPU lost or needing a reset, faulty."""
        s, lay = self.twin.state, self.twin.plan.layout
        bad = ~s.node_up | s.link_down | s.node_drained
        per_gpu = s.lost | (s.remap_pending > 0) | (s.heat_path < 1.0)
        bad |= np.bincount(lay.gpu_node, weights=per_gpu, minlength=lay.n_nodes) > 0
        bad[list(self.faulty)] = True
        return self.nodes[bad[self.nodes]]

    def _start(self, t: float, swap: np.ndarray) -> None:
        for n in swap.tolist():
            self.replace_node(int(n), t)
        self.interruptions[-1].swapped = tuple(self.twin.plan.layout.node_names[int(n)] for n in swap)
        self.interruptions[-1].restart_s = t
        self.first_group = len(self.twin.workload.groups)
        self._teardown_at_run = False
        self.run_start = t
        self.twin.workload.start_job(self.j, t)

    def ledger(self, now: float) -> Ledger:
        """ETTR and time lost by cause, from the first start to `now`."""
        wl = self.twin.workload
        running = wl.job_status[self.j] == "running"
        stalled = [g.since for g in wl.groups[self.first_group:] if g.job == self.j and g.status != "running"]
        return ledger(self.interruptions, self.first_start, now, current_start=self.run_start if running else None,
                      stalled_since=min(stalled) if running and stalled else None)

    # -- the spare ---------------------------------------------------------------------------
    def replace_node(self, node: int, t: float) -> None:
        """A spare takes the node's place: up, linked, undrained, its GPUs healthy, idle and at default limits."""
        tw, s = self.twin, self.twin.state
        gpus = tw.plan.layout.gpus_of_node(node)
        free = gpus[tw.workload.pid[gpus] == 0]
        s.node_up[node], s.node_drained[node], s.link_down[node] = True, False, False
        s.lost[gpus] = False
        s.work[free] = Work.IDLE
        s.memory_bytes[free] = 0.0
        s.remap_pending[gpus] = s.remap_failed[gpus] = s.pcie_replay[gpus] = 0.0
        s.limit_w[gpus] = tw.plan.card.tdp_w
        s.heat_path[gpus], s.fan_failed[gpus] = 1.0, False
        s.any_degraded, s.any_fan_failed = bool((s.heat_path < 1.0).any()), bool(s.fan_failed.any())
        s.nodes_version += 1
        s.touch("lost", "memory_bytes", "remap_pending", "remap_failed", "pcie_replay", "limit_w")
        tw.workload.version += 1
        self.faulty.pop(node, None)
        self.swaps += 1
        tw.truth(t, tw.plan.layout.node_names[node], "node_replaced", by="spare")
