"""The node runtime, wired in one place: backend, clock, executors, runner, breaker, node and job sources, Agent.

`coldaisle agent`, `coldaisle top` and the twin's protected replay all run what `assemble()` returns, so a rule
behaves the same on a node, in the live view and on the twin: the same executors answer a power cycle (the
twin's simulated BMC, or ipmitool), the node gets the same host signals (PSI, D state, the kernel log's GPU
errors), the same breaker counts drains. Daemon concerns (priority, HTTP, systemd, SIGHUP) stay in `main`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldaisle.actions.audit import AuditLog
from coldaisle.actions.interface import ActionKind, Decision
from coldaisle.actions.powercap import PowerCapper
from coldaisle.actions.runner import ActionRunner
from coldaisle.agent.executors import fleet_breaker, node_executors
from coldaisle.agent.exporter import HistoryStats
from coldaisle.agent.faultlog import FaultEvent, FaultRecorder, NodeHistories, NodeHistory
from coldaisle.agent.healer import GpuCheck, Healer
from coldaisle.agent.host import HostProbe, HostSample
from coldaisle.agent.kernel import KernelWatch
from coldaisle.agent.loop import Agent, LocalNode
from coldaisle.agent.procjobs import ProcJobs
from coldaisle.errors import ColdaisleError
from coldaisle.policy.context import Jobs, Nodes
from coldaisle.policy.loader import LoadedPolicy, load_policy
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.open import BackendChoice, OpenBackend, open_backend
from coldaisle.sim.sources import SimJobs, SimNodes
from coldaisle.telemetry.frame import Frame

TickHook = Callable[[Frame, Nodes, Jobs, list[Decision]], None]


@dataclass
class RuntimeOptions:
    """What a node runtime is made of; each command fills in what its flags say."""

    backend: BackendChoice = field(default_factory=BackendChoice)
    policy: str | LoadedPolicy = "default"
    enforce: bool | None = None  # None: the twin enforces, a real node follows the policy's mode
    interval_s: float = 1.0
    audit: Path | None = None  # None: a temporary file, removed at close
    durable_audit: bool = True  # fsync each record (a simulation's lost line is a rerun away: False)
    webhook: str | None = None
    bmc: Path | None = None  # the BMC file for power cycles; none: every power cycle is refused
    signatures: list[Path] = field(default_factory=list)  # site signature files for the kernel log
    kernel_log: str | None = "auto"  # auto: /dev/kmsg on a real node, none on the twin; or a path; None: not at all
    proc: str = "/proc"
    keep_frames: int = 120
    keep_outcomes: int = 1000
    notify_logger: logging.Logger | None = None  # where NOTIFY lines go (default: coldaisle.notify)
    hint: str = ""  # what to suggest when `--backend auto` finds no GPU
    on_note: Callable[[str], None] | None = None  # also told what the loop notes (tick and rule failures)
    drain: str = "auto"  # slurm | kubernetes | twin; auto: the twin's on the simulator, else the node's scheduler
    history: Path | None = None  # the node's durable fault history (default: beside the audit log; twin: memory)


class HostSignals:
    """The real node's host signals for the policy: PSI, swap-in, interrupts, D state, kernel GPU errors."""

    def __init__(self, probe: HostProbe, kernel: KernelWatch | None) -> None:
        self.probe, self.kernel = probe, kernel
        self.last: HostSample | None = None  # for the exporter's host series

    def __call__(self) -> dict[str, float]:
        """One reading, as the policy's node-level names."""
        self.last = self.probe.sample()
        values = self.last.as_dict()
        if self.kernel is not None:
            values["kernel_gpu_errors"] = self.kernel.recent_count()
        return values


