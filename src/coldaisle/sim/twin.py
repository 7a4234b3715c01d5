"""The twin: a simulated GPU cluster stepped on a simulated clock, with faults, jobs and actuators.

`Twin.clock` is a SimClock: whoever sleeps on it (a replay loop, the agent) moves the whole
cluster forward, so production code runs on simulated time. A sleep of one `step` is one step; a longer
one is crossed in steps the stepper (sim.stepper) lengthens while nothing changes.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from coldaisle.sim import faults
from coldaisle.sim.campaign import Campaign
from coldaisle.sim.events import EventClass as E
from coldaisle.sim.logs import pci_bus_id
from coldaisle.sim.memory import KvRunaways
from coldaisle.sim.physics import Physics
from coldaisle.sim.recorder import Recorder
from coldaisle.sim.resolve import Plan
from coldaisle.sim.state import State, Work
from coldaisle.sim.stepper import Stepper
from coldaisle.sim.workload import Workload
from coldaisle.telemetry.clock import SimClock
from coldaisle.telemetry.events import Event, Severity


class Twin:
    """A whole cluster: state, physics, workload, timeline, history and the actuators actions use."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.dt = plan.scenario.step
        self.state = State.initial(plan)
        self.physics = Physics(plan)
        self.workload = Workload(self)
        self.kv = KvRunaways(self)
        self.campaign = Campaign(self, plan.failures) if plan.failures is not None else None
        self.recorder = Recorder(plan)
        self.events: list[Event] = []
        self.t = 0.0
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._fault_i = 0
        self._latched_any = False
        for j, jp in enumerate(plan.jobs):
            self.at(jp.start_s, lambda t, j=j: self.workload.start_job(j, t))
        self._settle()
        self.stepper = Stepper(self)
        self.clock = SimClock(plan.start_epoch)
        self.clock.on_advance(self._advance_to)
        self.recorder.maybe_record(0.0, self.state, self._it_w(), self.physics.pue)

    # -- time ---------------------------------------------------------------------------------
    def _settle(self) -> None:
        """Start every GPU at its idle steady state so a run does not begin with a transient."""
        p = self.plan.card.physics
        r = 1.0 / (1.0 / p.resistance_still_air
                   + (1.0 / p.resistance_full_fan - 1.0 / p.resistance_still_air) * p.fan_min_pct / 100)
        self.physics.step(self.state, 1e-9)
        self.state.temp_c[:] = self.plan.scenario.facility.setpoint + self.state.power_w * r
        self.state.energy_j[:] = 0.0
        self.physics.it_j = self.physics.facility_j = self.physics.cooling_j = self.physics.spin_j = 0.0
        self.state.peak_c[:] = self.state.temp_c

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        """Run fn(t, *args) when the twin reaches time t (seconds since start)."""
        heapq.heappush(self._queue, (t, next(self._seq), fn, args))

    def _advance_to(self, monotonic: float) -> None:
        while self.t + self.dt <= monotonic + 1e-9:
            self.step(self.stepper.length(self.t, monotonic))

    def run_until(self, seconds: float | None = None, progress: Callable[[float], None] | None = None) -> None:
        """Advance to `seconds` after start (default: the scenario's end), reporting progress every minute or
        every longest step."""
        end = self.plan.duration_s if seconds is None else min(seconds, self.plan.duration_s)
        chunk_s = max(60.0, self.stepper.max_step)
        while self.t + self.dt <= end + 1e-9:
            chunk = min(end, self.t + chunk_s)
            self.clock.advance_to(max(chunk, self.clock.monotonic()))
            if progress:
                progress(self.t)

    def next_event_s(self) -> float:
        """When the next timeline fault or timer is due (inf: none)."""
        faults_, i = self.plan.faults, self._fault_i
        nxt = faults_[i].at_s if i < len(faults_) else float("inf")
        return min(nxt, self._queue[0][0]) if self._queue else nxt

    def signature(self) -> tuple[float, ...]:
        """Counters that move whenever something outside physics changes the twin (the stepper watches them)."""
        s = self.state
        return (s.demand_version, s.nodes_version, self.workload.version, sum(s.versions.values()),
                s.any_fan_failed, s.any_degraded)

    def step(self, dt: float | None = None) -> None:
        """One step of `dt` (default: the scenario's step): due faults and timers, workload, physics, limits,
        recording. Only a fine step may contain a fault or timer (the stepper sees to it)."""
        h = self.dt if dt is None else dt
        t = self.t + h
        faults_ = self.plan.faults
        events = 0
        while self._fault_i < len(faults_) and faults_[self._fault_i].at_s <= t + 1e-9:
            faults.apply(self, faults_[self._fault_i], faults_[self._fault_i].at_s)
            self._fault_i += 1
            events += 1
        applied = events
        while self._queue and self._queue[0][0] <= t + 1e-9:
            when, _, fn, args = heapq.heappop(self._queue)
            fn(when, *args)
            events += 1
        if events:
            self.stepper.changed(t, fault=applied > 0)
        if self.kv.active:
            self.kv.tick(t, h)
        # a long step (no fault or timer in it) is taken shorter where its error estimate asks (sim.physics)
        h = self.physics.step(self.state, h, None if events or self.kv.active else self.stepper.tolerance)
        t = self.t + h
        self._limits(t, h)
        self.t = t
        self.recorder.maybe_record(t, self.state, self._it_w(), self.physics.pue)
        self.stepper.observed(h)

    def _it_w(self) -> float:
        return self.physics.it_w  # as the last physics step summed it

    def _limits(self, t: float, dt: float) -> None:
        s, card = self.state, self.plan.card
        if self.physics.t_max < card.slowdown_c - 5.0:  # the hottest GPU, as the physics step left it
            if self._latched_any:
                s.slowdown_latched[:] = False
                self._latched_any = False
            return
        self._latched_any = True
        hot = s.temp_c >= card.slowdown_c
        s.above_slowdown_s[s.temp_c > card.slowdown_c] += dt
        rising = hot & ~s.slowdown_latched
        if rising.any():
            for g in np.flatnonzero(rising):
                self.emit(t, self.host_of(int(g)), "nvml", E.THERMAL_SLOWDOWN, Severity.WARNING,
                          gpu=int(self.plan.layout.gpu_local[g]), temperature_c=round(float(s.temp_c[g]), 1),
                          slowdown_c=card.slowdown_c)
        s.slowdown_latched |= hot
        s.slowdown_latched &= s.temp_c > card.slowdown_c - 5.0
        for g in np.flatnonzero((s.temp_c >= card.shutdown_c) & (s.work != Work.OFF)):
            self.emit(t, self.host_of(int(g)), "nvml", E.THERMAL_SHUTDOWN, Severity.CRITICAL,
                      gpu=int(self.plan.layout.gpu_local[g]), temperature_c=round(float(s.temp_c[g]), 1),
                      shutdown_c=card.shutdown_c)
            self.lose_gpu(int(g), t, xid=None)

    def rank_lost(self, j: int, t: float) -> None:
        """A rank of job j exited while others live on (the campaign's launcher tears the rest down)."""
        if self.campaign is not None and j == self.campaign.j:
            self.campaign.rank_lost(t)

    def job_ended(self, j: int, t: float) -> None:
        """Job j's last rank is gone (the failure mix's campaign restarts its job)."""
        if self.campaign is not None and j == self.campaign.j:
            self.campaign.job_ended(t)

    # -- what happened ------------------------------------------------------------------------
    def emit(self, t: float, host: str, source: str, cls: str, severity: Severity, **fields: Any) -> None:
        """Record an event real software would log (rendered to real formats by sim.logs)."""
        self.events.append(Event(self.plan.start_epoch + t, host, source, str(cls), severity, fields))

    def truth(self, t: float, host: str, what: str, **fields: Any) -> None:
        """Record ground truth no log shows (the deadlock itself, a process entering D state)."""
        self.events.append(Event(self.plan.start_epoch + t, host, "twin", what, Severity.INFO, fields))

    def pci(self, local: int) -> str:
        """PCI bus id of local GPU index `local` on every node of this cluster."""
        return pci_bus_id(local, self.plan.scenario.topology.gpus_per_node)

    def host_of(self, g: int) -> str:
        """Host name of global GPU g."""
        return self.plan.layout.node_names[int(self.plan.layout.gpu_node[g])]

    # -- hardware state changes ---------------------------------------------------------------
    def lose_gpu(self, g: int, t: float, xid: int | None) -> None:
        """GPU g falls off the bus (xid given) or shuts down; its process dies with it."""
        s, local = self.state, int(self.plan.layout.gpu_local[g])
        if xid is not None and not s.lost[g]:
            pid = int(self.workload.pid[g])
            self.emit(t, self.host_of(g), "kernel", E.XID, Severity.CRITICAL, xid=xid, pci=self.pci(local),
                      gpu=local, pid=pid or None, process="python3" if pid else None,
                      text="GPU has fallen off the bus." if xid == 79 else "")
            if xid == 79:
                self.emit(t, self.host_of(g), "kernel", E.GPU_FELL_OFF_BUS, Severity.CRITICAL,
                          pci=self.pci(local), gpu=local)
        s.lost[g] = True
        s.touch("lost")
        s.work[g] = Work.OFF
        self.workload.dstate[g] = False
        self.workload.exit(g, t, "GPU lost")

    def panic_node(self, node: int, t: float, reason: str) -> None:
        """Kernel panic: the node stops, its GPUs are gone."""
        self.emit(t, self.plan.layout.node_names[node], "kernel", E.KERNEL_PANIC, Severity.CRITICAL,
                  reason=reason)
        self.power_off_node(node, t)

    def power_off_node(self, node: int, t: float) -> None:
        """The node loses power: host and GPUs off, processes gone."""
        self.state.node_up[node] = False
        self.state.nodes_version += 1
        self.state.touch("lost")
        for g in self.plan.layout.gpus_of_node(node):
            self.state.lost[g] = True
            self.state.work[g] = Work.OFF
            self.workload.dstate[g] = False
            self.workload.exit(int(g), t, "node powered off")

    def power_on_node(self, node: int, t: float) -> None:
        """Power comes back: the host boots and its GPUs answer again, idle and empty (a lost GPU is found anew)."""
        if self.state.node_up[node]:
            return
        self.state.node_up[node] = True
        self.state.nodes_version += 1
        self.state.touch("lost", "memory_bytes")
        gpus = self.plan.layout.gpus_of_node(node)
        self.state.lost[gpus] = False
        self.state.work[gpus] = Work.IDLE
        self.state.memory_bytes[gpus] = 0.0
        self.workload.version += 1
        self.emit(t, self.plan.layout.node_names[node], "bmc", E.POWER_CYCLE, Severity.INFO, state="on")

    # -- actuators (what actions do to the twin) ----------------------------------------------
    def power_cycle(self, node: int, off_s: float = 120.0) -> str:
        """The node's BMC cuts the power and restores it `off_s` later (the host's boot included)."""
        name = self.plan.layout.node_names[node]
        self.emit(self.t, name, "bmc", E.POWER_CYCLE, Severity.WARNING, state="cycle")
        self.power_off_node(node, self.t)
        self.at(self.t + off_s, lambda t: self.power_on_node(node, t))
        return f"power off, back on in {off_s:g} s"

    def set_power_limit(self, g: int, watts: float) -> float:
        """Set GPU g's enforced power limit, clamped to the card's range; returns the limit applied."""
        card = self.plan.card
        if not card.min_limit_w <= watts <= card.tdp_w:
            raise ValueError(f"{watts:g} W is outside {card.min_limit_w:g}..{card.tdp_w:g} W")
        self.state.limit_w[g] = watts
        self.state.touch("limit_w")
        return watts

    def signal(self, node: int, pid: int, sig: str) -> str:
        """Send SIGTERM or SIGKILL to process `pid` on `node`; returns what happened."""
        gpus = self.plan.layout.gpus_of_node(node)
        hit = gpus[self.workload.pid[gpus] == pid]
        if hit.size == 0:
            return "no such process"
        return self.workload.signal(int(hit[0]), sig, self.t)

    def drain(self, node: int, reason: str, by: str = "coldaisle") -> bool:
        """Drain a node: no new job lands on it. False if it was already drained."""
        if self.state.node_drained[node]:
            return False
        self.state.node_drained[node] = True
        self.emit(self.t, self.plan.layout.node_names[node], "slurm", E.NODE_DRAIN, Severity.WARNING,
                  reason=reason, by=by)
        return True
