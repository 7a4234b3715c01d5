"""The one policy step: Frame -> EvalContext -> History -> Engine -> Decisions.

The node agent runs it on every sample (`agent.loop.Agent.tick`), `coldaisle run` runs it over the supervised
job's GPUs (`guard.policywatch`), and the twin's replay runs it through the agent. Built here once, so the
three see the same columns: the Frame's, the node's and jobs' values, the windows' history, and each device's
most recent Xid (from the Frame's events, or learned from the kernel log) for five minutes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from coldaisle.actions.interface import Decision
from coldaisle.policy.context import EvalContext, Jobs, Nodes
from coldaisle.policy.engine import Engine
from coldaisle.policy.history import History
from coldaisle.policy.loader import LoadedPolicy
from coldaisle.telemetry.frame import Frame

XID_MEMORY_S = 300.0  # how long a device's last Xid stays visible to rules as `xid`


class XidMemory:
    """Each device's most recent Xid code and when it was seen; NaN once it is older than XID_MEMORY_S."""

    def __init__(self, n: int) -> None:
        self.code, self.seen = np.full(n, np.nan), np.full(n, -np.inf)
        self.latest = -np.inf
        self._none = np.full(n, np.nan)  # the answer while no Xid is recent (shared, so read-only)
        self._none.flags.writeable = False

    def note(self, device: int, xid: int, now: float) -> None:
        """Remember Xid `xid` on `device` at monotonic time `now` (out-of-range devices are ignored)."""
        if 0 <= device < self.code.size:
            self.code[device], self.seen[device] = xid, now
            self.latest = max(self.latest, now)

    def column(self, frame: Frame) -> np.ndarray:
        """The `xid` column for this Frame, after noting the Xid events it carries."""
        for ev in frame.events:
            if ev.kind == "xid" and ev.xid is not None:
                self.note(ev.device, ev.xid, frame.monotonic)
        if frame.monotonic - self.latest > XID_MEMORY_S:
            return self._none  # no Xid recent enough to matter: the common case needs no arithmetic
        return np.where(frame.monotonic - self.seen <= XID_MEMORY_S, self.code, np.nan)


class PolicyStep:
    """A policy's engine, history and Xid memory; calling it evaluates one Frame."""

    def __init__(self, policy: LoadedPolicy, *, devices: int, interval_s: float, wall: Callable[[], float],
                 note: Callable[[str], None] | None = None) -> None:
        self.policy = policy
        self.engine = Engine(policy.rules, wall=wall, note=note)
        self.history = History(policy.windows, interval_s)
        self.xids = XidMemory(devices)
        self.last: EvalContext | None = None

    def __call__(self, frame: Frame, nodes: Nodes, jobs: Jobs) -> list[Decision]:
        """The Decisions due at this Frame; the history keeps it for windowed functions."""
        ctx = self.last = EvalContext(frame, nodes, jobs, self.history, xid_last=self.xids.column(frame))
        self.history.append(frame, {c: ctx.column(c, "device") for c in self.history.columns})
        return self.engine.evaluate(ctx)

    def held_nodes(self, rule: str) -> set[str]:
        """The nodes where `rule` holds now (pending or firing, within its clear hysteresis), as of the last Frame."""
        ctx, tracks = self.last, self.engine.tracks.get(rule)
        if ctx is None or not tracks:
            return set()
        names, of_device = ctx.nodes.names, ctx.nodes.of_device
        by_uuid = {d.uuid or f"{d.node}/{d.index}": names[int(of_device[i])] for i, d in enumerate(ctx.frame.devices)}
        jobs = {name: {names[int(n)] for n in of_device[ctx.job_of_device == j]}
                for j, name in enumerate(ctx.jobs.names)}
        out: set[str] = set()
        for key in tracks:
            if isinstance(key, tuple):  # process: (node, pid)
                out.add(str(key[0]))
            elif key in by_uuid:
                out.add(by_uuid[key])
            elif key in names:
                out.add(str(key))
            else:
                out |= jobs.get(key, set())
        return out
