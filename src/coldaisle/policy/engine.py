"""The policy engine: Frames in, Decisions out.

Each rule's condition is evaluated over all its subjects at once (a numpy mask). Python touches only
subjects that are true or already tracked: a `for` timer (pending), firing with an escalation ladder
whose rungs fire `after` their grace while the condition still holds, a clear condition (hysteresis),
a cooldown before the same subject can fire again, power caps restored on clear, and a per-rule
hourly limit on destructive actions. The engine holds no IO: actions are the runner's business.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from coldaisle.actions.interface import ActionKind, Decision, Target
from coldaisle.policy.context import EvalContext
from coldaisle.policy.loader import CompiledRule
from coldaisle.policy.targets import decisions_for

DESTRUCTIVE = {ActionKind.SIGTERM, ActionKind.SIGKILL, ActionKind.DRAIN, ActionKind.POWER_CYCLE}


@dataclass
class Track:
    """One subject of one rule: pending since, firing since, next rung, caps to restore."""

    pending_since: float
    fired_at: float | None = None
    next_rung: int = 0
    waiting: list[int] = field(default_factory=list)  # destructive rungs held back by the hourly limit
    capped: dict[int, str] = field(default_factory=dict)  # device index -> node


@dataclass
class RuleView:
    """A rule's state for /metrics, `coldaisle top` and the demo."""

    name: str
    pending: int
    firing: int
    next_fire_in_s: float | None