@dataclass
class NodeRuntime:
    """A wired node: what was opened, the policy, the audit log, the runner and the Agent that ties them."""

    opened: OpenBackend
    policy: LoadedPolicy
    enforce: bool
    audit: AuditLog
    audit_path: Path
    runner: ActionRunner
    agent: Agent
    host: HostSignals | None = None
    kernel: KernelWatch | None = None
    histories: NodeHistories = field(default_factory=NodeHistories)
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _hooks: list[TickHook] = field(default_factory=list)  # the Agent's on_tick calls these in order

    @property
    def node(self) -> str:
        """The node's name (the twin's node, or `sim:<scenario>` for a whole simulated cluster)."""
        return self.opened.node

    def history_stats(self, now: float) -> HistoryStats | None:
        """This node's fault history for /metrics and the state file (None for a cluster view of the twin)."""
        h = self.histories.get(self.node)
        if h is None:
            return None
        lemon = self.policy.policy.lemon
        return HistoryStats(h.counts(now), self.histories.lemon(self.node, lemon.drains, lemon.within, now))

    def on_tick(self, hook: TickHook) -> None:
        """Call `hook(frame, nodes, jobs, decisions)` after every tick, after the ones added before it."""
        self._hooks.append(hook)

    def start(self) -> None:
        """Start the kernel-log thread (a real node); the loop itself runs in `agent.run()`."""
        if self.kernel is not None:
            self.kernel.start()

    def close(self) -> None:
        """Stop the kernel watch and the action worker, close the audit log and backend, drop a temporary audit."""
        if self.kernel is not None:
            self.kernel.stop()
        self.runner.close()
        self.audit.close()
        self.opened.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def assemble(o: RuntimeOptions, *, opened: OpenBackend | None = None) -> NodeRuntime:
    """Open the backend (unless given one), load the policy and wire the node; nothing runs yet."""
    lp = o.policy if isinstance(o.policy, LoadedPolicy) else load_policy(o.policy)  # bad policy: fail first
    opened = opened or open_backend(o.backend, hint=o.hint)
    try:
        return _wire(o, lp, opened)
    except BaseException:
        opened.close()
        raise


def _wire(o: RuntimeOptions, lp: LoadedPolicy, opened: OpenBackend) -> NodeRuntime:
    backend, twin, clock = opened.backend, opened.twin, opened.clock
    if backend is None:
        raise ColdaisleError(f"no GPU backend to run on: {opened.note}", exit_code=2)
    enforce = o.enforce if o.enforce is not None else (twin is not None or lp.policy.mode == "enforce")
    tmp = tempfile.TemporaryDirectory(prefix="coldaisle-audit-") if o.audit is None else None
    audit_path = o.audit if o.audit is not None else Path(tmp.name) / "audit.jsonl"  # type: ignore[union-attr]
    audit = AuditLog(audit_path, clock=clock, durable=o.durable_audit)
    capper = PowerCapper(backend, clock=clock)
    executors = node_executors(opened, capper, drain=o.drain, webhook=o.webhook, bmc=o.bmc,
                               notify_logger=o.notify_logger)
    breaker = fleet_breaker(lp, executors[ActionKind.DRAIN], clock)
    runner = ActionRunner(executors, audit, dry_run=not enforce, clock=clock, breaker=breaker,
                          asynchronous=twin is None, keep=o.keep_outcomes)
    histories = _histories(o, opened, audit_path)
    runner.observers.append(histories.record_outcome)
    host = None
    kernel = _kernel_watch(o, opened, audit, audit_path)
    if twin is not None:
        nodes: Any = SimNodes(backend, histories)  # type: ignore[arg-type]  # a twin's backend is a SimBackend
        jobs: Any = SimJobs(backend)  # type: ignore[arg-type]
    else:
        host = HostSignals(HostProbe(o.proc, clock=clock), kernel)
        nodes, jobs = LocalNode(opened.node, probe=host, history=histories), ProcJobs(o.proc)
    recorder = FaultRecorder(histories)
    hooks: list[TickHook] = [lambda frame, *_: capper.observe(frame),  # caps restore relative to the last Frame
                             lambda frame, *_: recorder.observe(frame)]
    healer = Healer(lambda: agent.step, runner.executors[ActionKind.DRAIN], runner.submit, histories,
                    _gpu_check(opened), clock, audit.note)
    hooks.append(lambda *_: healer.tick())
    agent = Agent(backend, lp, runner, clock, interval_s=o.interval_s, nodes=nodes, jobs=jobs,
                  keep_frames=o.keep_frames, note=_noting(audit, o.on_note),
                  on_tick=_each(hooks))
    if kernel is not None:
        kernel.on_xid = _kernel_xid(agent, histories, opened)
    return NodeRuntime(opened, lp, enforce, audit, audit_path, runner, agent, host, kernel, histories, tmp, hooks)


