"""After every evaluated step: the engine's firing subjects become Firings, its Decisions their would-be actions.

Safety is the agent's: drains and power cycles go past the fleet breaker (`actions.fleet.FleetBreaker`), which
reads the fleet as this backtest has it (`WouldBeFleet`: the nodes in the window, the drains it would have made,
nodes whose every GPU is lost); a destructive rung the rule's hourly limit holds back is reported as held. Kills
have no target in metrics (Prometheus holds no PIDs): the rung is reported as reached.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from coldaisle.actions.fleet import FleetBreaker, NodeState
from coldaisle.actions.interface import ActionKind, Decision
from coldaisle.backtest.fleet import Fleet
from coldaisle.backtest.result import Action, Firing, RuleTotal
from coldaisle.policy.context import Jobs, Nodes
from coldaisle.policy.engine import Engine, Track
from coldaisle.policy.loader import CompiledRule
from coldaisle.telemetry.frame import Frame

KEEP_ACTIONS = 40  # per firing; the rest are counted
_KILLS = (ActionKind.SIGTERM, ActionKind.SIGKILL)


def _target(d: Decision, frame: Frame) -> str:
    """`node-gpu-88/gpu2 job slurm:4242`: a GPU as the site names it (its `gpu` index), not its Frame position."""
    t = d.target
    where = t.node
    if t.device is not None and 0 <= t.device < len(frame):
        dev = frame.devices[t.device]
        where = f"{dev.node}/gpu{dev.index}"
    return " ".join([where, *([f"pid {t.pid}"] if t.pid is not None else []), *([f"job {t.job}"] if t.job else [])])


class WouldBeFleet:
    """The fleet as the breaker would have read it: a node this backtest drained stays out of service (no one
    resumes it within the window), and a node whose every GPU is lost is down."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.drained: dict[str, float] = {}
        self.down: set[str] = set()

    def fleet(self) -> list[NodeState]:
        """Every node of the window, as a scheduler would list it."""
        return [NodeState(n, n in self.drained or n in self.down, n in self.drained, self.drained.get(n))
                for n in self.names]

    def observe(self, frame: Frame, nodes: Nodes) -> None:
        """Which nodes are down at this step (every GPU lost)."""
        lost = np.bincount(nodes.of_device, weights=frame.lost, minlength=len(nodes.names))
        gpus = np.bincount(nodes.of_device, minlength=len(nodes.names))
        self.down = {nodes.names[i] for i in np.flatnonzero((gpus > 0) & (lost == gpus)).tolist()}


