"""`coldaisle agent`: assemble the daemon from its parts (backend, policy, executors, server) and run it.

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
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldaisle.actions.audit import AuditLog
from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status
from coldaisle.actions.notify import LogNotifier, WebhookNotifier
from coldaisle.actions.powercap import PowerCapper
from coldaisle.actions.runner import ActionRunner
from coldaisle.actions.safety import CircuitBreaker
from coldaisle.agent.exporter import AgentStats, FrameCollector
from coldaisle.agent.loop import Agent, LocalNode
from coldaisle.agent.sdnotify import SdNotify, chain
from coldaisle.agent.server import AgentServer
from coldaisle.errors import BackendUnavailable, ColdaisleError
from coldaisle.health.state import StateWriter
from coldaisle.policy.loader import LoadedPolicy, load_policy
from coldaisle.telemetry.backend import Backend
from coldaisle.telemetry.clock import Clock, RealClock

log = logging.getLogger("coldaisle.agent")


@dataclass
class Options:
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


class PacedSimClock:
    """The twin's clock, paced against the wall clock: sleeping `s` waits s/speed, then advances the twin."""

    def __init__(self, sim: Any, speed: float) -> None:
        self.sim, self.speed = sim, max(speed, 1e-3)

    def time(self) -> float:
        """Simulated UTC time."""
        return float(self.sim.time())

    def monotonic(self) -> float:
        """Simulated seconds since the scenario started."""
        return float(self.sim.monotonic())

    def sleep(self, seconds: float) -> None:
        """Wait in real time, then move the twin forward."""
        time.sleep(seconds / self.speed)
        self.sim.sleep(seconds)


class Notify:
    """NOTIFY to the log and, when configured, to an Alertmanager-compatible webhook."""

    kind = ActionKind.NOTIFY

    def __init__(self, *targets: Any) -> None:
        self.targets = [t for t in targets if t is not None]

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Every target gets it; the Outcome reports the worst."""
        outcomes = [t.execute(decision, dry_run=dry_run) for t in self.targets]
        bad = [o for o in outcomes if o.status == Status.FAILED]
        return bad[0] if bad else outcomes[-1]


def build_backend(o: Options) -> tuple[Backend, Clock, Any]:
    """The Backend (NVML, or a node of the twin), its clock and the twin (None on hardware)."""
    if o.backend in ("auto", "nvml"):
        try:
            from coldaisle.telemetry.nvml import NvmlBackend

            return NvmlBackend(node=o.node), RealClock(), None  # in a pod the hostname is not the node's name
        except BackendUnavailable as exc:
            if o.backend == "nvml":
                raise
            raise BackendUnavailable(
                f"no GPU telemetry on this host: {exc.message}",
                hint="install the NVIDIA driver and `pip install coldaisle[nvml]`, or run on the simulator with "
                     "`coldaisle agent --backend sim --scenario prometheus-unbound`") from None
    if o.backend != "sim":
        raise ColdaisleError(f"unknown backend {o.backend!r}", hint="use auto, nvml or sim", exit_code=2)
    from coldaisle.sim.backend import SimBackend
    from coldaisle.sim.replay import load_plan
    from coldaisle.sim.twin import Twin

    twin = Twin(load_plan(o.scenario))
    return SimBackend(twin, node=o.node), PacedSimClock(twin.clock, o.speed), twin


def build_executors(o: Options, backend: Backend, twin: Any, clock: Clock) -> dict[ActionKind, Any]:
    """Real executors on hardware, the twin's for signals and drains on the simulator."""
    webhook = WebhookNotifier(o.webhook, clock=clock) if o.webhook else None
    ex: dict[ActionKind, Any] = {ActionKind.NOTIFY: Notify(LogNotifier(clock=clock), webhook),
                                 ActionKind.POWER_CAP: PowerCapper(backend, clock=clock)}
    if twin is not None:
        from coldaisle.actions.sim import SimDrain, SimSignaller

        sig: Any = SimSignaller(twin)
        drain: Any = SimDrain(twin)
    else:
        import shutil

        from coldaisle.actions.drain import SlurmDrain
        from coldaisle.actions.k8s import KubernetesDrain
        from coldaisle.actions.signal import ProcessSignaller

        sig = ProcessSignaller(clock=clock)
        drain = SlurmDrain(clock=clock) if shutil.which("scontrol") or not os.environ.get(
            "KUBERNETES_SERVICE_HOST") else KubernetesDrain(clock=clock)
    from coldaisle.actions.bmc import BmcFile, IpmiPowerCycle, load_bmcs

    # the out-of-band last rung: off (every power_cycle refused, and audited as such) unless a BMC file enables it
    cycle = IpmiPowerCycle(load_bmcs(o.bmc) if o.bmc is not None else BmcFile(), clock=clock)
    return ex | {ActionKind.SIGTERM: sig, ActionKind.SIGKILL: sig, ActionKind.DRAIN: drain,
                 ActionKind.POWER_CYCLE: cycle}


