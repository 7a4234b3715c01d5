"""The agent's sampling loop: Backend -> Frame -> history, policy engine -> Decisions -> action runner.

One code path for a real node and the twin: the loop takes a Backend, a Clock, where host signals
and job attribution come from, and an action runner; it never blocks on an action (the runner is
asynchronous on a real node) and never dies from one bad reading or rule (reported, then skipped).
Sampling is on a fixed-rate schedule with drift correction: a slow tick shortens the next sleep.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from coldaisle.actions.interface import Decision
from coldaisle.policy.context import FaultCounts, Jobs, Nodes
from coldaisle.policy.engine import Engine
from coldaisle.policy.loader import LoadedPolicy
from coldaisle.policy.step import PolicyStep
from coldaisle.telemetry.backend import Backend
from coldaisle.telemetry.clock import Clock
from coldaisle.telemetry.frame import Frame

log = logging.getLogger("coldaisle.agent")


class NodeSource(Protocol):
    """Host signals per node, and which node each device is on."""

    def nodes(self, frame: Frame) -> Nodes:
        """Nodes for this Frame."""
        ...


class JobSource(Protocol):
    """Which job each device and process belongs to, and per-job values (progress age)."""

    def jobs(self, frame: Frame) -> Jobs:
        """Jobs for this Frame."""
        ...


class Runner(Protocol):
    """Where Decisions go (coldaisle.actions.runner.ActionRunner)."""

    def submit(self, decision: Decision) -> None:
        """Carry out (or queue) a Decision; never raises."""
        ...


class LocalNode:
    """A single real node: every device is on it; host signals from a probe (or none)."""

    def __init__(self, name: str, probe: Callable[[], dict[str, float]] | None = None,
                 history: FaultCounts | None = None) -> None:
        self.name, self.probe, self.history = name, probe, history

    def nodes(self, frame: Frame) -> Nodes:
        """This host, with whatever its probe reports, and its fault history."""
        values = {k: np.array([v]) for k, v in (self.probe() if self.probe else {}).items()}
        return Nodes([self.name], np.zeros(len(frame), np.intp), values, self.history)


class NoJobs:
    """No job attribution (every device and process unattributed)."""

    def jobs(self, frame: Frame) -> Jobs:
        """Nothing is attributed."""
        return Jobs()


@dataclass
class TickStats:
    """What the last tick cost and found, for /metrics and /healthz."""

    samples: int = 0
    last_wall: float = float("nan")
    last_duration_s: float = float("nan")
    decisions: int = 0
    errors: int = 0


class Agent:
    """Samples a Backend on a fixed interval and enforces a policy through a runner."""

    def __init__(self, backend: Backend, policy: LoadedPolicy, runner: Runner, clock: Clock, *,
                 interval_s: float = 1.0, nodes: NodeSource, jobs: JobSource | None = None,
                 keep_frames: int = 120, on_tick: Callable[[Frame, Nodes, Jobs, list[Decision]], None] | None = None,
                 note: Callable[[str], None] | None = None) -> None:
        self.backend, self.runner, self.clock = backend, runner, clock
        self.interval_s = interval_s
        self.node_source, self.job_source = nodes, jobs or NoJobs()
        self.note = note or (lambda msg: log.warning("%s", msg))
        self.step = self._step(policy)
        self.frames: deque[Frame] = deque(maxlen=keep_frames)
        self.on_tick = on_tick
        self.stats = TickStats()
        self.lock = threading.Lock()  # the engine is shared with `agent reset` on the HTTP thread
        self.between_ticks: Callable[[], None] | None = None  # e.g. a SIGHUP policy reload, off the tick path

    def _step(self, policy: LoadedPolicy) -> PolicyStep:
        return PolicyStep(policy, devices=len(self.backend.devices()), interval_s=self.interval_s,
                          wall=self.clock.time, note=self.note)

    @property
    def policy(self) -> LoadedPolicy:
        """The policy being enforced."""
        return self.step.policy

    @property
    def engine(self) -> Engine:
        """The rules' state (pending, firing, cooldowns), for views and `agent reset`; hold `lock` to change it."""
        return self.step.engine

    def reload(self, policy: LoadedPolicy) -> None:
        """Swap in a new, already validated policy (rule state starts afresh; caps in force stay until cleared)."""
        with self.lock:
            self.step = self._step(policy)

    def tick(self) -> list[Decision]:
        """One sample, one evaluation; Decisions are submitted to the runner and returned."""
        t0 = self.clock.monotonic()
        frame = self.backend.sample()
        nodes, jobs = self.node_source.nodes(frame), self.job_source.jobs(frame)
        self.frames.append(frame)
        with self.lock:
            decisions = self.step(frame, nodes, jobs)
        for d in decisions:
            self.runner.submit(d)
        self.stats.samples += 1
        self.stats.decisions += len(decisions)
        self.stats.last_wall = frame.wall_time
        self.stats.last_duration_s = self.clock.monotonic() - t0
        if self.on_tick:
            self.on_tick(frame, nodes, jobs, decisions)
        return decisions

    def inject_xid(self, device: int, xid: int) -> None:
        """An Xid learned elsewhere (the kernel log) for device `device`; seen by the next tick."""
        with self.lock:
            self.step.xids.note(device, xid, self.clock.monotonic())

    def run(self, *, stop: threading.Event | None = None, until: float | None = None) -> None:
        """Tick every `interval_s` until `stop` is set or the clock's monotonic time reaches `until`."""
        next_at = self.clock.monotonic()
        while not (stop and stop.is_set()) and (until is None or self.clock.monotonic() < until - 1e-9):
            try:
                self.tick()
            except Exception as exc:  # one bad reading never kills the daemon
                self.stats.errors += 1
                self.note(f"tick failed: {type(exc).__name__}: {exc}")
            if self.between_ticks is not None:
                self.between_ticks()
            next_at += self.interval_s
            delay = next_at - self.clock.monotonic()
            if delay < 0:  # fell behind: skip missed slots rather than bursting
                next_at = self.clock.monotonic()
                delay = 0.0
            if until is not None:
                delay = min(delay, max(until - self.clock.monotonic(), 0.0))
            if delay > 0:
                self.clock.wait(delay, stop)
