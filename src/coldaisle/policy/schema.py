"""The policy file: rules with a condition, a `for` duration, a clear condition, a scope, a severity and
an escalation ladder of actions with grace periods, cooldown and a rate limit. Typed, unknown keys refused."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coldaisle.actions.interface import ActionKind
from coldaisle.units import Seconds, Watts


class Scope(StrEnum):
    """What one evaluation of a rule is about."""

    DEVICE = "device"
    PROCESS = "process"
    NODE = "node"
    JOB = "job"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rung(_Strict):
    """One step of the escalation ladder, taken `after` the rule has fired if it still holds."""

    do: ActionKind
    after: Seconds = 0.0
    watts: Watts | None = None  # power_cap: absolute limit
    fraction: float | None = Field(None, gt=0, le=1)  # power_cap: share of the default limit
    to_min: bool = False  # power_cap: the device's minimum limit
    group: bool = True  # sigterm/sigkill: the target's whole process group
    nodes: Literal["subject", "straggler"] = "subject"  # drain: the subject's node(s) or the stragglers'
    reason: str | None = None  # drain/notify text; evidence is appended

    @model_validator(mode="after")
    def _cap_has_level(self) -> Rung:
        if self.do == ActionKind.POWER_CAP and sum(
                x is not None and x is not False for x in (self.watts, self.fraction, self.to_min or None)) != 1:
            raise ValueError("a power_cap rung needs exactly one of watts, fraction or to_min")
        if self.do != ActionKind.POWER_CAP and (self.watts is not None or self.fraction is not None or self.to_min):
            raise ValueError("watts, fraction and to_min only apply to power_cap")
        return self


class Rule(_Strict):
    """One rule. `when` and `clear` are expressions over Frame columns (docs/policy.md)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    scope: Scope = Scope.DEVICE
    let: dict[str, str] = {}
    when: str
    for_: Seconds = Field(0.0, alias="for")
    clear: str | None = None
    straggler: str | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    actions: list[Rung] = Field(min_length=1)
    cooldown: Seconds = 300.0
    max_actions_per_hour: int = Field(60, ge=1)
    enabled: bool = True

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Policy(_Strict):
    """A policy file."""

    mode: Literal["dry-run", "enforce"] = "dry-run"
    rules: list[Rule] = Field(min_length=1)
    drain_max_share: float = Field(0.1, gt=0, le=1, description="circuit breaker: share of the fleet per window")
    drain_window: Seconds = 3600.0
    fleet_size: int = Field(1, ge=1, description="nodes in the fleet, for the drain circuit breaker")
