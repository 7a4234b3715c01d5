"""What a condition sees: one Frame's columns, host signals per node, jobs, and the recent history.

The context is built once per sample and shared by every rule. Per-device columns come straight from
the Frame (no copies); per-node and per-job values are small arrays; `gather` moves values between
levels (a node's PSI onto each of its GPUs, a GPU's temperature onto each of its processes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from coldaisle.policy.compiler import PureOp
from coldaisle.policy.functions import reduce_groups
from coldaisle.policy.history import History, time_to, windowed
from coldaisle.telemetry.frame import Frame, ThrottleReason

_THERMAL = np.uint64(ThrottleReason.SW_THERMAL_SLOWDOWN | ThrottleReason.HW_THERMAL_SLOWDOWN)
_POWER = np.uint64(ThrottleReason.SW_POWER_CAP)
_STATIC_CACHE: dict[tuple[int, str], tuple[object, np.ndarray]] = {}
_STATIC = {"slowdown_c": "slowdown_temperature_c", "shutdown_c": "shutdown_temperature_c",
           "power_default_limit_w": "power_default_limit_w", "power_min_limit_w": "power_min_limit_w",
           "power_max_limit_w": "power_max_limit_w"}


_DERIVED: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_UNKNOWN: dict[int, np.ndarray] = {}


def _derived(name: str, source: np.ndarray, fn: Any) -> np.ndarray:
    """A column computed from a Frame column; the same read-only source array gives back the same answer."""
    hit = _DERIVED.get(name)
    if hit is not None and hit[0] is source:
        return hit[1]
    out = fn(source)
    if not source.flags.writeable:
        out.flags.writeable = False
        _DERIVED[name] = (source, out)
    return out


def _never(x: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """time_to() of a column that does not move: 0 where it is at or past the limit, inf elsewhere (NaN: inf)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.asarray(limit, dtype=float) - x <= 0, 0.0, np.inf)


_NEVER = PureOp(_never)


def _unknown(n: int) -> np.ndarray:
    """n NaNs, read-only and shared: a value the node or job does not report."""
    out = _UNKNOWN.get(n)
    if out is None:
        out = _UNKNOWN[n] = np.full(n, np.nan)
        out.flags.writeable = False
    return out


@dataclass
class Jobs:
    """Which job each device and process belongs to, and per-job values such as progress age."""

    names: Sequence[str] = ()
    of_device: np.ndarray | None = None  # job index per device, -1 = none
    of_process: np.ndarray | None = None  # job index per process row, -1 = none
    values: Mapping[str, np.ndarray] = field(default_factory=dict)  # e.g. job_progress_age_s per job


class FaultCounts(Protocol):
    """A node's durable fault history, as the policy's `count(kind[, code], window)` reads it."""

    def count_many(self, names: Sequence[str], kind: str, code: int | None, seconds: float, now: float) -> np.ndarray:
        """Events of `kind` (and `code`) on each of `names` within `seconds` before `now` (UTC)."""
        ...


@dataclass
class Nodes:
    """Which node each device belongs to (one node on a real host, many in a simulated cluster)."""

    names: Sequence[str]
    of_device: np.ndarray
    values: Mapping[str, np.ndarray] = field(default_factory=dict)  # host signals per node
    history: FaultCounts | None = None  # each node's fault history (none: `count(...)` of it is unknown)


