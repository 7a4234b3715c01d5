"""Every rule's condition at every step of a chunk at once: the steps where the engine has work, and how many
GPUs were over each rule's threshold.

The compiled conditions are closures over a context (`policy.context.EvalContext`); `Steps` answers the same
calls with one row per step, so one numpy pass over a chunk gives each rule's `when` for every step and
subject. The operations are the per-step ones applied row by row (elementwise arithmetic, groupings summed in
the same order, windowed functions over the same samples), so a step the screen finds quiet is one where the
agent's engine would find every condition false: the engine is run only where a condition holds, or while a
rule is pending or firing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coldaisle.backtest.chunk import Chunk
from coldaisle.backtest.fleet import Fleet
from coldaisle.backtest.samples import ffill
from coldaisle.policy.functions import reduce_groups
from coldaisle.policy.history import time_to, windowed
from coldaisle.policy.loader import CompiledRule
from coldaisle.policy.step import XID_MEMORY_S
from coldaisle.telemetry.frame import ThrottleReason

#: the reasons `thermal_throttled` and `power_capped` read (as policy.context reads them; a test holds them equal)
_THERMAL = np.uint64(ThrottleReason.SW_THERMAL_SLOWDOWN | ThrottleReason.HW_THERMAL_SLOWDOWN)
_POWER = np.uint64(ThrottleReason.SW_POWER_CAP)

_STATIC = {"slowdown_c": "slowdown_temperature_c", "shutdown_c": "shutdown_temperature_c",
           "power_default_limit_w": "power_default_limit_w", "power_min_limit_w": "power_min_limit_w",
           "power_max_limit_w": "power_max_limit_w"}


class Steps:
    """The context's interface over all steps of a chunk: a column is (step, subject)."""

    def __init__(self, chunk: Chunk, fleet: Fleet, memory_total: np.ndarray) -> None:
        self.chunk, self.fleet = chunk, fleet
        self.t = len(chunk.times)
        self.devices = len(fleet.devices)
        self.n = (self.t, self.devices)  # `np.full(ctx.n, x)` is one value per step and GPU
        self.memory_total = memory_total
        self._cache: dict[str, np.ndarray] = {}

    def size(self, level: str) -> int:
        """Subjects per step at a level."""
        return {"device": self.devices, "node": len(self.fleet.node_names), "job": len(self.chunk.jobs)}.get(level, 0)

    def column(self, name: str, level: str) -> np.ndarray:
        """A named column, one row per step."""
        hit = self._cache.get(name)
        if hit is None:
            hit = self._cache[name] = self._read(name, level)
        return hit

    def _read(self, name: str, level: str) -> np.ndarray:
        c = self.chunk
        if level in ("node", "job"):
            values = c.node_values if level == "node" else c.job_values
            return values.get(name, np.full((self.t, self.size(level)), np.nan))
        if name in c.columns:
            return c.columns[name]
        if name in _STATIC:
            facts = np.array([getattr(d, _STATIC[name]) for d in self.fleet.devices], dtype=float)
            return np.broadcast_to(facts, self.n)
        derive = _DERIVED.get(name)
        return derive(self) if derive else np.full(self.n, np.nan)

    def _reasons(self, bits: np.uint64) -> np.ndarray:
        throttle = self.chunk.throttle
        reasons = np.zeros(self.n, np.uint64) if throttle is None else throttle
        return ((reasons & bits) != 0).astype(float)

    def _xid(self) -> np.ndarray:
        """Each GPU's last Xid while it is at most five minutes old (the agent's Xid memory)."""
        c = self.chunk
        start = np.full(self.devices, np.nan)
        code = ffill(c.xid, start)
        seen = ffill(np.where(np.isnan(c.xid), np.nan, c.times[:, None]), start)
        with np.errstate(invalid="ignore"):
            return np.where(c.times[:, None] - seen <= XID_MEMORY_S, code, np.nan)

    def broadcast(self, value: Any, level: str) -> np.ndarray:
        """A constant at every step for every subject."""
        return np.full((self.t, self.size(level)), value)

    def gather(self, values: np.ndarray, src: str, dst: str) -> np.ndarray:
        """A node's or a job's value onto each of its GPUs, per step."""
        values = np.asarray(values)
        blank = False if values.dtype == bool else np.nan
        if src == "node":
            return values[:, self.fleet.node_of]
        index = self.chunk.job_of
        if values.shape[1] == 0:
            return np.full(index.shape, blank, dtype=values.dtype if values.dtype == bool else float)
        out = np.take_along_axis(values, np.maximum(index, 0), axis=1)
        return np.where(index < 0, blank, out) if np.count_nonzero(index < 0) else out

    def reduce(self, op: str, values: np.ndarray, scope: str) -> np.ndarray:
        """Aggregate GPUs per node or job, per step (each group summed in the agent's order)."""
        width = self.size(scope)
        groups = np.broadcast_to(self.fleet.node_of, self.n) if scope == "node" else self.chunk.job_of
        flat = np.where(groups >= 0, groups + width * np.arange(self.t)[:, None], -1)
        values = np.broadcast_to(np.asarray(values), self.n)
        return reduce_groups(op, values.ravel(), flat.ravel(), self.t * width).reshape(self.t, width)

    def _first(self, seconds: float) -> np.ndarray:
        """Per step, the first step inside the window (the history's own `t >= now - seconds` test)."""
        times = self.chunk.times
        return np.searchsorted(times, times - seconds - 1e-9, side="left")

    def windowed(self, kind: str, column: str, seconds: float) -> np.ndarray:
        """rate/delta over each step's window ends; avg_over/max_over per step over its samples."""
        x, times, first = self.column(column, "device"), self.chunk.times, self._first(seconds)
        last = np.arange(self.t)
        if kind in ("rate", "delta"):
            ok = (first < last)[:, None]
            change = x[last] - x[first]
            if kind == "rate":
                change = change / np.where(first < last, times[last] - times[first], 1.0)[:, None]
            return np.where(ok, change, np.nan)
        return np.stack([windowed(kind, times[f:i + 1], x[f:i + 1]) for i, f in enumerate(first.tolist())])

    def time_to(self, column: str, limit: Any, seconds: float) -> np.ndarray:
        """time_to() per step over each step's window (the agent's own least-squares fit)."""
        x, times, first = self.column(column, "device"), self.chunk.times, self._first(seconds)
        lim = np.broadcast_to(np.asarray(limit, dtype=float), self.n)
        return np.stack([time_to(times[f:i + 1], x[f:i + 1], lim[i]) for i, f in enumerate(first.tolist())])


