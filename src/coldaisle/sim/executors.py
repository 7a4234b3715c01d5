"""The twin's executors: signals, drains and power cycles act on the twin through its actuators, on its clock.

They are to the actions what `SimBackend` is to the Backend: the same contract (`actions.interface.Executor`),
the same Outcomes and refusals as the node's executors, acting on simulated hardware. Power caps need none:
`PowerCapper` over a `SimBackend` is the real code path.
"""

from __future__ import annotations

import logging

from coldaisle.actions.bmc import POWER_CYCLES_OFF
from coldaisle.actions.fleet import NodeState
from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status
from coldaisle.actions.signal import ESCALATE_DRAIN
from coldaisle.sim.twin import Twin

log = logging.getLogger(__name__)

_SIGNALS = {ActionKind.SIGTERM: "SIGTERM", ActionKind.SIGKILL: "SIGKILL"}


class SimSignaller:
    """SIGTERM/SIGKILL a process of the twin; a process in D state is unkillable and escalates to drain."""

    kind = ActionKind.SIGTERM  # also executes SIGKILL decisions

    def __init__(self, twin: Twin) -> None:
        self.twin = twin

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Deliver the signal through `twin.signal`; its answer becomes the Outcome."""
        try:
            status, detail = self._signal(decision, dry_run)
        except Exception as exc:
            log.exception("simulated signal %s failed", decision.target.label())
            status, detail = Status.FAILED, f"{type(exc).__name__}: {exc}"
        return Outcome(decision, status, detail, self.twin.clock.time())

    def _signal(self, decision: Decision, dry_run: bool) -> tuple[Status, str]:
        t, sig = decision.target, _SIGNALS.get(decision.action)
        node = self.twin.plan.layout.node_index.get(t.node)
        if sig is None or node is None or t.pid is None:
            return Status.FAILED, f"cannot {decision.action} {t.label()}: needs a known node and a pid"
        what = f"pid {t.pid} (python3) on {t.node}"
        if self._in_d_state(node, t.pid):
            return Status.FAILED, (f"unkillable: D state (uninterruptible sleep): process {t.pid} (python3) on "
                                   f"{t.node} cannot be killed; {ESCALATE_DRAIN}")
        if dry_run:
            return Status.DRY_RUN, f"would have sent {sig} to {what}"
        result = self.twin.signal(node, t.pid, sig)
        if result == "no such process":
            return Status.DONE, f"pid {t.pid} has already exited; nothing to signal"
        return Status.DONE, f"sent {sig} to {what}: {result}"

    def _in_d_state(self, node: int, pid: int) -> bool:
        """The twin's process table says `pid` sleeps uninterruptibly (no signal will end it)."""
        gpus = self.twin.plan.layout.gpus_of_node(node)
        hit = gpus[self.twin.workload.pid[gpus] == pid]
        return bool(hit.size and self.twin.workload.dstate[int(hit[0])])


class SimDrain:
    """Drain a node of the twin (no new job lands on it); only our own drains are ever undone."""

    kind = ActionKind.DRAIN

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.ours: dict[str, float] = {}  # nodes this executor drained -> when (simulated UTC)
        self.reasons: dict[str, str] = {}  # node -> the reason of our drain

    def fleet(self) -> list[NodeState]:
        """The twin's nodes as a scheduler shows them: drained or down is out of service; ours since our drain."""
        return [self.node_state(name) for name in self.twin.plan.layout.node_names]

    def node_state(self, node: str) -> NodeState:
        """One node of the twin for the fleet breaker and the healer."""
        i, s = self.twin.plan.layout.node_index[node], self.twin.state
        drained = bool(s.node_drained[i])
        return NodeState(node, drained or not bool(s.node_up[i]), node in self.ours and drained, self.ours.get(node),
                         self.reasons.get(node, ""))

    def retag(self, node: str, reason: str, *, dry_run: bool = False) -> tuple[Status, str]:
        """Change our drain's reason (the node stays drained)."""
        if dry_run:
            return Status.DRY_RUN, f"would have set {node}'s reason: coldaisle: {reason}"
        self.reasons[node] = f"coldaisle: {reason}"
        return Status.DONE, f"{node} stays drained: coldaisle: {reason}"

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Drain, or with `decision.restore` undrain, the target's node."""
        node = decision.target.node
        index = self.twin.plan.layout.node_index.get(node)
        if index is None:
            status, detail = Status.FAILED, f"the simulated cluster has no node named {node!r}"
        elif decision.restore:
            status, detail = self._undrain(node, index, dry_run)
        else:
            status, detail = self._drain(node, index, str(decision.params.get("reason") or decision.rule), dry_run)
        return Outcome(decision, status, detail, self.twin.clock.time())

    def _drain(self, node: str, index: int, reason: str, dry_run: bool) -> tuple[Status, str]:
        tagged = f"coldaisle: {reason}"
        if dry_run:
            return Status.DRY_RUN, f"would have drained {node}: {tagged}"
        if not self.twin.drain(index, tagged, by="coldaisle"):
            who = "coldaisle" if node in self.ours else "a person"
            return Status.DONE, f"already drained by {who}; left alone"
        self.ours[node], self.reasons[node] = self.twin.clock.time(), tagged
        return Status.DONE, f"drained {node} ({tagged})"

    def _undrain(self, node: str, index: int, dry_run: bool) -> tuple[Status, str]:
        if node not in self.ours:
            drained = bool(self.twin.state.node_drained[index])
            return (Status.REFUSED, f"{node} was drained by a person; only they resume it") if drained else \
                (Status.DONE, f"{node} is not drained; nothing to resume")
        if dry_run:
            return Status.DRY_RUN, f"would have resumed {node}"
        self.twin.state.node_drained[index] = False  # the twin has no undrain actuator yet
        self.ours.pop(node, None)
        self.reasons.pop(node, None)
        return Status.DONE, f"resumed {node}"


class SimPowerCycle:
    """POWER_CYCLE through the twin node's simulated BMC: off unless enabled, exactly like `IpmiPowerCycle`."""

    kind = ActionKind.POWER_CYCLE

    def __init__(self, twin: Twin, *, enabled: bool = False, off_s: float = 120.0) -> None:
        self.twin, self.enabled, self.off_s = twin, enabled, off_s

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Cut the target node's power and bring it back `off_s` later (or say it would)."""
        node = decision.target.node
        index = self.twin.plan.layout.node_index.get(node)
        if not self.enabled:
            status, detail = Status.REFUSED, POWER_CYCLES_OFF
        elif index is None:
            status, detail = Status.FAILED, f"no BMC is configured for {node}"
        elif dry_run:
            status, detail = Status.DRY_RUN, f"would have power-cycled {node} through its (simulated) BMC"
        else:
            status, detail = Status.DONE, f"power-cycled {node}: {self.twin.power_cycle(index, self.off_s)}"
        return Outcome(decision, status, detail, self.twin.clock.time())
