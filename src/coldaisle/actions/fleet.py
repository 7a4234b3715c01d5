"""The fleet breaker: one agent per node, and still never more than `drain_max_share` of the fleet drained.

Each agent drains only its own node, so a breaker that counts its own drains never trips: a wrong rule shipped
to 512 nodes would drain 512. The truth is the scheduler's own state, which every agent can read: before a
drain the breaker reads every node (Slurm: `scontrol show node`, Kubernetes: the node list, the twin: its
state) and counts the nodes coldaisle drained within `drain_window` plus every node already unavailable for
another reason (down, drained by a person). One more drain over `ceil(drain_max_share * fleet)` is refused,
and so is any drain while the scheduler cannot be read (fail safe). Agents that decide in the same second
race; after draining, an agent waits `settle_s` (until the scheduler's clock is past its own drain), reads
again and ranks coldaisle's recent drains by (time, node): the oldest win, and an agent whose drain ranks
over the cap undoes it. A tripped breaker stays open until the window passes (or, with `drain_reset: manual`,
until `coldaisle agent reset --breaker`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from coldaisle.errors import ColdaisleError
from coldaisle.telemetry.clock import Clock


class FleetUnreadable(ColdaisleError):
    """The scheduler's node list could not be read: no drain can be counted, so none is allowed."""


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node as the scheduler shows it: out of service or not, and whether (and since when) coldaisle drained it."""

    name: str
    unavailable: bool  # drained, draining, down, cordoned: no new work lands on it
    ours: bool = False  # the drain or cordon carries coldaisle's tag
    since: float | None = None  # UTC epoch seconds of our drain, as the scheduler recorded it
    reason: str = ""  # the drain's reason, as the scheduler shows it


class FleetSource(Protocol):
    """Where the fleet's node states come from (a drain executor that can list its fleet)."""

    def fleet(self) -> Sequence[NodeState]:
        """Every node of the fleet now; raises FleetUnreadable when the scheduler does not answer."""
        ...


@dataclass(frozen=True, slots=True)
class FleetCount:
    """What one reading of the fleet said, for the audit log and the refusal's text."""

    fleet: int
    limit: int
    coldaisle_recent: int  # nodes coldaisle drained within the window that are still out of service
    other_unavailable: int  # out of service for any other reason (down, a person's drain, an older drain of ours)

    def as_dict(self) -> dict[str, int]:
        """The counts as audit fields."""
        return {"fleet": self.fleet, "limit": self.limit, "coldaisle_recent": self.coldaisle_recent,
                "other_unavailable": self.other_unavailable}

    def text(self) -> str:
        """One phrase a person reads."""
        return (f"{self.coldaisle_recent} drained by coldaisle in the window + {self.other_unavailable} otherwise "
                f"out of service, limit {self.limit} of {self.fleet} nodes")


@dataclass
class FleetBreaker:
    """Counts the fleet before a drain and checks its rank after; stays open once tripped (see the module doc)."""

    source: FleetSource
    max_share: float
    window_s: float
    clock: Clock
    manual_reset: bool = False  # True: an open breaker closes only on `coldaisle agent reset --breaker`
    settle_s: float = 2.0  # wait this long after a drain before ranking it (0 where nothing races: the twin)
    opened_at: float | None = None
    last: FleetCount | None = field(default=None)

    def limit(self, fleet: int) -> int:
        """Nodes that may be out of service at once."""
        return max(1, math.ceil(round(self.max_share * fleet, 9)))

    @property
    def open(self) -> bool:
        """True while drains are refused outright (tripped, and the window has not passed or no one reset it)."""
        if self.opened_at is None:
            return False
        if not self.manual_reset and self.clock.time() - self.opened_at >= self.window_s:
            self.opened_at = None
        return self.opened_at is not None

    def reset(self) -> bool:
        """Close the breaker by hand; returns whether it was open."""
        was, self.opened_at = self.opened_at is not None, None
        return was

    def before(self, node: str) -> tuple[str | None, bool]:
        """(why the drain of `node` is refused, or None; whether `node` was in service before it)."""
        if self.open:
            return f"fleet breaker open since {_ago(self.clock.time() - self.opened_at)}; {node} left in service", True  # type: ignore[operator]
        try:
            states = self.source.fleet()
        except FleetUnreadable as exc:
            return f"cannot read the scheduler, so no drain can be counted (fail safe): {exc.message}", True
        me = next((s for s in states if s.name == node), None)
        if me is not None and me.unavailable:
            return None, False  # already out of service: this drain costs the fleet nothing
        count = self._count(states, exclude=node)
        if count.coldaisle_recent + count.other_unavailable + 1 > count.limit:
            return self._trip(f"one more drain would exceed the fleet breaker: {count.text()}; {node} left in "
                              "service"), True
        return None, True

    def after(self, node: str) -> str | None:
        """Why our fresh drain of `node` must be undone (it ranks over the cap among simultaneous drains), or None."""
        if self.settle_s > 0:
            self.clock.sleep(self.settle_s)
        try:
            states = self.source.fleet()
        except FleetUnreadable as exc:
            return f"cannot read the scheduler after draining, so the drain cannot be confirmed: {exc.message}"
        count = self._count(states)
        now = self.clock.time()
        ours = sorted((s.since if s.since is not None else now, s.name) for s in states
                      if s.unavailable and s.ours and self._recent(s, now))
        allowed = count.limit - count.other_unavailable
        rank = next((i for i, (_, name) in enumerate(ours) if name == node), len(ours))
        if rank < allowed:
            return None
        return self._trip(f"drains raced: {node} ranks {rank + 1} among coldaisle's {len(ours)} recent drains, "
                          f"over the fleet breaker ({count.text()}); its drain is undone, the older ones stay")

    def _count(self, states: Sequence[NodeState], exclude: str | None = None) -> FleetCount:
        now = self.clock.time()
        others = [s for s in states if s.name != exclude]
        recent = sum(1 for s in others if s.unavailable and s.ours and self._recent(s, now))
        down = sum(1 for s in others if s.unavailable) - recent
        self.last = FleetCount(len(states), self.limit(len(states)), recent, down)
        return self.last

    def _recent(self, s: NodeState, now: float) -> bool:
        return s.since is None or now - s.since <= self.window_s  # an undated drain of ours counts as recent

    def _trip(self, why: str) -> str:
        if self.opened_at is None:
            self.opened_at = self.clock.time()
        return why

    def audit_fields(self) -> dict[str, Any]:
        """The last counts, for the audit record of a refusal."""
        return {"breaker_open": self.opened_at is not None, **(self.last.as_dict() if self.last else {})}


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"
