"""Drains that heal: a node coldaisle drained goes back into service once its cause has stayed clear.

NHC is remembered for undraining the nodes that people had drained; this never does. Only a drain whose reason
carries coldaisle's tag and a policy rule's name is considered, and only when that rule has a `resume_after`:
the rule must have held nowhere on the node for that long, and a GPU preflight (the node's GPUs visible,
healthy, cool, no row remap pending) must pass; then the resume goes through the action runner, audited like
every action. Flapping is suppressed: a node resumed `max_resumes_per_day` times in 24 hours stays drained and
its reason says so, for a person. The history of drains and resumes is the node's durable fault history, so
this holds across agent restarts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coldaisle.actions.fleet import FleetUnreadable
from coldaisle.actions.interface import ActionKind, Decision, Target
from coldaisle.agent.faultlog import NodeHistories, NodeHistory
from coldaisle.policy.step import PolicyStep
from coldaisle.telemetry.clock import Clock

RULE = re.compile(r"^coldaisle: (?P<rule>[a-z0-9][a-z0-9_-]*): ")
DAY_S = 86400.0
GpuCheck = Callable[[str], tuple[bool, str]]  # node -> (every GPU passes preflight, why not)


@dataclass
class Healer:
    """Looks at coldaisle's own drains every `every_s` and resumes those whose cause has cleared."""

    step: Callable[[], PolicyStep]  # the running policy step (a SIGHUP reload swaps it)
    drain: Any  # the drain executor: node_state(node), retag(node, reason) (Slurm, Kubernetes or the twin)
    submit: Callable[[Decision], Any]  # the action runner
    histories: NodeHistories
    gpu_check: GpuCheck
    clock: Clock
    note: Callable[..., None]
    every_s: float = 10.0
    _next: float = 0.0
    _clear_since: dict[str, float] = field(default_factory=dict)
    _told: set[tuple[str, str]] = field(default_factory=set)

    def tick(self) -> None:
        """Called after every sample; does its work every `every_s`."""
        now = self.clock.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        drained = self.histories.drained()
        for node in set(self._clear_since) - {node for node, _ in drained}:
            del self._clear_since[node]
        for node, history in drained:
            self._look(node, history)

    def _look(self, node: str, history: NodeHistory) -> None:
        try:
            state = self.drain.node_state(node)
        except FleetUnreadable as exc:
            return self._say(node, "unreadable", f"cannot read {node}'s drain, not resumed now: {exc.message}")
        m = RULE.match(state.reason)
        rule = self._rule(m["rule"]) if m else None
        if not (state.unavailable and state.ours) or rule is None or rule.resume_after is None:
            self._clear_since.pop(node, None)  # not ours, or a person resumes it
            return None
        if node in self.step().held_nodes(rule.name):
            self._clear_since.pop(node, None)  # the cause still holds
            return None
        wall = self.clock.time()
        since = self._clear_since.setdefault(node, wall)
        if wall - since >= rule.resume_after:
            self._resume(node, history, rule, wall)
        return None

    def _rule(self, name: str) -> Any:
        return next((cr.rule for cr in self.step().policy.rules if cr.rule.name == name), None)

    def _resume(self, node: str, history: NodeHistory, rule: Any, wall: float) -> None:
        limit = self.step().policy.policy.max_resumes_per_day
        resumes = history.count("resume", DAY_S, wall)
        if resumes >= limit:
            why = (f"flapping: resumed {resumes} times in 24 h (limit {limit}); left drained for a person "
                   f"(was: {rule.name})")
            status, detail = self.drain.retag(node, why)
            self.note("healing stopped: flapping node stays drained", node=node, rule=rule.name, resumes=resumes,
                      status=str(status), detail=detail)
            return
        ok, why = self.gpu_check(node)
        if not ok:
            self._clear_since[node] = wall  # look again after another resume_after
            self._say(node, "preflight", f"{node} not resumed: its cause ({rule.name}) cleared, but GPU preflight "
                                         f"failed: {why}")
            return
        self._told.discard((node, "preflight"))
        self._clear_since.pop(node, None)
        self.submit(Decision(wall, rule.name, rule.severity, ActionKind.DRAIN, Target(node), restore=True,
                             params={"reason": f"{rule.name}: clear for {rule.resume_after:g} s and GPU preflight "
                                               "passed"}))

    def _say(self, node: str, what: str, text: str) -> None:
        """Audit a reason not to resume once per node and kind, not every look."""
        if (node, what) not in self._told:
            self._told.add((node, what))
            self.note(text, node=node)

