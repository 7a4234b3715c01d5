"""Drain a node through Slurm (`scontrol`), tagged as ours, never overriding a person (Kubernetes: k8s.py).

A person's drain carries knowledge we lack (a disk being replaced, a ticket open), so a node
already drained by someone else is left alone and only a drain of ours is ever undone.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from coldaisle.actions.fleet import FleetUnreadable, NodeState
from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status
from coldaisle.telemetry.clock import Clock, RealClock

log = logging.getLogger(__name__)

TAG = "coldaisle:"  # every Slurm reason we write starts with this
MAX_REASON = 200
_UNSAFE = re.compile(r"[^\w .,:;/@%+=()\[\]#<>-]+")
_REASON = re.compile(r"(?:^|\s)Reason=(?P<reason>.*?)(?:\s\[(?P<user>[^\]@\s]+)@(?P<when>[^\]\s]+)\])?"
                     r"(?=\s+(?:Comment|Extra|ResumeAfterTime)=|\s*$)")


def sanitize_reason(text: str, limit: int = MAX_REASON) -> str:
    """One printable line of at most `limit` characters: no newlines, quotes or control characters."""
    flat = _UNSAFE.sub(" ", text.replace("\n", " ").replace("\r", " "))
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


@dataclass(frozen=True, slots=True)
class SlurmNode:
    """What `scontrol show node -o NODE` says about draining: state, flags and the reason with its author."""

    name: str
    state: str  # IDLE+DRAIN, MIXED, DOWN+NOT_RESPONDING ...
    reason: str
    reason_user: str = ""
    reason_time: str = ""

    @property
    def flags(self) -> set[str]:
        """Base state and flags: {"IDLE", "DRAIN"}."""
        return set(self.state.upper().split("+"))

    @property
    def unavailable(self) -> bool:
        """Drained, draining, down or failed: no new job lands on it."""
        return bool(self.flags & {"DRAIN", "DRAINED", "DRAINING", "DOWN", "FAIL", "FAILING"})

    @property
    def ours(self) -> bool:
        """The reason was written by coldaisle."""
        return self.reason.startswith(TAG)

    @property
    def reason_epoch(self) -> float | None:
        """When Slurm recorded the reason (slurmctld's local time, as `[user@2024-05-21T03:04:05]` shows it)."""
        try:
            return datetime.fromisoformat(self.reason_time).timestamp() if self.reason_time else None
        except ValueError:
            return None

    def fleet_state(self) -> NodeState:
        """This node for the fleet breaker."""
        return NodeState(self.name, self.unavailable, self.unavailable and self.ours, self.reason_epoch, self.reason)


def parse_show_node(text: str) -> SlurmNode:
    """Parse one node of `scontrol show node -o`; Reason comes last and may hold spaces and '='."""
    line = next((ln for ln in text.splitlines() if "NodeName=" in ln), "")
    if not line:
        raise ValueError("no NodeName= in scontrol output")
    name = re.search(r"NodeName=(\S+)", line)
    state = re.search(r"\sState=(\S+)", line)
    m = _REASON.search(line)
    reason = (m.group("reason") or "").strip() if m else ""
    return SlurmNode(name=name.group(1) if name else "", state=state.group(1) if state else "UNKNOWN",
                     reason="" if reason == "(null)" else reason,
                     reason_user=(m.group("user") or "") if m else "", reason_time=(m.group("when") or "") if m else "")


def drain_argv(node: str, reason: str, scontrol: str = "scontrol") -> list[str]:
    """argv of the drain: one argument per field, no shell, the reason tagged as ours."""
    return [scontrol, "update", f"NodeName={node}", "State=DRAIN", f"Reason={TAG} {sanitize_reason(reason)}"]


def resume_argv(node: str, scontrol: str = "scontrol") -> list[str]:
    """argv that returns a node we drained to service."""
    return [scontrol, "update", f"NodeName={node}", "State=RESUME"]


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class SlurmDrain:
    """DRAIN executor for Slurm: `scontrol update NodeName=... State=DRAIN Reason="coldaisle: ..."`."""

    kind = ActionKind.DRAIN

    def __init__(self, scontrol: str = "scontrol", runner: Runner = subprocess.run, *, timeout_s: float = 10.0,
                 clock: Clock | None = None) -> None:
        self.scontrol = scontrol
        self.runner = runner
        self.timeout_s = timeout_s
        self.clock = clock or RealClock()

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Drain (or, with `decision.restore`, resume) the target's node; never raises."""
        node = decision.target.node
        try:
            if decision.restore:
                status, detail = self.undrain(node, dry_run=dry_run)
            else:
                status, detail = self.drain(node, _reason(decision), dry_run=dry_run)
        except Exception as exc:
            log.exception("slurm drain of %s failed", node)
            status, detail = Status.FAILED, f"{type(exc).__name__}: {exc}"
        return Outcome(decision, status, detail, self.clock.time())

    def drain(self, node: str, reason: str, *, dry_run: bool = False) -> tuple[Status, str]:
        """Drain `node` unless it is already out of service; a person's drain is never overwritten."""
        current = self.show(node)
        if isinstance(current, str):
            return Status.FAILED, current
        if current.unavailable and not current.ours:
            by = f" ({current.reason_user})" if current.reason_user else ""
            return Status.DONE, f"already drained by a person{by}: {current.state} {current.reason!r}; left alone"
        if current.unavailable:
            return Status.DONE, f"already drained by coldaisle: {current.reason!r}"
        argv = drain_argv(node, reason, self.scontrol)
        if dry_run:
            return Status.DRY_RUN, f"would have drained {node}: {' '.join(argv[1:])}"
        return self._run(argv, f"drained {node} ({argv[-1]})")

    def undrain(self, node: str, *, dry_run: bool = False) -> tuple[Status, str]:
        """Resume `node` only if the drain is ours (its reason starts with "coldaisle:")."""
        current = self.show(node)
        if isinstance(current, str):
            return Status.FAILED, current
        if not current.unavailable:
            return Status.DONE, f"{node} is not drained ({current.state}); nothing to resume"
        if not current.ours:
            return Status.REFUSED, f"{node} was drained by a person ({current.reason!r}); only they resume it"
        if dry_run:
            return Status.DRY_RUN, f"would have resumed {node}"
        return self._run(resume_argv(node, self.scontrol), f"resumed {node}")

    def fleet(self) -> list[NodeState]:
        """Every node Slurm knows, with its state and our drains' times (`scontrol show node -o`, one call)."""
        ok, text = self._call([self.scontrol, "show", "node", "-o"])
        if not ok:
            raise FleetUnreadable(text)
        nodes = [parse_show_node(line) for line in text.splitlines() if "NodeName=" in line]
        if not nodes:
            raise FleetUnreadable("scontrol listed no nodes")
        return [n.fleet_state() for n in nodes]

    def node_state(self, node: str) -> NodeState:
        """One node for the healer (FleetUnreadable when Slurm does not answer)."""
        current = self.show(node)
        if isinstance(current, str):
            raise FleetUnreadable(current)
        return current.fleet_state()

    def retag(self, node: str, reason: str, *, dry_run: bool = False) -> tuple[Status, str]:
        """Change the reason of our drain (the node stays drained), e.g. to say why it is no longer resumed."""
        argv = drain_argv(node, reason, self.scontrol)
        if dry_run:
            return Status.DRY_RUN, f"would have set {node}'s reason: {argv[-1]}"
        return self._run(argv, f"{node} stays drained: {argv[-1]}")

    def show(self, node: str) -> SlurmNode | str:
        """The node's state and reason, or why it could not be read."""
        ok, text = self._call([self.scontrol, "show", "node", "-o", node])
        if not ok:
            return text
        try:
            return parse_show_node(text)
        except ValueError as exc:
            return f"cannot read {node}: {exc}"

    def _run(self, argv: list[str], done: str) -> tuple[Status, str]:
        ok, text = self._call(argv)
        return (Status.DONE, done) if ok else (Status.FAILED, text)

    def _call(self, argv: list[str]) -> tuple[bool, str]:
        """(True, stdout) of a successful call, or (False, why it failed); bounded by `timeout_s`."""
        try:
            cp = self.runner(argv, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except FileNotFoundError:
            return False, f"{argv[0]} not found: is this a Slurm node? (install slurm-client or set its path)"
        except subprocess.TimeoutExpired:
            return False, f"{' '.join(argv[1:3])} timed out after {self.timeout_s:g} s"
        if cp.returncode != 0:
            msg = (cp.stderr or cp.stdout or "").strip().splitlines()
            return False, f"{' '.join(argv[1:3])} exited {cp.returncode}: {msg[-1] if msg else 'no message'}"
        return True, cp.stdout or ""


def _reason(decision: Decision) -> str:
    """The drain reason: the rule's text, else the rule name and the target."""
    return str(decision.params.get("reason") or f"{decision.rule}: {decision.target.label()}")