_DERIVED = {
    "lost": lambda s: s.chunk.lost.astype(float),
    "thermal_throttled": lambda s: s._reasons(_THERMAL),
    "power_capped": lambda s: s._reasons(_POWER),
    "xid": lambda s: s._xid(),
    "memory_total_bytes": lambda s: np.broadcast_to(s.memory_total, s.n),
    "sample_age_s": lambda s: np.where(np.isinf(s.chunk.age), np.nan, s.chunk.age),
}


def masks(rules: list[CompiledRule], steps: Steps) -> dict[str, np.ndarray]:
    """Each rule's `when`, (step, subject), over a chunk."""
    return {cr.rule.name: np.broadcast_to(np.asarray(cr.when.fn(steps), dtype=bool),
                                          (steps.t, steps.size(str(cr.rule.scope))))
            for cr in rules}


def gpus_over(cr: CompiledRule, mask: np.ndarray, steps: Steps) -> np.ndarray:
    """GPUs whose rule's condition holds, per step (a node's or job's every GPU when it holds for them)."""
    scope = str(cr.rule.scope)
    if scope in ("device", "process"):
        return mask.sum(axis=1)
    if scope == "node":
        per_node = np.bincount(steps.fleet.node_of, minlength=steps.size("node"))
        return mask.astype(float) @ per_node
    jobs = steps.chunk.job_of
    width = steps.size("job")
    flat = np.where(jobs >= 0, jobs + width * np.arange(steps.t)[:, None], -1).ravel()
    per_job = np.bincount(flat[flat >= 0], minlength=steps.t * width).reshape(steps.t, width)
    return (mask * per_job).sum(axis=1)