class Engine:
    """Evaluates compiled rules against an EvalContext and returns the Decisions to carry out."""

    def __init__(self, rules: list[CompiledRule], *, wall: Callable[[], float],
                 note: Callable[[str], None] | None = None) -> None:
        self.rules = [r for r in rules if r.rule.enabled]
        self.wall = wall
        self.note = note or (lambda _msg: None)
        self.tracks: dict[str, dict[Hashable, Track]] = {r.rule.name: {} for r in self.rules}
        self.cooldown: dict[tuple[str, Hashable], float] = {}
        self._spent: dict[str, deque[float]] = {r.rule.name: deque() for r in self.rules}
        self.errors: dict[str, str] = {}
        self._limited: dict[str, float] = {}
        self._device_keys: tuple[object, tuple[list[Any], dict[Hashable, int]]] = (None, ([], {}))

    def evaluate(self, ctx: EvalContext) -> list[Decision]:
        """All Decisions due at this sample; a rule that fails is reported and skipped."""
        out: list[Decision] = []
        for cr in self.rules:
            try:
                out.extend(self._rule(cr, ctx))
                self.errors.pop(cr.rule.name, None)
            except Exception as exc:  # one bad rule never stops the others
                msg = f"rule {cr.rule.name} failed: {type(exc).__name__}: {exc}"
                if self.errors.get(cr.rule.name) != msg:
                    self.note(msg)
                self.errors[cr.rule.name] = msg
        return out

    def reset(self, rule: str | None, now: float) -> list[Decision]:
        """Forget pending/firing state and cooldowns (of one rule, or all); returns restores for its caps.

        This is `coldaisle agent reset`: a person clears a latched state by hand. KeyError for an unknown rule."""
        names = [r.rule.name for r in self.rules]
        if rule is not None and rule not in names:
            raise KeyError(rule)
        out: list[Decision] = []
        for cr in self.rules:
            if rule is not None and cr.rule.name != rule:
                continue
            for track in self.tracks[cr.rule.name].values():
                out += [Decision(self.wall(), cr.rule.name, cr.rule.severity, ActionKind.POWER_CAP,
                                 Target(node, device), restore=True, params={"reason": "reset by hand"})
                        for device, node in track.capped.items()]
            self.tracks[cr.rule.name].clear()
            self._spent[cr.rule.name].clear()
            for key in [k for k in self.cooldown if k[0] == cr.rule.name]:
                del self.cooldown[key]
        return out

    def views(self, now: float) -> list[RuleView]:
        """Pending and firing counts per rule, and how long until the next pending one fires."""
        views = []
        for cr in self.rules:
            tracks = self.tracks[cr.rule.name].values()
            pending = [t for t in tracks if t.fired_at is None]
            nxt = min((t.pending_since + cr.rule.for_ - now for t in pending), default=None)
            views.append(RuleView(cr.rule.name, len(pending), len(tracks) - len(pending),
                                  None if nxt is None else max(nxt, 0.0)))
        return views

    # -- one rule -------------------------------------------------------------------------------
    def _rule(self, cr: CompiledRule, ctx: EvalContext) -> list[Decision]:
        mask = np.asarray(cr.when.fn(ctx), dtype=bool)
        tracks = self.tracks[cr.rule.name]
        if not tracks and not np.count_nonzero(mask):  # the common case: nothing held, nothing tracked
            return []
        keys, index = self._keys(cr.rule.scope, ctx)
        out: list[Decision] = []
        for i in np.flatnonzero(mask).tolist():
            self._hold(cr, ctx, tracks, keys[i], i, out)
        if tracks:
            self._release(cr, ctx, tracks, mask, index, out)
        return out

    def _release(self, cr: CompiledRule, ctx: EvalContext, tracks: dict[Hashable, Track], mask: np.ndarray,
                 index: dict[Hashable, int], out: list[Decision]) -> None:
        """Tracked subjects whose condition no longer holds: forget the pending, clear the firing (hysteresis)."""
        clear = None
        for key in self._released(tracks, mask, index):
            i = index.get(key)
            if i is None or tracks[key].fired_at is None:
                tracks.pop(key)  # the subject is gone (process ended, device vanished), or was only pending
                continue
            if clear is None:
                clear = np.asarray(cr.clear.fn(ctx), dtype=bool) if cr.clear else ~mask
            if clear[i]:
                self._clear(cr, ctx, tracks.pop(key), key, out)
            # between `when` and `clear` the rule stays firing (its caps hold) but does not escalate

    @staticmethod
    def _released(tracks: dict[Hashable, Track], mask: np.ndarray, index: dict[Hashable, int]) -> list[Hashable]:
        """Tracked keys that are gone or no longer match: a lookup each for a few, one gather for many."""
        if len(tracks) <= 32:
            return [k for k in tracks if (i := index.get(k)) is None or not mask[i]]
        tracked = list(tracks)
        where = np.fromiter((index.get(k, -1) for k in tracked), np.intp, len(tracked))
        held = np.zeros(where.size, bool)
        known = where >= 0
        held[known] = mask[where[known]]
        return [tracked[j] for j in np.flatnonzero(~held).tolist()]

    def _keys(self, scope: str, ctx: EvalContext) -> tuple[list[Any], dict[Hashable, int]]:
        """Subject identities and their positions, built once per sample and scope (devices: once per set)."""
        cached = ctx.keys.get(scope)
        if cached is None:
            if scope == "device" and self._device_keys[0] is ctx.frame.devices:
                cached = self._device_keys[1]
            else:
                keys = subject_keys(scope, ctx)
                cached = (keys, {k: i for i, k in enumerate(keys)})
                if scope == "device":
                    self._device_keys = (ctx.frame.devices, cached)
            ctx.keys[scope] = cached
        return cached

    def _hold(self, cr: CompiledRule, ctx: EvalContext, tracks: dict[Hashable, Track], key: Hashable, i: int,
              out: list[Decision]) -> None:
        now = ctx.now
        track = tracks.get(key)
        if track is not None and track.fired_at is not None and (
                track.next_rung >= len(cr.rule.actions)
                or now - track.fired_at < cr.rule.actions[track.next_rung].after - 1e-9) and (
                not track.waiting or self._full(cr, now)):
            return  # firing, and no rung due (held-back rungs wait while the hourly limit is still spent): the
            # common case for a long-held cap, and for the ranks of a fleet-wide hang past a kill rule's limit
        if track is None:
            if self.cooldown.get((cr.rule.name, key), -np.inf) > now:
                return
            track = tracks[key] = Track(pending_since=now)
        if track.fired_at is None and now - track.pending_since >= cr.rule.for_ - 1e-9:
            track.fired_at = now
        if track.fired_at is not None:
            self._ladder(cr, ctx, track, i, out)

    def _ladder(self, cr: CompiledRule, ctx: EvalContext, track: Track, i: int, out: list[Decision]) -> None:
        rungs = cr.rule.actions
        assert track.fired_at is not None
        due = list(track.waiting)
        while track.next_rung < len(rungs) and ctx.now - track.fired_at >= rungs[track.next_rung].after - 1e-9:
            due.append(track.next_rung)
            track.next_rung += 1
        track.waiting = []
        for step in due:
            rung = rungs[step]
            decisions = decisions_for(cr, rung, step, ctx, i, self.wall())
            if decisions and rung.do in DESTRUCTIVE and not self._allow(cr, ctx.now):
                track.waiting.append(step)  # over the hourly limit: retried each sample, later rungs go on
                continue
            for d in decisions:  # a rung with nothing left to act on (the process already exited) costs nothing
                if d.action == ActionKind.POWER_CAP and d.target.device is not None:
                    track.capped[d.target.device] = d.target.node
                out.append(d)

    def _clear(self, cr: CompiledRule, ctx: EvalContext, track: Track, key: Hashable, out: list[Decision]) -> None:
        self.cooldown[(cr.rule.name, key)] = ctx.now + cr.rule.cooldown
        for device, node in track.capped.items():
            dev = ctx.frame.devices[device] if device < ctx.n else None
            out.append(Decision(self.wall(), cr.rule.name, cr.rule.severity, ActionKind.POWER_CAP,
                                Target(node, device, dev.uuid if dev else None), restore=True,
                                params={"reason": "condition cleared"}))

    def _allow(self, cr: CompiledRule, now: float) -> bool:
        """Spend one of the rule's destructive actions this hour; False (and a note, hourly) when none is left."""
        if self._full(cr, now):
            return False
        self._spent[cr.rule.name].append(now)
        return True

    def _full(self, cr: CompiledRule, now: float) -> bool:
        """Whether the rule has spent its destructive actions for the last hour (noted once an hour)."""
        spent = self._spent[cr.rule.name]
        while spent and spent[0] <= now - 3600.0:
            spent.popleft()
        if len(spent) < cr.rule.max_actions_per_hour:
            return False
        if self._limited.get(cr.rule.name, -np.inf) <= now - 3600.0:
            self.note(f"rule {cr.rule.name}: hourly action limit ({cr.rule.max_actions_per_hour}) reached; "
                      "further kills and drains suppressed for up to an hour")
            self._limited[cr.rule.name] = now
        return True


def subject_keys(scope: str, ctx: EvalContext) -> list[Any]:
    """Stable identities of the rule's subjects: GPU uuid, (node, pid), node name, or job name."""
    if scope == "device":
        return [d.uuid or f"{d.node}/{d.index}" for d in ctx.frame.devices]
    if scope == "process":
        p = ctx.frame.processes
        nodes = ctx.nodes.names
        return [(nodes[int(n)], int(pid)) for n, pid in zip(ctx.proc_node, p.pid, strict=True)]
    if scope == "node":
        return list(ctx.nodes.names)
    return list(ctx.jobs.names)


def iso(t: float) -> str:
    """Short UTC time for reasons: 2024-05-21T03:04:12Z."""
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


