"""The agent's own parts, assembled for one node and stepped one sample at a time for `coldaisle top`.

Nothing here re-implements the agent: the node runtime comes from `agent.assemble` (backend, paced twin clock,
executors, runner, host and job sources, the loop), and pending/firing with the time until a rule fires is
`Engine.views()`. On a real node top only decides (dry-run) unless told
`--enforce`: the agent daemon is the one that acts there. On the twin it enforces, as the agent does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldaisle.actions.runner import ActionRunner
from coldaisle.agent.assemble import RuntimeOptions, assemble
from coldaisle.agent.loop import Agent
from coldaisle.sim.open import BackendChoice, OpenBackend
from coldaisle.telemetry.backend import Backend, BackendKind
from coldaisle.telemetry.clock import Clock
from coldaisle.top.state import ScreenRecorder, Snapshot

NO_GPU_HINT = ("install the NVIDIA driver and `pip install coldaisle[nvml]`, or watch the simulator: "
               "`coldaisle top --backend sim --scenario prometheus-unbound --node node-gpu-12 --start 03:03`")


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

    def __init__(self, o: TopOptions, *, proc: str = "/proc", opened: OpenBackend | None = None,
                 kernel_log: str | None = "/dev/kmsg") -> None:
        kind = BackendKind.parse(o.backend, (BackendKind.AUTO, BackendKind.NVML, BackendKind.SIM))
        self.options, self.proc = o, proc
        self._last_jobs: dict[int, str] = {}  # pid -> job name, for the twin's process names
        self.recorder: ScreenRecorder | None = None
        self._notes: list[str] = []
        enforce = o.enforce if o.enforce is not None else kind is BackendKind.SIM  # a real node: top only decides
        self.rt = assemble(RuntimeOptions(
            BackendChoice(kind, o.scenario, o.node, o.start, o.speed, one_node=True), o.policy, enforce, o.interval_s,
            o.audit, proc=proc, kernel_log=kernel_log, hint=NO_GPU_HINT, on_note=self._note), opened=opened)
        try:
            self._start(o)
        except BaseException:
            self.rt.close()
            raise

    def _start(self, o: TopOptions) -> None:
        rt = self.rt
        twin = rt.opened.twin
        source = "NVML" if twin is None else f"sim {twin.plan.scenario.name} x{o.speed:g}"
        shown = "default" if o.policy == "default" else rt.policy.source
        self.recorder = ScreenRecorder(rt.agent.backend.devices(), node=self.node, source=source,
                                       mode="ENFORCING" if rt.enforce else "dry-run", policy=shown,
                                       rules=rt.policy.rules, history=o.history, process_name=self._names())
        self.recorder.notes.extend(self._notes)
        rt.on_tick(self._on_tick)
        rt.start()
        rt.audit.note("top started", node=self.node, mode=self.recorder.mode, policy=rt.policy.source)

    @property
    def node(self) -> str:
        """The node on screen."""
        return self.rt.node

    @property
    def backend(self) -> Backend:
        """What the screen reads: NVML, or the twin's node."""
        return self.rt.agent.backend

    @property
    def clock(self) -> Clock:
        """The session's clock (the twin's, paced by --speed, or the host's)."""
        return self.rt.opened.clock

    @property
    def runner(self) -> ActionRunner:
        """The action runner (the real one, with the agent's executors)."""
        return self.rt.runner

    @property
    def agent(self) -> Agent:
        """The agent's loop this session steps."""
        return self.rt.agent

    def _names(self) -> Callable[[int], str]:
        """Process names: the twin's job processes, or /proc/PID/comm on a real node."""
        twin = self.rt.opened.twin
        if twin is None:
            return self._comm
        by_job = {jp.spec.name: jp.spec.process for jp in twin.plan.jobs}
        return lambda pid: by_job.get(self._last_jobs.get(pid, ""), "")

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
        views = self.agent.engine.views(self.clock.monotonic())
        assert self.recorder is not None
        self.recorder.observe(frame, nodes, jobs, views, tuple(self.runner.outcomes))

    def _note(self, text: str) -> None:
        """The loop's notes, on screen (the runtime audits them too)."""
        if self.recorder is None:
            self._notes.append(text)
        else:
            self.recorder.notes.append(text)

    def step(self) -> Snapshot | None:
        """Sample once (sleeping the interval, paced by --speed on the twin); the new screen, if a tick ran."""
        assert self.recorder is not None
        before = self.recorder.samples
        self.agent.run(until=self.clock.monotonic() + self.options.interval_s)
        return self.recorder.last if self.recorder.samples != before else None

    def close(self) -> None:
        """Stop the action worker and kernel watch, close the audit log and the Backend; drop a temporary audit."""
        self.rt.close()
