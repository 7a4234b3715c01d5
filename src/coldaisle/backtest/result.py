"""What a backtest found: each firing with its evidence and would-be actions, totals per rule, the rules it could
not evaluate, and how long reading and evaluating took. JSON schema `coldaisle.backtest/1` (docs/policy.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from coldaisle.backtest.fleet import Skipped

SCHEMA = "coldaisle.backtest/1"


def iso(t: float) -> str:
    """UTC ISO-8601 with a Z, to the second."""
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Action:
    """One rung's would-be action for one target, and what safety would have said."""

    at: float
    rung: int
    do: str
    target: str  # node-gpu-88/gpu2 job slurm:4242: as the site names it
    node: str
    status: str  # would act | refused | held back | no target in metrics
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {**asdict(self), "at": iso(self.at)}


@dataclass
class Firing:
    """One subject of one rule, from the step it fired to the last step it was still firing."""

    rule: str
    severity: str
    scope: str
    subject: str  # node-gpu-88/gpu2, node-gpu-88, slurm:4242
    nodes: list[str]
    first: float
    last: float
    gpu: int | None = None  # the site's `gpu` index
    uuid: str | None = None
    job: str | None = None
    cleared: bool = False  # False: still firing when the window ended
    evidence: dict[str, Any] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    more_actions: int = 0  # actions beyond the ones kept

    def to_json(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        out = {k: v for k, v in asdict(self).items() if k not in ("actions", "first", "last")}
        return {**out, "first": iso(self.first), "last": iso(self.last),
                "evidence": {k: (iso(v) if k == "at" else v) for k, v in self.evidence.items()},
                "actions": [a.to_json() for a in self.actions]}


@dataclass
class RuleTotal:
    """One rule over the whole window."""

    rule: str
    scope: str
    severity: str
    firings: int = 0
    nodes: set[str] = field(default_factory=set)
    gpu_hours: float = 0.0  # GPU-hours during which the rule's condition held (its `for` aside)
    actions: dict[str, int] = field(default_factory=dict)  # do -> would-be actions
    refused: int = 0
    held: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {"rule": self.rule, "scope": self.scope, "severity": self.severity, "firings": self.firings,
                "nodes": len(self.nodes), "gpu_hours_over_threshold": round(self.gpu_hours, 3),
                "actions": dict(sorted(self.actions.items())), "refused_by_safety": self.refused,
                "held_by_hourly_limit": self.held}


@dataclass
class Timeline:
    """GPUs over each rule's threshold, per step (kept as float32 for a plot)."""

    times: list[np.ndarray] = field(default_factory=list)
    gpus: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, times: np.ndarray, counts: dict[str, np.ndarray]) -> None:
        """Append one chunk's steps."""
        self.times.append(times.astype(np.float64))
        for rule, c in counts.items():
            self.gpus.setdefault(rule, []).append(c.astype(np.float32))

    def series(self, rule: str) -> tuple[np.ndarray, np.ndarray]:
        """(times, GPUs over threshold) of one rule."""
        t = np.concatenate(self.times) if self.times else np.zeros(0)
        parts = self.gpus.get(rule, [])
        return t, (np.concatenate(parts) if parts else np.zeros(t.size))


@dataclass
class Result:
    """A whole backtest."""

    policy: str
    prometheus: str
    selector: str
    start: float
    end: float
    step: float
    lost_after: float
    gpus: int
    nodes: int
    skipped: list[Skipped]
    firings: list[Firing]
    totals: dict[str, RuleTotal]
    notes: list[str] = field(default_factory=list)
    timeline: Timeline = field(default_factory=Timeline)
    seconds: dict[str, float] = field(default_factory=dict)  # read (Prometheus + decoding), evaluate, total
    steps: dict[str, int] = field(default_factory=dict)  # grid steps, steps the engine evaluated

    def to_json(self) -> dict[str, Any]:
        """The documented JSON answer."""
        return {"schema": SCHEMA, "policy": self.policy, "prometheus": self.prometheus, "selector": self.selector,
                "start": iso(self.start), "end": iso(self.end), "step_s": self.step, "lost_after_s": self.lost_after,
                "fleet": {"gpus": self.gpus, "nodes": self.nodes},
                "not_evaluated": [asdict(s) for s in self.skipped],
                "rules": [t.to_json() for t in self.totals.values()],
                "firings": [f.to_json() for f in self.firings], "notes": self.notes,
                "steps": self.steps, "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}
