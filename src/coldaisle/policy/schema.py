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

    do: ActionKind = Field(description="notify, power_cap, sigterm, sigkill or drain")
    after: Seconds = Field(0.0, description="grace since the rule fired, a duration such as `30 s`")
    watts: Watts | None = Field(None, description="power_cap: the limit, a power such as `300 W`")
    fraction: float | None = Field(None, gt=0, le=1, description="power_cap: share of the default limit")
    to_min: bool = Field(False, description="power_cap: the GPU's lowest settable limit")
    group: bool = Field(True, description="sigterm/sigkill: the target's whole process group")
    nodes: Literal["subject", "straggler"] = Field(
        "subject", description="drain: the subject's node(s), or only the stragglers' (job rules)")
    reason: str | None = Field(None, description="text for the drain reason or alert; evidence is appended")

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

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="lower-case, digits, `-` and `_`")
    description: str = Field("", description="why the rule exists, for people and alert summaries")
    scope: Scope = Field(Scope.DEVICE, description="device, process, node or job")
    let: dict[str, str] = Field({}, description="named sub-conditions, per GPU (per process in process rules)")
    when: str = Field(description="the condition")
    for_: Seconds = Field(0.0, alias="for", description="how long `when` must hold before the rule fires")
    clear: str | None = Field(None, description="the condition that ends firing (default: `when` is false)")
    straggler: str | None = Field(None, description="job rules: per-GPU condition naming the GPUs out of step")
    severity: Literal["info", "warning", "critical"] = "warning"
    actions: list[Rung] = Field(min_length=1, description="the escalation ladder")
    cooldown: Seconds = Field(300.0, description="after clearing, how long before the same subject fires again")
    max_actions_per_hour: int = Field(60, ge=1, description="kills and drains this rule may order per hour")
    verdict: Literal["hang", "runaway_memory", "thermal"] | None = Field(
        None, description="what `coldaisle run` calls a job this rule stops, and so its exit code (docs/run.md); "
                          "hang rules are left to run's own --hang-timeout watches")
    resume_after: Seconds | None = Field(
        None, description="a node this rule drained is resumed once the rule has stayed clear this long and a GPU "
                          "preflight passes (none: a person resumes it)")
    enabled: bool = True

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Lemon(_Strict):
    """When a node is a lemon: drained this often within the window (a metric and `coldaisle health` say so)."""

    drains: int = Field(3, ge=1, description="drains within the window that make a node a lemon")
    within: Seconds = Field(30 * 86400.0, description="the window, a duration such as `30 d`")


class Policy(_Strict):
    """A policy file."""

    mode: Literal["dry-run", "enforce"] = Field(
        "dry-run", description="`enforce` acts; `dry-run` decides and audits only (overridden by --enforce)")
    rules: list[Rule] = Field(min_length=1)
    drain_max_share: float = Field(0.2, gt=0, le=1, description="fleet breaker: the share of the fleet that may "
                                   "be out of service (coldaisle's recent drains plus every node down or drained)")
    drain_window: Seconds = Field(3600.0, description="fleet breaker: how long a drain of ours counts as recent, and "
                                                      "how long a tripped breaker stays open")
    drain_reset: Literal["window", "manual"] = Field(
        "window", description="fleet breaker: a tripped breaker closes when the window passes, or only on "
                              "`coldaisle agent reset --breaker`")
    max_resumes_per_day: int = Field(2, ge=0, description="healing: a node coldaisle resumed this often in 24 h "
                                                          "stays drained, and its reason says why")
    lemon: Lemon = Field(default_factory=Lemon, description="when a node counts as a lemon")
    fleet_size: int | None = Field(None, ge=1, description="no longer used: the fleet breaker counts the nodes the "
                                                           "scheduler lists (accepted so older policy files load)")
