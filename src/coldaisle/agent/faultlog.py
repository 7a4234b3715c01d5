"""A node's fault history: what went wrong on it and what coldaisle did, kept across agent restarts and reboots.

One Xid is an event; the same Xid after every reboot for a week is a card to pull, and three drains in a month
is a lemon node. The policy reads counts over windows (`count(xid, 79, 7 d)`, `count(drain, 30 d)`), so such
escalation is policy, not code. A real node keeps one JSON file (written to a temporary name, fsync'd, then
renamed: a crash leaves the old file or the new one, never half of one), bounded to `max_events` within
`max_age_s`; the twin keeps one history per simulated node in memory. Events are recorded from each Frame
(Xid, GPU lost, uncorrectable ECC, row remaps, PCIe replay bursts), from the kernel log, and from the
actions' outcomes (drains, resumes, power cycles, kills).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from coldaisle.actions.interface import ActionKind, Outcome, Status
from coldaisle.policy.names import HISTORY
from coldaisle.telemetry.frame import Frame

log = logging.getLogger(__name__)
SCHEMA = "coldaisle.node-history/1"
KINDS = tuple(HISTORY)  # what the policy can count (policy/names.py)
WINDOWS = (("1d", 86400.0), ("7d", 7 * 86400.0), ("30d", 30 * 86400.0))  # the exported counts
PCIE_BURST = 50.0  # replays within a minute that make a burst (the default policy's pcie-errors threshold)


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One thing that went wrong (or was done) on the node: when (UTC), what, which code, which GPU."""

    time: float
    kind: str
    code: int | None = None
    device: str = ""  # the GPU's uuid, when the event is about one
    detail: str = ""


class NodeHistory:
    """One node's events, newest last; durable when given a path (see the module doc)."""

    #: bumped by every add to any history: what NodeHistories' per-step answers are cached against
    generation: ClassVar[int] = 0

    def __init__(self, node: str, path: Path | None = None, *, max_events: int = 5000,
                 max_age_s: float = 90 * 86400.0) -> None:
        self.node, self.path, self.max_events, self.max_age_s = node, path, max_events, max_age_s
        self.events: list[FaultEvent] = []
        self._lock = threading.Lock()  # the sampling loop and the action worker both record
        if path is not None:
            self.events = _load(path)

    def add(self, event: FaultEvent) -> None:
        """Record an event (bounded), and persist it when this history has a file; never raises."""
        with self._lock:
            NodeHistory.generation += 1
            self.events.append(event)
            horizon = event.time - self.max_age_s
            self.events = [e for e in self.events if e.time >= horizon][-self.max_events:]
            if self.path is not None:
                try:
                    _save(self.path, self.node, self.events)
                except OSError as exc:  # a full disk must not stop the agent: the next event tries again
                    log.warning("node history not saved to %s: %s", self.path, exc)

    def count(self, kind: str, seconds: float, now: float, code: int | None = None) -> int:
        """Events of `kind` (and `code`) within `seconds` before `now`."""
        since = now - seconds
        return sum(1 for e in self.events if e.kind == kind and e.time >= since and (code is None or e.code == code))

    def drained(self) -> bool:
        """The last drain is newer than the last resume: worth asking the scheduler whether it still holds."""
        for e in reversed(self.events):  # newest last
            if e.kind in ("drain", "resume"):
                return e.kind == "drain"
        return False

    def counts(self, now: float) -> dict[tuple[str, str, str], int]:
        """(kind, code, window) -> events, for every kind and code seen, over the exported windows."""
        keys = sorted({(e.kind, "" if e.code is None else str(e.code)) for e in self.events})
        return {(kind, code, name): self.count(kind, seconds, now, int(code) if code else None)
                for kind, code in keys for name, seconds in WINDOWS}


