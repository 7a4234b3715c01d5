"""`coldaisle agent`: the node runtime (`assemble`) run as a daemon, with its server, state file and watchdog.

Scheduling priority: the agent must keep reporting on a saturated host (the report's exporters starved).
At start it asks for SCHED_RR priority 10 (`--priority realtime`, needs root or CAP_SYS_NICE), which
every thread created afterwards inherits (sampling, HTTP, actions); failing that nice -10, failing that
it says so and runs as it is. It sleeps almost all the time, so a real-time policy costs the host
nothing, yet wakes on time when every core is busy. The garbage collector's startup objects are frozen
and the HTTP server answers from a snapshot swapped in by the loop, so a scrape never waits for a sample.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldaisle.actions.audit import AuditLog
from coldaisle.actions.interface import Decision
from coldaisle.actions.runner import ActionRunner
from coldaisle.agent.assemble import NodeRuntime, RuntimeOptions, assemble
from coldaisle.agent.exporter import AgentStats, FrameCollector
from coldaisle.agent.loop import Agent
from coldaisle.agent.sdnotify import SdNotify
from coldaisle.agent.server import AgentServer
from coldaisle.agent.state import StateWriter
from coldaisle.errors import ColdaisleError
from coldaisle.policy.loader import load_policy
from coldaisle.sim.open import BackendChoice
from coldaisle.telemetry.backend import BackendKind

log = logging.getLogger("coldaisle.agent")
NO_GPU_HINT = ("install the NVIDIA driver and `pip install coldaisle[nvml]`, or run on the simulator with "
               "`coldaisle agent --backend sim --scenario prometheus-unbound`")


@dataclass
class AgentOptions:
    """Everything `coldaisle agent` takes on its command line."""

    backend: str = "auto"  # auto | nvml | sim
    scenario: str = "healthy-training"
    node: str | None = None
    speed: float = 1.0
    policy: str = "default"
    enforce: bool | None = None  # None: the policy's mode (dry-run unless it says enforce); sim: enforce
    listen: str = "127.0.0.1:9410"
    interval_s: float = 1.0
    audit: Path = Path("/var/lib/coldaisle/audit.jsonl")
    dcgm_names: bool = False
    webhook: str | None = None
    priority: str = "realtime"
    duration_s: float | None = None
    signatures: list[Path] = field(default_factory=list)  # site signature files for the kernel log (triage format)
    state: Path | None = None  # `coldaisle health` reads it (default: beside the audit log)
    bmc: Path | None = None  # the BMC file for `power_cycle` (actions/bmc.py); none: power cycles are refused
    drain: str = "auto"  # slurm | kubernetes | twin (auto: the twin on the simulator, else the node's scheduler)
    kmsg: str | None = "auto"  # the kernel log to follow (auto: /dev/kmsg on a real node; `off`: none)
    history: Path | None = None  # the node's fault history file (default: beside the audit log)

    def runtime(self) -> RuntimeOptions:
        """The node runtime these flags describe."""
        kind = BackendKind.parse(self.backend, (BackendKind.AUTO, BackendKind.NVML, BackendKind.SIM))
        return RuntimeOptions(BackendChoice(kind, self.scenario, self.node, speed=self.speed), self.policy,
                              self.enforce, self.interval_s, self.audit, webhook=self.webhook, bmc=self.bmc,
                              signatures=list(self.signatures), hint=NO_GPU_HINT, drain=self.drain,
                              kernel_log=None if self.kmsg == "off" else self.kmsg, history=self.history)


def apply_priority(mode: str) -> str:
    """Raise this process's scheduling priority before any thread starts; returns what was applied."""
    if mode == "realtime":
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
            return "SCHED_RR priority 10"
        except (PermissionError, OSError, AttributeError):
            mode = "high"
    if mode == "high":
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -10)
            return "nice -10"
        except (PermissionError, OSError):
            return "normal (raising priority needs root or CAP_SYS_NICE; the agent may starve on a busy host)"
    return "normal"


def run(o: AgentOptions, say: Callable[[str], None]) -> int:
    """Run the agent until SIGTERM/SIGINT (or `duration_s`); returns the exit code."""
    applied = apply_priority(o.priority)
    rt = assemble(o.runtime())
    try:
        return _serve(o, rt, applied, say)
    finally:
        rt.close()


