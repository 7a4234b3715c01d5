"""The agent's last state as a small JSON file, so `coldaisle health` answers in milliseconds without a GPU.

Slurm kills a HealthCheckProgram after 60 s, and NVML on a node whose GPU fell off the bus can hang for
longer than that. So health never touches the GPUs: the agent, which samples them under deadlines anyway,
writes what it saw after every tick (a temporary file, then a rename: a reader never sees half a file),
and health reads that file under a short timeout. `written_at` is real wall time, so a wedged or dead
agent shows up as a stale file even when the agent runs on the simulator's clock.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from coldaisle.errors import ColdaisleError
from coldaisle.policy.step import XID_MEMORY_S

SCHEMA = "coldaisle.state/1"


class StateUnreadable(ColdaisleError):
    """The state file is missing, unreadable, malformed or could not be read in time (Nagios UNKNOWN)."""

    exit_code = 3


@dataclass(frozen=True, slots=True)
class GpuState:
    """One GPU as the agent last saw it (NaN when the driver did not say)."""

    index: int
    uuid: str
    name: str
    lost: bool
    temperature_c: float
    slowdown_c: float
    power_w: float
    memory_used_bytes: float
    memory_total_bytes: float
    sample_age_s: float  # how old the reading is: grows while a probe of this GPU hangs


@dataclass(frozen=True, slots=True)
class XidSeen:
    """An Xid the agent saw, with its age at the time the state was written."""

    device: int
    xid: int
    age_s: float


@dataclass(frozen=True, slots=True)
class RuleState:
    """A policy rule that is pending or firing now."""

    name: str
    severity: str
    pending: int
    firing: int


@dataclass(frozen=True, slots=True)
class AgentState:
    """What the agent knew after its last tick."""

    node: str
    written_at: float  # real UTC epoch seconds (staleness is judged against the real clock)
    sample_time: float  # the agent's clock (simulated time on the twin)
    interval_s: float
    samples: int
    errors: int
    gpus: tuple[GpuState, ...]
    xids: tuple[XidSeen, ...] = ()
    host: Mapping[str, float] = field(default_factory=dict)
    rules: tuple[RuleState, ...] = ()
    pid: int = 0
    #: the node's fault history: "kind:code:window" -> events (e.g. "xid:79:7d": 2), and whether it is a lemon
    history: Mapping[str, int] = field(default_factory=dict)
    lemon: bool = False
    breaker_open: bool = False  # the fleet breaker refuses every drain now
    drain_max_share: float = 0.2  # the policy's fleet breaker, so `coldaisle health --slurm` drains under the same cap
    drain_window_s: float = 3600.0
    schema: str = SCHEMA

    def to_json(self) -> dict[str, Any]:
        """JSON-ready mapping; NaN becomes null (JSON has no NaN)."""
        return _nan_to_none(asdict(self))

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AgentState:
        """Parse what `to_json` wrote; KeyError/TypeError/ValueError on a malformed document."""
        if raw.get("schema") != SCHEMA:
            raise ValueError(f"schema is {raw.get('schema')!r}, expected {SCHEMA!r}")
        return cls(node=str(raw["node"]), written_at=float(raw["written_at"]), sample_time=float(raw["sample_time"]),
                   interval_s=float(raw["interval_s"]), samples=int(raw["samples"]), errors=int(raw["errors"]),
                   gpus=tuple(GpuState(**{k: _num(v) for k, v in g.items()}) for g in raw["gpus"]),
                   xids=tuple(XidSeen(**x) for x in raw.get("xids", ())),
                   host={str(k): _num(v) for k, v in raw.get("host", {}).items()},
                   rules=tuple(RuleState(**r) for r in raw.get("rules", ())), pid=int(raw.get("pid", 0)),
                   history={str(k): int(v) for k, v in raw.get("history", {}).items()},
                   lemon=bool(raw.get("lemon", False)), breaker_open=bool(raw.get("breaker_open", False)),
                   drain_max_share=float(raw.get("drain_max_share", 0.2)),
                   drain_window_s=float(raw.get("drain_window_s", 3600.0)))


def _num(v: Any) -> Any:
    return math.nan if v is None else v


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_state(path: Path, state: AgentState) -> None:
    """Write `state` to `path` atomically (temporary file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state.to_json(), f, separators=(",", ":"))
        os.chmod(tmp, 0o644)  # readable by health checks that do not run as the agent's user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state(path: Path, timeout_s: float = 5.0) -> AgentState:
    """The state at `path`, read on a helper thread so a hung filesystem costs at most `timeout_s`."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["raw"] = json.loads(Path(path).read_bytes())
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=work, name="coldaisle-state-read", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise StateUnreadable(f"reading {path} took longer than {timeout_s:g} s",
                              hint="the filesystem holding the state file is hung")
    if "error" in box:
        exc = box["error"]
        why = "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be read: {exc}"
        raise StateUnreadable(f"agent state {path} {why}",
                              hint="is `coldaisle agent` running here? its state file sits beside its audit log")
    try:
        return AgentState.from_json(box["raw"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateUnreadable(f"agent state {path} is malformed: {type(exc).__name__}: {exc}") from None


class StateWriter:
    """Agent side: after each tick, turn the Frame, host values and rule views into an AgentState file."""

    def __init__(self, path: Path, node: str, *, interval_s: float, severities: Callable[[], Mapping[str, str]],
                 wall: Callable[[], float] = time.time) -> None:
        self.path, self.node, self.interval_s = Path(path), node, interval_s
        self.severities = severities
        self.wall = wall
        self._xids: dict[int, tuple[int, float]] = {}  # device -> (xid, agent-clock time seen)
        self.failures = 0

    def write(self, frame: Any, host: Mapping[str, Sequence[float]], views: Sequence[Any], *, samples: int,
              errors: int, history: Any = None, breaker: Any = None) -> None:
        """Snapshot one tick; an IO error is counted and swallowed (the agent keeps sampling)."""
        for ev in frame.events:
            if ev.kind == "xid" and ev.xid is not None:
                self._xids[int(ev.device)] = (int(ev.xid), float(frame.wall_time))
        try:
            state = self.snapshot(frame, host, views, samples=samples, errors=errors)
            if history is not None:  # agent.exporter.HistoryStats
                state = replace(state, history={":".join(k): n for k, n in sorted(history.counts.items())},
                                lemon=bool(history.lemon))
            if breaker is not None:  # actions.fleet.FleetBreaker
                state = replace(state, breaker_open=breaker.open, drain_max_share=breaker.max_share,
                                drain_window_s=breaker.window_s)
            write_state(self.path, state)
        except OSError:
            self.failures += 1

    def snapshot(self, frame: Any, host: Mapping[str, Sequence[float]], views: Sequence[Any], *, samples: int,
                 errors: int) -> AgentState:
        """The AgentState for this tick (pure apart from the wall clock)."""
        now = float(frame.wall_time)
        sev = self.severities()
        return AgentState(
            node=self.node, written_at=self.wall(), sample_time=now, interval_s=self.interval_s, samples=samples,
            errors=errors, gpus=tuple(_gpu(frame, i) for i in range(len(frame))),
            xids=tuple(XidSeen(d, x, round(now - t, 3)) for d, (x, t) in sorted(self._xids.items())
                       if now - t <= XID_MEMORY_S),
            host={k: float(v[0]) for k, v in host.items() if len(v)},
            rules=tuple(RuleState(v.name, sev.get(v.name, "warning"), v.pending, v.firing) for v in views
                        if v.pending or v.firing),
            pid=os.getpid())


def _gpu(frame: Any, i: int) -> GpuState:
    d = frame.devices[i]
    return GpuState(index=d.index, uuid=d.uuid, name=d.name, lost=bool(frame.lost[i]),
                    temperature_c=float(frame.temperature_c[i]), slowdown_c=float(d.slowdown_temperature_c),
                    power_w=float(frame.power_w[i]), memory_used_bytes=float(frame.memory_used_bytes[i]),
                    memory_total_bytes=float(d.memory_total_bytes), sample_age_s=float(frame.sample_age_s[i]))