class NodeHistories(dict[str, NodeHistory]):
    """Every watched node's history by name; answers the policy's `count(kind[, code], window)`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._busy_at: tuple[int, list[tuple[str, NodeHistory]]] = (-1, [])  # (generation, histories with events)
        self._drained_at: tuple[int, list[tuple[str, NodeHistory]]] = (-1, [])  # (generation, drained by us)
        self._index: tuple[Sequence[str] | None, dict[str, int]] = (None, {})  # (names, name -> position)
        #: (kind, code, seconds) -> (names, generation, computed at, valid until, counts)
        self._answers: dict[tuple[str, int | None, float], tuple[Sequence[str], int, float, float, np.ndarray]] = {}

    def count(self, node: str, kind: str, code: int | None, seconds: float, now: float) -> int:
        """Events of `kind` (and `code`) on `node` within `seconds` before `now` (0 for a node without history)."""
        h = self.get(node)
        return h.count(kind, seconds, now, code) if h is not None else 0

    def with_events(self) -> list[tuple[str, NodeHistory]]:
        """(node, history) of the nodes that have any event (most have none), recomputed after an add."""
        if self._busy_at[0] != NodeHistory.generation:
            self._busy_at = (NodeHistory.generation, [(n, h) for n, h in self.items() if h.events])
        return self._busy_at[1]

    def drained(self) -> list[tuple[str, NodeHistory]]:
        """(node, history) of the nodes whose last drain is newer than their last resume, recomputed after an add."""
        if self._drained_at[0] != NodeHistory.generation:
            self._drained_at = (NodeHistory.generation, [(n, h) for n, h in self.with_events() if h.drained()])
        return self._drained_at[1]

    def count_many(self, names: Sequence[str], kind: str, code: int | None, seconds: float, now: float) -> np.ndarray:
        """`count` for each of `names` at once (read-only). The policy asks every step for every node; an answer
        holds until an event is added anywhere or the oldest event it counted leaves the window, so it is kept."""
        key = (kind, code, seconds)
        hit = self._answers.get(key)
        if hit is not None and hit[0] is names and hit[1] == NodeHistory.generation and hit[2] <= now < hit[3]:
            return hit[4]
        if self._index[0] is not names:  # the same list every step: built once (held, so never a reused id)
            self._index = (names, {n: i for i, n in enumerate(names)})
        out, expires = np.zeros(len(names)), np.inf
        for name, h in self.with_events():
            i = self._index[1].get(name)
            if i is None:
                continue
            times = [e.time for e in h.events if e.kind == kind and e.time >= now - seconds
                     and (code is None or e.code == code)]
            if times:
                out[i] = len(times)
                expires = min(expires, min(times) + seconds)
        out.flags.writeable = False
        self._answers[key] = (names, NodeHistory.generation, now, expires, out)
        return out

    def record_outcome(self, outcome: Outcome) -> None:
        """What coldaisle did to a node, when it was done (not dry-run, not refused): drains, resumes, cycles, kills."""
        d = outcome.decision
        kind = _DONE_KINDS.get(d.action) if outcome.status == Status.DONE else None
        if kind == "drain" and d.restore:
            kind = "resume"
        h = self.get(d.target.node)
        if kind is not None and h is not None and not outcome.detail.startswith("already"):
            h.add(FaultEvent(outcome.time, kind, None, d.target.uuid or "", f"{d.rule}: {outcome.detail}"[:300]))

    def lemon(self, node: str, drains: int, within_s: float, now: float) -> bool:
        """Drained at least `drains` times within `within_s`: a node to take out for good and inspect."""
        return self.count(node, "drain", None, within_s, now) >= drains


_DONE_KINDS = {ActionKind.DRAIN: "drain", ActionKind.POWER_CYCLE: "power_cycle", ActionKind.SIGTERM: "kill",
               ActionKind.SIGKILL: "kill"}


class FaultRecorder:
    """Turns each Frame into history events: new Xids, GPUs lost, uncorrectable ECC, row remaps, PCIe bursts."""

    def __init__(self, histories: Mapping[str, NodeHistory]) -> None:
        self.histories = histories
        self._prev: dict[str, np.ndarray] = {}
        self._replays: deque[tuple[float, np.ndarray]] = deque()  # (time, every device's replay total): last minute
        self._burst_at = np.zeros(0)  # per device: when its last burst was recorded

    def observe(self, frame: Frame) -> None:
        """Record what changed since the previous Frame."""
        t, devices = frame.wall_time, frame.devices
        for ev in frame.events:
            if ev.kind == "xid" and ev.xid is not None and 0 <= ev.device < len(devices):
                self._add(devices[ev.device].node, FaultEvent(t, "xid", int(ev.xid), devices[ev.device].uuid))
        for kind, column in (("gpu_lost", "lost"), ("ecc", "ecc_uncorrected_total"),
                             ("row_remap", "remapped_rows_pending"), ("row_remap", "remapped_rows_failure")):
            for i in self._rises(column, getattr(frame, column)):
                self._add(devices[i].node, FaultEvent(t, kind, 79 if kind == "gpu_lost" else None, devices[i].uuid))
        self._bursts(frame)

    def _rises(self, column: str, now: np.ndarray) -> list[int]:
        """Devices whose value went up since the previous Frame (NaN never counts)."""
        prev = self._prev.get(column)
        self._prev[column] = now
        if prev is None or prev is now or prev.shape != now.shape:  # the twin hands out an unchanged column as is
            return []
        with np.errstate(invalid="ignore"):
            return np.flatnonzero(np.asarray(now, dtype=float) > np.asarray(prev, dtype=float)).tolist()

    def _bursts(self, frame: Frame) -> None:
        """PCIe replays: more than PCIE_BURST within a minute is one burst (at most one per device per 10 min)."""
        t, replays = frame.wall_time, np.asarray(frame.pcie_replay_total, dtype=float)
        if self._burst_at.shape != replays.shape:  # the first Frame, or the node's GPUs changed
            self._replays.clear()
            self._burst_at = np.full(replays.shape, -np.inf)
        self._replays.append((t, replays))
        while self._replays[0][0] < t - 60.0:
            self._replays.popleft()
        if self._replays[0][1] is replays:  # the same (unchanged) totals all minute: no rise anywhere
            return
        with np.errstate(invalid="ignore"):
            rise = replays - self._replays[0][1]
            hits = np.flatnonzero((rise > PCIE_BURST) & (t - self._burst_at >= 600.0))
        for i in hits.tolist():
            self._burst_at[i] = t
            d = frame.devices[i]
            self._add(d.node, FaultEvent(t, "pcie_burst", None, d.uuid, f"{rise[i]:.0f} replays in a minute"))

    def _add(self, node: str, event: FaultEvent) -> None:
        history = self.histories.get(node)
        if history is not None:
            history.add(event)


def _load(path: Path) -> list[FaultEvent]:
    """The events of a history file; an unreadable one is set aside (renamed), never silently overwritten."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r}, expected {SCHEMA}")
        return [FaultEvent(float(e["time"]), str(e["kind"]), None if e.get("code") is None else int(e["code"]),
                           str(e.get("device", "")), str(e.get("detail", ""))) for e in data["events"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        aside = path.with_name(f"{path.name}.unreadable")
        with contextlib.suppress(OSError):
            path.replace(aside)
        log.warning("node history %s unreadable (%s); kept as %s, starting a new one", path, exc, aside)
        return []


def _save(path: Path, node: str, events: Iterable[FaultEvent]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"schema": SCHEMA, "node": node,
            "events": [{"time": e.time, "kind": e.kind, "code": e.code, "device": e.device, "detail": e.detail}
                       for e in events]}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