def _serve(o: AgentOptions, rt: NodeRuntime, applied: str, say: Callable[[str], None]) -> int:
    agent, audit, gpus = rt.agent, rt.audit, len(rt.agent.backend.devices())
    collector = FrameCollector(rt.node, dcgm_names=o.dcgm_names)
    rt.on_tick(_export(rt, collector))
    if rt.kernel is not None:  # the kernel log's Xids reach /metrics too (a GPU off the bus is seen only there)
        rt.kernel.on_xid = _both(rt.kernel.on_xid,
                                 lambda device, xid: collector.note_xid(device, xid, agent.clock.monotonic()))
    server = _server(o, collector, agent, rt.runner, audit)
    mode = "enforce" if rt.enforce else "dry-run"
    audit.note("agent started", mode=mode, policy=rt.policy.source, priority=applied)
    say(f"coldaisle agent on {rt.node}: {gpus} GPUs, policy {rt.policy.source}, "
        f"{'ENFORCING' if rt.enforce else 'dry-run (decides and audits, acts on nothing; --enforce to act)'}, "
        f"priority {applied}, metrics on {server.url}/metrics, audit log {o.audit}")
    sd = SdNotify.from_env()
    rt.on_tick(_state_file(rt, o.state or o.audit.with_name("state.json"), rt.node))
    rt.on_tick(lambda *_: sd.tick())
    sd.ready(f"{rt.node}: {gpus} GPUs, {'enforcing' if rt.enforce else 'dry-run'}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    reload_wanted = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: reload_wanted.set())
    agent.between_ticks = lambda: _maybe_reload(reload_wanted, o.policy, agent, audit, say)
    rt.start()
    gc.collect()
    gc.freeze()
    try:
        agent.run(stop=stop, until=None if o.duration_s is None else agent.clock.monotonic() + o.duration_s)
    finally:
        sd.stopping()
        server.stop()
        audit.note("agent stopped")
    return 0


def _both(first: Callable[[int, int], None], then: Callable[[int, int], None]) -> Callable[[int, int], None]:
    def call(device: int, xid: int) -> None:
        first(device, xid)
        then(device, xid)
    return call


def _export(rt: NodeRuntime, collector: FrameCollector) -> Callable[..., None]:
    """After every tick: the latest Frame, host sample, agent stats and job values for /metrics."""
    agent, runner = rt.agent, rt.runner
    jobs_source = agent.job_source

    def export(frame: Any, _nodes: Any, jobs: Any, _decisions: list[Decision]) -> None:
        with agent.lock:
            views = agent.engine.views(agent.clock.monotonic())
        stats = AgentStats(agent.stats.samples, agent.stats.last_duration_s, agent.stats.last_wall,
                           sum(v.pending for v in views), sum(v.firing for v in views),
                           {(str(a), str(s)): n for (a, s), n in runner.counts.items()},
                           float(runner.breaker is not None and runner.breaker.open))
        collector.update(frame, host=rt.host.last if rt.host else None, agent_state=stats,
                         jobs=getattr(jobs_source, "last_refs", None), job_values=_job_values(jobs),
                         job_ranks=getattr(jobs_source, "last_ranks", None),
                         history=rt.history_stats(frame.wall_time))

    return export


def _state_file(rt: NodeRuntime, state_path: Path, node: str) -> Callable[..., None]:
    """After every tick: the state snapshot `coldaisle health` reads."""
    agent = rt.agent
    writer = StateWriter(state_path, node, interval_s=agent.interval_s,
                         severities=lambda: {cr.rule.name: cr.rule.severity for cr in agent.engine.rules})

    def snapshot(frame: Any, nodes: Any, _jobs: Any, _decisions: list[Decision]) -> None:
        with agent.lock:
            views = agent.engine.views(agent.clock.monotonic())
        writer.write(frame, nodes.values, views, samples=agent.stats.samples, errors=agent.stats.errors,
                     history=rt.history_stats(frame.wall_time), breaker=rt.runner.breaker)

    return snapshot


def _maybe_reload(wanted: threading.Event, source: str, agent: Agent, audit: AuditLog,
                  say: Callable[[str], None]) -> None:
    """On SIGHUP: load the policy again; a broken file is reported and the running policy kept."""
    if not wanted.is_set():
        return
    wanted.clear()
    try:
        lp = load_policy(source)
    except ColdaisleError as exc:
        audit.note("policy reload failed; keeping the running policy", error=exc.message)
        say(f"policy reload failed, keeping the running policy: {exc.message}")
        return
    agent.reload(lp)
    audit.note("policy reloaded", policy=lp.source, rules=len(lp.rules))
    say(f"policy reloaded: {len(lp.rules)} rules from {lp.source}")


def _job_values(jobs: Any) -> dict[str, dict[str, float]]:
    """Per job label, the heartbeat values the job view read (only jobs with at least one)."""
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(jobs.names):
        row = {k: float(v[i]) for k, v in jobs.values.items() if k.startswith("job_") and i < len(v)}
        if any(not math.isnan(v) for v in row.values()):  # at least one reading
            out[name] = row
    return out


def _server(o: AgentOptions, collector: FrameCollector, agent: Agent, runner: ActionRunner,
            audit: AuditLog) -> AgentServer:
    host, _, port = o.listen.rpartition(":")

    def health() -> tuple[bool, dict[str, Any]]:
        age = agent.clock.time() - agent.stats.last_wall
        ok = agent.stats.samples > 0 and age <= max(10 * agent.interval_s, 10.0)
        return ok, {"samples": agent.stats.samples, "last_sample_age_s": round(age, 3),
                    "errors": agent.stats.errors, "actions_dropped": runner.dropped}

    def reset(rule: str | None, breaker: bool = False) -> dict[str, Any]:
        if breaker:
            was = runner.breaker.reset() if runner.breaker is not None else False
            audit.note("fleet breaker reset by hand", was_open=was)
            return {"reset": "breaker", "was_open": was}
        with agent.lock:
            restores = agent.engine.reset(rule, agent.clock.monotonic())
        for d in restores:
            runner.submit(d)
        audit.note("state reset by hand", rule=rule or "all", restores=len(restores))
        return {"reset": rule or "all", "restores": len(restores)}

    server = AgentServer(collector.registry, health, host or "127.0.0.1", int(port), reset=reset)
    server.start()
    return server