class EvalContext:
    """Columns and helpers the compiled closures call."""

    def __init__(self, frame: Frame, nodes: Nodes, jobs: Jobs, history: History,
                 xid_last: np.ndarray | None = None, process_d_state: np.ndarray | None = None) -> None:
        self.frame, self.nodes, self.jobs, self.history = frame, nodes, jobs, history
        self.now = frame.monotonic
        self.n = len(frame)
        p = frame.processes
        self.proc_device = p.device.astype(np.intp)
        self.proc_node = nodes.of_device[self.proc_device] if len(p) else np.zeros(0, np.intp)
        self.job_of_device = jobs.of_device if jobs.of_device is not None else np.full(self.n, -1)
        self.job_of_process = jobs.of_process if jobs.of_process is not None else np.full(len(p), -1)
        self._xid = xid_last if xid_last is not None else np.full(self.n, np.nan)
        self._dstate = process_d_state if process_d_state is not None else np.zeros(len(p))
        self._cache: dict[str, Any] = {}
        self.keys: dict[str, Any] = {}  # subject identities per scope, filled by the engine

    def size(self, level: str) -> int:
        """How many subjects a level has."""
        if level == "device":
            return self.n
        if level == "process":
            return len(self.frame.processes)
        return len(self.nodes.names) if level == "node" else len(self.jobs.names)

    def column(self, name: str, level: str) -> np.ndarray:
        """A named column at its level."""
        value = self._cache.get(name)
        if value is None:
            value = self._cache[name] = _LEVELS[level](self, name)
        return value

    def _device_column(self, name: str) -> np.ndarray:
        f = self.frame
        if name == "lost":
            return _derived("lost", f.lost, lambda x: x.astype(float))
        if name == "thermal_throttled":
            return _derived(name, f.throttle_reasons, lambda x: ((x & _THERMAL) != 0).astype(float))
        if name == "power_capped":
            return _derived(name, f.throttle_reasons, lambda x: ((x & _POWER) != 0).astype(float))
        if name == "xid":
            return self._xid
        if name in _STATIC:
            return self._static(_STATIC[name])
        return f.column(name)

    def _static(self, attr: str) -> np.ndarray:
        devices = self.frame.devices
        key = (id(devices), attr)
        cached = _STATIC_CACHE.get(key)
        if cached is None or cached[0] is not devices:
            cached = (devices, np.array([getattr(d, attr) for d in devices], dtype=float))
            cached[1].flags.writeable = False  # static for these devices: conditions over it are remembered
            if len(_STATIC_CACHE) > 64:
                _STATIC_CACHE.clear()
            _STATIC_CACHE[key] = cached
        return cached[1]

    def _process_column(self, name: str) -> np.ndarray:
        p = self.frame.processes
        if name == "process_memory_bytes":
            return p.used_memory_bytes
        if name == "process_d_state":
            return np.asarray(self._dstate, dtype=float)
        mem = np.nan_to_num(p.used_memory_bytes)
        per_device = np.bincount(self.proc_device, weights=mem, minlength=self.n)
        count = np.bincount(self.proc_device, minlength=self.n)
        share = np.where(per_device[self.proc_device] > 0, mem / np.maximum(per_device[self.proc_device], 1.0),
                         1.0 / np.maximum(count[self.proc_device], 1))
        return self.frame.power_w[self.proc_device] * share

    def _node_column(self, name: str) -> np.ndarray:
        v = self.nodes.values.get(name)
        return np.asarray(v, dtype=float) if v is not None else _unknown(len(self.nodes.names))

    def _job_column(self, name: str) -> np.ndarray:
        v = self.jobs.values.get(name)
        return np.asarray(v, dtype=float) if v is not None else _unknown(len(self.jobs.names))

    # -- level moves ----------------------------------------------------------------------------
    def broadcast(self, value: Any, level: str) -> np.ndarray:
        """A constant as one value per subject of `level`."""
        return np.full(self.size(level), value)

    def gather(self, values: np.ndarray, src: str, dst: str) -> np.ndarray:
        """Values of level `src` onto the subjects of level `dst` they belong to."""
        index = {("device", "process"): self.proc_device, ("node", "device"): self.nodes.of_device,
                 ("node", "process"): self.proc_node, ("job", "device"): self.job_of_device,
                 ("job", "process"): self.job_of_process}[(src, dst)]
        values = np.asarray(values)
        if values.size == 0:
            return np.zeros(index.shape, dtype=values.dtype) if values.dtype == bool else np.full(index.shape, np.nan)
        out = values[np.maximum(index, 0)]
        if np.count_nonzero(index < 0):
            out = np.where(index < 0, False if values.dtype == bool else np.nan, out)
        return out

    def reduce(self, op: str, values: np.ndarray, scope: str) -> np.ndarray:
        """Aggregate per-device values over each node or job."""
        groups = self.nodes.of_device if scope == "node" else self.job_of_device
        return reduce_groups(op, values, np.asarray(groups), self.size(scope))

    def history_count(self, kind: str, code: int | None, seconds: float) -> np.ndarray:
        """`count(kind[, code], window)` per node from the nodes' fault history (NaN where there is none)."""
        h = self.nodes.history
        if h is None:
            return _unknown(len(self.nodes.names))
        return h.count_many(self.nodes.names, kind, code, seconds, self.frame.wall_time)

    # -- history --------------------------------------------------------------------------------
    def windowed(self, kind: str, column: str, seconds: float) -> np.ndarray:
        """rate/delta/avg_over/max_over of a per-device column."""
        steady = self.history.steady(column, seconds, self.now)
        if steady is not None:  # unchanged over the window: no change (NaN stays NaN), and the values themselves
            return _derived(f"still:{column}", steady, lambda x: x - x) if kind in ("rate", "delta") else steady
        if kind in ("rate", "delta"):  # only the window's two ends matter: no copy of the window
            ends = self.history.ends(column, seconds, self.now)
            if ends is None:
                return np.full(self.n, np.nan)
            t0, t1, x0, x1 = ends
            return (x1 - x0) if kind == "delta" else (x1 - x0) / (t1 - t0)
        t, x = self.history.window(column, seconds, self.now)
        return windowed(kind, t, x)

    def time_to(self, column: str, limit: np.ndarray, seconds: float) -> np.ndarray:
        """Seconds until a per-device column reaches `limit` at its recent slope."""
        steady = self.history.steady(column, seconds, self.now, min_samples=3)
        if steady is not None:  # no slope: there already, or never
            return _NEVER(steady, limit)
        t, x = self.history.window(column, seconds, self.now)
        return time_to(t, x, limit)


_LEVELS = {"device": EvalContext._device_column, "process": EvalContext._process_column,
           "node": EvalContext._node_column, "job": EvalContext._job_column}
