"""The agent's own parts, assembled for one node and stepped one sample at a time for `coldaisle top`.

Nothing here re-implements the agent: the Backend and paced twin clock come from `agent.main`, the loop is
`agent.loop.Agent`, decisions go through the real `ActionRunner` and executors, and pending/firing with the
time until a rule fires is `Engine.views()`. On a real node top only decides (dry-run) unless told
`--enforce`: the agent daemon is the one that acts there. On the twin it enforces, as the agent does.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldaisle.actions.audit import AuditLog
from coldaisle.actions.interface import ActionKind
from coldaisle.actions.runner import ActionRunner
from coldaisle.actions.safety import CircuitBreaker
from coldaisle.agent.loop import Agent, LocalNode
from coldaisle.agent.main import Options as AgentOptions
from coldaisle.agent.main import build_backend, build_executors
from coldaisle.errors import BackendUnavailable, ColdaisleError
from coldaisle.policy.loader import load_policy
from coldaisle.top.state import Recorder, Snapshot


@dataclass
class TopOptions:
    """Everything `coldaisle top` takes on its command line."""

    backend: str = "auto"  # auto | nvml | sim
    scenario: str = "prometheus-unbound"
    node: str | None = None
    speed: float = 1.0
    start: str | None = None  # with sim: scenario time to start from, e.g. "03:03"
    policy: str = "default"
    enforce: bool | None = None  # None: the twin enforces, a real node only decides
    interval_s: float = 1.0
    duration_s: float | None = None
    audit: Path | None = None  # None: a temporary file, removed when top exits
    history: int = 60


class TopSession:
    """One node watched through the agent's loop; `step()` takes one sample and returns the screen's content."""

    def __init__(self, o: TopOptions, *, proc: str = "/proc") -> None:
        if o.start is not None and o.backend != "sim":
            raise ColdaisleError("--start only applies to the simulator", hint="add --backend sim", exit_code=2)
        self.options, self.proc = o, proc
        self._last_jobs: dict[int, str] = {}  # pid -> job name, for the twin's process names
        lp = load_policy(o.policy)
        ao = AgentOptions(backend=o.backend, scenario=o.scenario, node=o.node, speed=o.speed, policy=o.policy)
        try:
            self.backend, self.clock, self.twin = build_backend(ao)
        except BackendUnavailable as exc:
            if o.backend != "auto":
                raise
            raise BackendUnavailable(exc.message, hint="install the NVIDIA driver and `pip install coldaisle[nvml]`, "
                                     "or watch the simulator: `coldaisle top --backend sim --scenario "
                                     "prometheus-unbound --node node-gpu-12 --start 03:03`") from None
        self._tmp = tempfile.TemporaryDirectory(prefix="coldaisle-top-") if o.audit is None else None
        try:
            self._assemble(o, ao, lp)
        except BaseException:
            self.close()
            raise

    def _assemble(self, o: TopOptions, ao: AgentOptions, lp: Any) -> None:
        twin = self.twin
        if twin is not None:
            self._sim_view(o)
            ao.node = self.node
        else:
            self.node = o.node or socket.gethostname()
        enforce = o.enforce if o.enforce is not None else twin is not None
        audit_path = o.audit if o.audit is not None else Path(self._tmp.name) / "audit.jsonl"  # type: ignore[union-attr]
        self.audit = AuditLog(audit_path, clock=self.clock)
        fleet = twin.plan.layout.n_nodes if twin is not None else lp.policy.fleet_size
        self.runner = ActionRunner(build_executors(ao, self.backend, twin, self.clock), self.audit,
                                   dry_run=not enforce, clock=self.clock, asynchronous=twin is None,
                                   breaker=CircuitBreaker(lp.policy.drain_max_share, lp.policy.drain_window,
                                                          fleet, self.clock))
        nodes, jobs, names = self._sources()
        source = "NVML" if twin is None else f"sim {twin.plan.scenario.name} x{o.speed:g}"
        shown = "default" if o.policy == "default" else lp.source
        self.recorder = Recorder(self.backend.devices(), node=self.node, source=source,
                                 mode="ENFORCING" if enforce else "dry-run", policy=shown, rules=lp.rules,
                                 history=o.history, process_name=names)
        self.agent = Agent(self.backend, lp, self.runner, self.clock, interval_s=o.interval_s, nodes=nodes,
                           jobs=jobs, on_tick=self._on_tick, note=self._note)
        self.audit.note("top started", node=self.node, mode=self.recorder.mode, policy=lp.source)

    def _sim_view(self, o: TopOptions) -> None:
        """One node of the twin (the first when none is named), moved to `--start`."""
        from coldaisle.sim.backend import SimBackend
        from coldaisle.sim.replay import parse_until

        twin = self.twin
        self.node = o.node or twin.plan.layout.node_names[0]
        if o.node is None:
            self.backend = SimBackend(twin, node=self.node)
        if o.start is not None:
            try:
                start = parse_until(o.start, twin.plan)
            except ColdaisleError as exc:
                raise ColdaisleError(f"--start: {exc.message}", hint=exc.hint, exit_code=2) from None
            twin.run_until(start)

    def _sources(self) -> tuple[Any, Any, Callable[[int], str]]:
        """Host signals, job attribution and process names: from the twin, or from /proc on a real node."""
        if self.twin is not None:
            from coldaisle.sim.sources import SimJobs, SimNodes

            by_job = {jp.spec.name: jp.spec.process for jp in self.twin.plan.jobs}
            return (SimNodes(self.backend), SimJobs(self.backend),  # type: ignore[arg-type]
                    lambda pid: by_job.get(self._last_jobs.get(pid, ""), ""))
        from coldaisle.agent.host import HostProbe
        from coldaisle.agent.procjobs import ProcJobs

        probe = HostProbe(self.proc, clock=self.clock)
        return LocalNode(self.node, probe=lambda: probe.sample().as_dict()), ProcJobs(self.proc), self._comm

    def _comm(self, pid: int) -> str:
        """/proc/PID/comm, or "" once the process is gone."""
        try:
            return Path(self.proc, str(pid), "comm").read_text().strip()
        except OSError:
            return ""

    def _on_tick(self, frame: Any, nodes: Any, jobs: Any, _decisions: list[Any]) -> None:
        of_process = jobs.of_process if jobs.of_process is not None else ()
        self._last_jobs = {int(pid): jobs.names[int(j)] for pid, j in zip(frame.processes.pid.tolist(),
                                                                             list(of_process), strict=False)
                           if 0 <= int(j) < len(jobs.names)}
        capper = self.runner.executors.get(ActionKind.POWER_CAP)
        if capper is not None and hasattr(capper, "observe"):
            capper.observe(frame)  # the capper restores limits relative to what it last saw
        views = self.agent.engine.views(self.clock.monotonic())
        self.recorder.observe(frame, nodes, jobs, views, tuple(self.runner.outcomes))

    def _note(self, text: str) -> None:
        self.recorder.notes.append(text)
        self.audit.note(text)

    def step(self) -> Snapshot | None:
        """Sample once (sleeping the interval, paced by --speed on the twin); the new screen, if a tick ran."""
        before = self.recorder.samples
        self.agent.run(until=self.clock.monotonic() + self.options.interval_s)
        return self.recorder.last if self.recorder.samples != before else None

    def close(self) -> None:
        """Stop the action worker, close the audit log and the Backend; remove the temporary audit file."""
        for part in ("runner", "audit", "backend"):
            obj = getattr(self, part, None)
            if obj is not None:
                obj.close()
        if self._tmp is not None:
            self._tmp.cleanup()