class Recorder:
    """Firings open while their subject fires; closed (cleared) when the engine lets the subject go."""

    def __init__(self, rules: list[CompiledRule], fleet: Fleet, breaker: FleetBreaker, seen: WouldBeFleet) -> None:
        self.rules = {cr.rule.name: cr for cr in rules}
        self.fleet, self.breaker, self.seen = fleet, breaker, seen
        self.open: dict[tuple[str, Hashable], Firing] = {}
        self.rung_seen: dict[tuple[str, Hashable], int] = {}
        self.held: set[tuple[str, Hashable, int]] = set()
        self.firings: list[Firing] = []
        self.totals = {cr.rule.name: RuleTotal(cr.rule.name, str(cr.rule.scope), cr.rule.severity) for cr in rules}
        self.node_rank = {name: i for i, name in enumerate(fleet.node_names)}
        self.device_of = {dev.uuid or f"{dev.node}/{dev.index}": i for i, dev in enumerate(fleet.devices)}

    def after(self, now: float, engine: Engine, frame: Frame, nodes: Nodes, jobs: Jobs,
              decisions: list[Decision]) -> None:
        """Record one evaluated step."""
        if decisions:
            self.seen.observe(frame, nodes)
        moved: dict[tuple[str, Hashable], range] = {}
        for name, tracks in engine.tracks.items():
            for key, track in tracks.items():
                if track.fired_at is not None:
                    moved[(name, key)] = self._follow(name, key, track, now, frame, nodes, jobs)
        got = self._attach(now, decisions, frame, moved)
        for (name, key), rungs in moved.items():
            self._unreached(name, key, rungs, got, engine.tracks[name][key], now)
        for fkey in [k for k in self.open if k[1] not in engine.tracks[k[0]]]:
            firing = self.open.pop(fkey)
            firing.cleared = True
            del self.rung_seen[fkey]

    def finish(self) -> list[Firing]:
        """Every firing, in the order they fired (those still open end with the window)."""
        return sorted(self.firings, key=lambda f: (f.first, f.rule, f.subject))

    def _follow(self, name: str, key: Hashable, track: Track, now: float, frame: Frame, nodes: Nodes,
                jobs: Jobs) -> range:
        """Open the firing if it is new; the rungs the track passed since the last step."""
        fkey = (name, key)
        firing = self.open.get(fkey)
        if firing is None:
            firing = self.open[fkey] = self._firing(name, key, float(track.fired_at or now), frame, nodes, jobs)
            self.firings.append(firing)
            total = self.totals[name]
            total.firings += 1
            total.nodes.update(firing.nodes)
            self.rung_seen[fkey] = 0
        firing.last = now
        rungs = range(self.rung_seen[fkey], track.next_rung)
        self.rung_seen[fkey] = track.next_rung
        return rungs

    def _firing(self, name: str, key: Hashable, first: float, frame: Frame, nodes: Nodes, jobs: Jobs) -> Firing:
        cr = self.rules[name]
        scope = str(cr.rule.scope)
        base = {"rule": name, "severity": cr.rule.severity, "scope": scope, "first": first, "last": first}
        if scope == "device":
            d = self.device_of[key]
            dev = frame.devices[d]
            job = int(jobs.of_device[d]) if jobs.of_device is not None else -1
            return Firing(subject=f"{dev.node}/gpu{dev.index}", nodes=[dev.node], gpu=dev.index, uuid=dev.uuid,
                          job=jobs.names[job] if job >= 0 else None, **base)
        if scope == "node":
            return Firing(subject=str(key), nodes=[str(key)], **base)
        members = np.flatnonzero(np.asarray(jobs.of_device) == list(jobs.names).index(str(key)))
        names = sorted({nodes.names[int(nodes.of_device[m])] for m in members.tolist()}, key=self.node_rank.get)
        return Firing(subject=str(key), nodes=names, job=str(key), **base)

    def _attach(self, now: float, decisions: list[Decision], frame: Frame,
                moved: dict[tuple[str, Hashable], range]) -> dict[tuple[str, Hashable], set[int]]:
        """Each Decision to its firing, through the agent's safety; which rungs of which firing got one."""
        got: dict[tuple[str, Hashable], set[int]] = {}
        for d in decisions:
            fkey = self._owner(d, frame, moved, got)
            firing = self.open.get(fkey) if fkey else None
            if firing is None or fkey is None:
                continue
            got.setdefault(fkey, set()).add(d.step)
            if not firing.evidence and d.evidence:
                firing.evidence = dict(d.evidence)
            status, detail = self._safety(d, now)
            total = self.totals[d.rule]
            do = f"restore {d.action}" if d.restore else str(d.action)
            total.actions[do] = total.actions.get(do, 0) + 1
            total.refused += status == "refused"
            self._keep(firing, Action(now, d.step, do, _target(d, frame), d.target.node, status, detail))
        return got

    def _owner(self, d: Decision, frame: Frame, moved: dict[tuple[str, Hashable], range],
               got: dict[tuple[str, Hashable], set[int]]) -> tuple[str, Hashable] | None:
        """The firing a Decision belongs to: its GPU, node or job; a node-wide action (a drain) goes to a firing of
        the rule that reached that rung now and is on that node, one Decision each (the engine's order)."""
        scope = str(self.rules[d.rule].rule.scope)
        t = d.target
        if scope == "device" and t.device is not None:
            dev = frame.devices[t.device]
            return d.rule, dev.uuid or f"{dev.node}/{dev.index}"
        if scope == "node":
            return d.rule, t.node
        if t.job:
            return d.rule, t.job
        fitting = [k for k in moved if k[0] == d.rule and d.step in moved[k] and t.node in self.open[k].nodes]
        return next((k for k in fitting if d.step not in got.get(k, set())), fitting[0] if fitting else None)

    def _safety(self, d: Decision, now: float) -> tuple[str, str]:
        if d.restore or d.action not in (ActionKind.DRAIN, ActionKind.POWER_CYCLE):
            return "would act", ""
        why, _ = self.breaker.before(d.target.node)
        if why is not None:
            return "refused", why
        if d.action == ActionKind.DRAIN:
            self.seen.drained.setdefault(d.target.node, now)
        return "would act", ""

    def _unreached(self, name: str, key: Hashable, rungs: range, got: dict[tuple[str, Hashable], set[int]],
                   track: Track, now: float) -> None:
        """Rungs passed without a Decision: held back by the hourly limit, or with no target in metrics."""
        cr, firing = self.rules[name], self.open[(name, key)]
        node = (firing.nodes or [""])[0]
        for i in [*rungs, *track.waiting]:
            rung = cr.rule.actions[i]
            if i in got.get((name, key), set()):
                continue
            if i in track.waiting:
                if (name, key, i) not in self.held:
                    self.held.add((name, key, i))
                    self.totals[name].held += 1
                    why = f"max_actions_per_hour ({cr.rule.max_actions_per_hour}) reached"
                    self._keep(firing, Action(now, i, str(rung.do), firing.subject, node, "held back", why))
            elif i in rungs and rung.do in _KILLS:
                why = "Prometheus holds no PIDs; the agent would signal the processes NVML lists on these GPUs"
                self._keep(firing, Action(now, i, str(rung.do), f"the processes on {firing.subject}", node,
                                          "no target in metrics", why))

    @staticmethod
    def _keep(firing: Firing, action: Action) -> None:
        if len(firing.actions) < KEEP_ACTIONS:
            firing.actions.append(action)
        else:
            firing.more_actions += 1
