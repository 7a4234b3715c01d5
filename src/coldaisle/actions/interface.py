"""The contracts between the policy engine and the actions: Target, Decision, Outcome, Executor.

The engine turns Frames into Decisions; an executor turns one Decision into one Outcome
(done, failed, refused by safety, dry-run). Every Decision and Outcome goes to the audit log.
Each action kind has a real executor and a simulated one that acts on the twin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from coldaisle.errors import ColdaisleError


class ActionKind(StrEnum):
    """What a rung of an escalation ladder does."""

    NOTIFY = "notify"  # structured log line and/or webhook (Alertmanager-compatible)
    POWER_CAP = "power_cap"  # lower a GPU's power limit; restored when the rule clears
    SIGTERM = "sigterm"  # the process (or its whole group) through a pidfd
    SIGKILL = "sigkill"
    DRAIN = "drain"  # the node, through Slurm or Kubernetes, with a reason tagged as ours
    POWER_CYCLE = "power_cycle"  # the node, through its BMC (IPMI): the last rung for a wedged node; off by default


class Status(StrEnum):
    """How a Decision ended."""

    DONE = "done"
    FAILED = "failed"
    REFUSED = "refused"  # a safety rule said no (never-kill list, circuit breaker, rate limit)
    DRY_RUN = "dry_run"  # decided and audited, nothing done


@dataclass(frozen=True, slots=True)
class Target:
    """What an action acts on. `pid` with `starttime` identifies a process across PID reuse."""

    node: str
    device: int | None = None  # index in the node's Frame (NVML index on a real node)
    uuid: str | None = None
    pid: int | None = None
    starttime: int | None = None  # /proc/PID/stat field 22, clock ticks since boot
    job: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready mapping (flat values: no deep copy, the audit log writes it at once)."""
        return {"node": self.node, "device": self.device, "uuid": self.uuid, "pid": self.pid,
                "starttime": self.starttime, "job": self.job}

    def label(self) -> str:
        """`node-gpu-88/gpu2 pid 12851 job 4242` for people and audit lines."""
        parts = [self.node + (f"/gpu{self.device}" if self.device is not None else "")]
        if self.pid is not None:
            parts.append(f"pid {self.pid}")
        if self.job:
            parts.append(f"job {self.job}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's verdict for one target: which rule, which rung, what to do and why."""

    time: float  # UTC epoch seconds
    rule: str
    severity: str
    action: ActionKind
    target: Target
    step: int = 0  # rung of the escalation ladder
    params: dict[str, Any] = field(default_factory=dict)  # watts, reason, webhook ...
    evidence: dict[str, Any] = field(default_factory=dict)  # metric values that made the condition true
    restore: bool = False  # undo a previous action (power cap restore when the rule clears)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready mapping for the audit log."""
        return {"time": _iso(self.time), "rule": self.rule, "severity": self.severity, "action": str(self.action),
                "target": self.target.to_json(), "step": self.step, "params": dict(self.params),
                "evidence": dict(self.evidence), "restore": self.restore}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an executor did with a Decision."""

    decision: Decision
    status: Status
    detail: str
    time: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready mapping for the audit log."""
        return {"time": _iso(self.time), "status": str(self.status), "detail": self.detail,
                "rule": self.decision.rule, "action": str(self.decision.action),
                "target": self.decision.target.to_json(), "step": self.decision.step,
                "restore": self.decision.restore}


class ActionError(ColdaisleError):
    """An action could not be carried out (reported as a FAILED Outcome, never raised out of the loop)."""


@runtime_checkable
class Executor(Protocol):
    """Carries out one kind of action. Must not raise: failures are Outcomes."""

    kind: ActionKind

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Do (or, with dry_run, only describe) what the Decision says."""
        ...


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
