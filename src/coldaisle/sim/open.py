"""The one place a Backend is opened: NVML on a GPU node, a node (or the whole cluster) of the twin, or none.

Every command that reads GPUs (agent, top, run, preflight, the twin's replay) opens its backend here, so one
`--backend` means the same thing everywhere and fails the same way: an unknown kind is a usage error (exit 2,
`BackendKind.parse`), NVML that does not answer is `BackendUnavailable` (exit 3) unless the command can go on
without GPUs (`required=False`). It lives in `sim` because sim is the lowest part that sees both
implementations: telemetry's `NvmlBackend` and the twin's `SimBackend`.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

from coldaisle.errors import BackendUnavailable, ColdaisleError
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.resolve import Plan
from coldaisle.sim.run import load_plan, parse_until
from coldaisle.sim.twin import Twin
from coldaisle.telemetry.backend import Backend, BackendKind
from coldaisle.telemetry.clock import Clock, RealClock, SimClock


@dataclass(frozen=True)
class BackendChoice:
    """What `--backend` and its companions asked for."""

    kind: BackendKind | str = BackendKind.AUTO
    scenario: str = "healthy-training"  # sim: the scenario to play
    node: str | None = None  # nvml: the node's name for its series; sim: the node watched (None: see one_node)
    start: str | None = None  # sim: scenario time to start from, e.g. "03:03"
    speed: float = 1.0  # sim: simulated seconds per real second
    one_node: bool = False  # sim without --node: the first node (True) or the whole cluster (False)


class PacedSimClock:
    """The twin's clock, paced against the wall clock: sleeping `s` waits s/speed, then advances the twin."""

    def __init__(self, sim: SimClock, speed: float, end_s: float = float("inf")) -> None:
        self.sim, self.speed, self.end_s = sim, max(speed, 1e-3), end_s
        self._wall0, self._sim0 = time.monotonic(), sim.monotonic()

    def time(self) -> float:
        """Simulated UTC time."""
        return self.sim.time()

    def monotonic(self) -> float:
        """Simulated seconds since the scenario started."""
        return self.sim.monotonic()

    def sleep(self, seconds: float) -> None:
        """Wait in real time, then move the twin forward."""
        time.sleep(max(seconds, 0.0) / self.speed)
        self.sim.sleep(seconds)

    def wait(self, seconds: float, stop: threading.Event | None = None) -> None:
        """`sleep`, cut short by `stop` (the twin then stays where it is)."""
        if stop is None:
            self.sleep(seconds)
        elif not stop.wait(max(seconds, 0.0) / self.speed):
            self.sim.sleep(seconds)

    def follow_wall(self) -> None:
        """Move the twin to where the wall clock says it should be, for callers that run on real time."""
        target = min(self._sim0 + (time.monotonic() - self._wall0) * self.speed, self.end_s)
        if target > self.sim.monotonic():
            self.sim.advance_to(target)


@dataclass
class OpenBackend:
    """An opened Backend with the clock that goes with it: the host's, or the twin's (paced, or free)."""

    kind: BackendKind  # what was opened: nvml, sim, or none (`auto` resolved)
    backend: Backend | None
    clock: Clock
    node: str  # the node's name: the host's (or --node), the twin's node, or "sim:<scenario>" for a cluster
    twin: Twin | None = None
    note: str = ""  # why there is no backend

    def follow_wall(self) -> None:
        """On a paced twin, catch up with the wall clock (a no-op on hardware and on a free-running twin)."""
        if isinstance(self.clock, PacedSimClock):
            self.clock.follow_wall()

    def close(self) -> None:
        """Release the backend's handles and threads."""
        if self.backend is not None:
            self.backend.close()


def open_backend(choice: BackendChoice, *, required: bool = True, hint: str = "") -> OpenBackend:
    """Open what `choice` names; `auto` without NVML is an error when `required`, otherwise no backend and a note."""
    kind = BackendKind.parse(choice.kind)
    if choice.start is not None and kind is not BackendKind.SIM:
        raise ColdaisleError("--start only applies to the simulator", hint="add --backend sim", exit_code=2)
    if kind is BackendKind.NONE:
        return OpenBackend(kind, None, RealClock(), choice.node or socket.gethostname(),
                           note="GPU readings are off (--backend none)")
    if kind is BackendKind.SIM:
        plan = load_plan(choice.scenario)
        return open_twin(plan, node=choice.node or (plan.layout.node_names[0] if choice.one_node else None),
                         start=choice.start, speed=choice.speed)
    try:
        from coldaisle.telemetry.nvml import NvmlBackend

        backend = NvmlBackend(node=choice.node)  # in a pod the hostname is not the node's name
    except BackendUnavailable as exc:
        if kind is BackendKind.NVML:
            raise
        if required:
            raise BackendUnavailable(f"no GPU telemetry on this host: {exc.message}", hint=hint or exc.hint) from None
        return OpenBackend(BackendKind.NONE, None, RealClock(), choice.node or socket.gethostname(),
                           note=f"no GPU telemetry on this host ({exc.message.rstrip('.')})")
    return OpenBackend(BackendKind.NVML, backend, RealClock(), choice.node or socket.gethostname())


def open_twin(plan: Plan, *, node: str | None = None, start: str | None = None,
              speed: float | None = None) -> OpenBackend:
    """A fresh twin of `plan` moved to `start`, read through a SimBackend; paced at `speed`, or free (None)."""
    twin = Twin(plan)
    if start is not None:
        try:
            start_s = parse_until(start, plan)
        except ColdaisleError as exc:
            raise ColdaisleError(f"--start: {exc.message}", hint=exc.hint, exit_code=2) from None
        twin.run_until(start_s)
    backend = SimBackend(twin, node=node)
    clock: Clock = twin.clock if speed is None else PacedSimClock(twin.clock, speed, plan.duration_s)
    return OpenBackend(BackendKind.SIM, backend, clock, node or f"sim:{plan.scenario.name}", twin)