def _gpu_check(opened: OpenBackend) -> GpuCheck:
    """GPU preflight of one node before it is resumed: its GPUs visible and healthy (on the twin, that node's)."""
    from coldaisle.preflight import CheckSeverity, PreflightOptions, run_preflight

    def check(node: str) -> tuple[bool, str]:
        backend = SimBackend(opened.twin, node=node) if opened.twin is not None else opened.backend
        report = run_preflight(PreflightOptions(backend_obj=backend, only=["gpu"], cache=False))
        failed = [f for f in report.findings if f.severity == CheckSeverity.FAIL]
        return not failed, "; ".join(f"{f.subject}: {f.message}" for f in failed[:3])
    return check


def _histories(o: RuntimeOptions, opened: OpenBackend, audit_path: Path) -> NodeHistories:
    """The fault history of each watched node: a durable file for one node (real, or one node of the twin),
    memory for the twin's whole cluster (a replay)."""
    names = sorted({d.node for d in opened.backend.devices()}) if opened.backend else []  # type: ignore[union-attr]
    if opened.twin is None or len(names) == 1:
        node = names[0] if opened.twin is not None else opened.node
        return NodeHistories({node: NodeHistory(node, o.history or audit_path.with_name("node-history.json"))})
    return NodeHistories({n: NodeHistory(n) for n in names})


def _kernel_xid(agent: Agent, histories: NodeHistories, opened: OpenBackend) -> Callable[[int, int], None]:
    """An Xid from the kernel log: the next tick sees it, and the node's history keeps it."""
    devices = opened.backend.devices() if opened.backend else ()  # type: ignore[union-attr]

    def on_xid(device: int, xid: int) -> None:
        agent.inject_xid(device, xid)
        if 0 <= device < len(devices):
            d = devices[device]
            h = histories.get(d.node)
            if h is not None:
                h.add(FaultEvent(opened.clock.time(), "xid", xid, d.uuid, "kernel log"))
    return on_xid


def _noting(audit: AuditLog, also: Callable[[str], None] | None) -> Callable[[str], None]:
    """The loop's notes go to the audit log, and to `also` when given."""
    if also is None:
        return audit.note

    def note(text: str) -> None:
        also(text)
        audit.note(text)
    return note


def _each(hooks: list[TickHook]) -> TickHook:
    """One tick hook that calls every hook in `hooks` (a list later `on_tick` calls append to), in order."""
    def tick(frame: Frame, nodes: Nodes, jobs: Jobs, decisions: list[Decision]) -> None:
        for hook in hooks:
            hook(frame, nodes, jobs, decisions)
    return tick


def _kernel_watch(o: RuntimeOptions, opened: OpenBackend, audit: AuditLog, audit_path: Path) -> KernelWatch | None:
    """Follow the kernel log if this host lets us read it (a container often does not: say so and go on)."""
    from coldaisle.agent.kmsg import SIGNATURES, KmsgFollower, catalog_patterns

    path = ("/dev/kmsg" if opened.twin is None else None) if o.kernel_log == "auto" else o.kernel_log
    if path is None:
        return None
    try:
        patterns: Any = catalog_patterns(o.signatures)  # the triage catalog: classes mean the same live and after
    except ColdaisleError:
        raise  # a broken site signature file is a configuration error: file, line and field, at start
    except Exception as exc:  # the catalog itself failing must not cost the node its kernel watch
        audit.note("signature catalog not loaded; built-in kernel signatures in use", error=str(exc))
        patterns = SIGNATURES
    try:
        follower = KmsgFollower(path, cursor_file=audit_path.with_name("kmsg.cursor"), host=opened.node,
                                clock=opened.clock, patterns=patterns, proc=o.proc)
        follower.poll()  # catch up (the cursor keeps lines seen before a restart from firing again)
    except OSError as exc:
        audit.note("kernel log not followed", error=str(exc))
        return None
    return KernelWatch(follower, opened.backend.devices(), opened.clock,  # type: ignore[union-attr]
                       on_xid=lambda _d, _x: None)