def enforcing(o: Options, lp: LoadedPolicy, twin: Any) -> bool:
    """--enforce / --dry-run win; otherwise the simulator enforces and a real node follows the policy's mode."""
    if o.enforce is not None:
        return o.enforce
    return twin is not None or lp.policy.mode == "enforce"


def run(o: Options, say: Callable[[str], None]) -> int:
    """Run the agent until SIGTERM/SIGINT (or `duration_s`); returns the exit code."""
    applied = apply_priority(o.priority)
    lp = load_policy(o.policy)
    backend, clock, twin = build_backend(o)
    enforce = enforcing(o, lp, twin)
    audit = AuditLog(o.audit, clock=clock)
    fleet = twin.plan.layout.n_nodes if twin is not None else lp.policy.fleet_size
    runner = ActionRunner(build_executors(o, backend, twin, clock), audit, dry_run=not enforce, clock=clock,
                          breaker=CircuitBreaker(lp.policy.drain_max_share, lp.policy.drain_window, fleet, clock),
                          asynchronous=True)
    node = o.node or (f"sim:{twin.plan.scenario.name}" if twin is not None else socket.gethostname())
    collector = FrameCollector(node, dcgm_names=o.dcgm_names)
    agent = _agent(backend, lp, runner, clock, o, node, twin, collector, audit)
    server = _server(o, collector, agent, runner, audit)
    audit.note("agent started", mode="enforce" if enforce else "dry-run", policy=lp.source, priority=applied)
    say(f"coldaisle agent on {node}: {len(backend.devices())} GPUs, policy {lp.source}, "
        f"{'ENFORCING' if enforce else 'dry-run (decides and audits, acts on nothing; --enforce to act)'}, "
        f"priority {applied}, metrics on {server.url}/metrics, audit log {o.audit}")
    sd = SdNotify.from_env()
    _after_tick(agent, o.state or o.audit.with_name("state.json"), node, sd)
    sd.ready(f"{node}: {len(backend.devices())} GPUs, {'enforcing' if enforce else 'dry-run'}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    reload_wanted = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: reload_wanted.set())
    agent.between_ticks = lambda: _maybe_reload(reload_wanted, o.policy, agent, audit, say)
    gc.collect()
    gc.freeze()
    try:
        until = None if o.duration_s is None else clock.monotonic() + o.duration_s
        agent.run(stop=stop if twin is None else None, until=until) if twin is None else _run_sim(agent, stop, until)
    finally:
        sd.stopping()
        server.stop()
        runner.close()
        audit.note("agent stopped")
        audit.close()
        backend.close()
    return 0


def _after_tick(agent: Agent, state_path: Path, node: str, sd: SdNotify) -> None:
    """After every tick: the state snapshot `coldaisle health` reads, then the systemd watchdog ping."""
    writer = StateWriter(state_path, node, interval_s=agent.interval_s,
                         severities=lambda: {cr.rule.name: cr.rule.severity for cr in agent.engine.rules})

    def snapshot(frame: Any, nodes: Any, _jobs: Any, _decisions: list[Decision]) -> None:
        with agent.lock:
            views = agent.engine.views(agent.clock.monotonic())
        writer.write(frame, nodes.values, views, samples=agent.stats.samples, errors=agent.stats.errors)

    agent.on_tick = chain(agent.on_tick, snapshot, lambda *_: sd.tick())


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


def _run_sim(agent: Agent, stop: threading.Event, until: float | None) -> None:
    while not stop.is_set() and (until is None or agent.clock.monotonic() < until):
        agent.run(until=agent.clock.monotonic() + agent.interval_s)


def _agent(backend: Backend, lp: LoadedPolicy, runner: ActionRunner, clock: Clock, o: Options, node: str,
           twin: Any, collector: FrameCollector, audit: AuditLog) -> Agent:
    if twin is not None:
        from coldaisle.sim.sources import SimJobs, SimNodes

        nodes: Any = SimNodes(backend)  # type: ignore[arg-type]
        jobs: Any = SimJobs(backend)  # type: ignore[arg-type]
        last = {}
    else:
        from coldaisle.agent.host import HostProbe
        from coldaisle.agent.procjobs import ProcJobs

        probe = HostProbe(clock=clock)
        last: dict[str, Any] = {}

        def sample_host() -> dict[str, float]:
            last["host"] = probe.sample()
            return last["host"].as_dict()

        kernel = _kernel_watch(o, node, backend, clock, audit)
        last["kernel"] = kernel

        def sample_node() -> dict[str, float]:
            values = sample_host()
            if kernel is not None:
                values["kernel_gpu_errors"] = kernel.recent_count()
            return values

        nodes = LocalNode(node, probe=sample_node)
        jobs = ProcJobs()
    capper = runner.executors[ActionKind.POWER_CAP]

    def on_tick(frame: Any, nodes_: Any, jobs_: Any, decisions: list[Decision]) -> None:
        capper.observe(frame)
        with agent.lock:
            views = agent.engine.views(clock.monotonic())
        stats = AgentStats(agent.stats.samples, agent.stats.last_duration_s, agent.stats.last_wall,
                           sum(v.pending for v in views), sum(v.firing for v in views),
                           {(str(a), str(s)): n for (a, s), n in runner.counts.items()})
        collector.update(frame, host=last.get("host"), agent_state=stats,
                         jobs=getattr(jobs, "last_refs", None), job_values=_job_values(jobs_))

    agent = Agent(backend, lp, runner, clock, interval_s=o.interval_s, nodes=nodes, jobs=jobs,
                  on_tick=on_tick, note=audit.note)
    if last.get("kernel") is not None:
        last["kernel"].on_xid = agent.inject_xid
        last["kernel"].start()
    return agent


def _job_values(jobs: Any) -> dict[str, dict[str, float]]:
    """Per job label, the heartbeat values the job view read (only jobs with at least one)."""
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(jobs.names):
        row = {k: float(v[i]) for k, v in jobs.values.items() if k.startswith("job_") and i < len(v)}
        if any(not math.isnan(v) for v in row.values()):  # at least one reading
            out[name] = row
    return out


def _kernel_watch(o: Options, node: str, backend: Backend, clock: Clock, audit: AuditLog) -> Any:
    """Follow /dev/kmsg if this host lets us read it (a container often does not: say so and go on)."""
    from coldaisle.agent.kernel import KernelWatch
    from coldaisle.agent.kmsg import SIGNATURES, KmsgFollower, catalog_patterns

    try:
        patterns: Any = catalog_patterns(o.signatures)  # the triage catalog: classes mean the same live and after
    except ColdaisleError:
        raise  # a broken site signature file is a configuration error: file, line and field, at start
    except Exception as exc:  # the catalog itself failing must not cost the node its kernel watch
        audit.note("signature catalog not loaded; built-in kernel signatures in use", error=str(exc))
        patterns = SIGNATURES
    try:
        follower = KmsgFollower("/dev/kmsg", cursor_file=o.audit.with_name("kmsg.cursor"), host=node, clock=clock,
                                patterns=patterns)
        follower.poll()  # catch up (the cursor keeps lines seen before a restart from firing again)
    except OSError as exc:
        audit.note("kernel log not followed", error=str(exc))
        return None
    return KernelWatch(follower, backend.devices(), clock, on_xid=lambda _d, _x: None)


def _server(o: Options, collector: FrameCollector, agent: Agent, runner: ActionRunner,
            audit: AuditLog) -> AgentServer:
    host, _, port = o.listen.rpartition(":")

    def health() -> tuple[bool, dict[str, Any]]:
        age = agent.clock.time() - agent.stats.last_wall
        ok = agent.stats.samples > 0 and age <= max(10 * agent.interval_s, 10.0)
        return ok, {"samples": agent.stats.samples, "last_sample_age_s": round(age, 3),
                    "errors": agent.stats.errors, "actions_dropped": runner.dropped}

    def reset(rule: str | None) -> dict[str, Any]:
        with agent.lock:
            restores = agent.engine.reset(rule, agent.clock.monotonic())
        for d in restores:
            runner.submit(d)
        audit.note("state reset by hand", rule=rule or "all", restores=len(restores))
        return {"reset": rule or "all", "restores": len(restores)}

    server = AgentServer(collector.registry, health, host or "127.0.0.1", int(port), reset=reset)
    server.start()
    return server
