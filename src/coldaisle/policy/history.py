"""A bounded ring of past values for the columns that windowed functions (rate, time_to...) need."""

from __future__ import annotations

import numpy as np

from coldaisle.telemetry.frame import Frame


class History:
    """Keeps `capacity` samples of selected per-device columns; no allocation per sample once sized."""

    def __init__(self, columns: dict[str, float], interval_s: float = 1.0, max_samples: int = 86_400) -> None:
        longest = max(columns.values(), default=0.0)
        self.capacity = int(min(max_samples, np.ceil(longest / max(interval_s, 1e-3)) + 3))
        self.columns = sorted(columns)
        self.t = np.full(self.capacity, np.nan)
        self.data: dict[str, np.ndarray] = {}
        self.head = 0  # next slot
        self.count = 0
        self.n = -1
        self._idx_cache: dict[tuple[object, float], tuple[np.ndarray, np.ndarray]] = {}

    def append(self, frame: Frame, values: dict[str, np.ndarray]) -> None:
        """Store this sample's values of the tracked columns (resets if the device count changes)."""
        if not self.columns:
            return
        n = len(frame)
        if n != self.n:
            self.n, self.count, self.head = n, 0, 0
            self.data = {c: np.full((self.capacity, n), np.nan) for c in self.columns}
        for c in self.columns:
            self.data[c][self.head] = values[c]
        self.t[self.head] = frame.monotonic
        self.head = (self.head + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)
        self._idx_cache.clear()

    def window(self, column: str, seconds: float, now: float) -> tuple[np.ndarray, np.ndarray]:
        """(times, values[k, n]) of samples within `seconds` of `now`, oldest first."""
        key = (now, seconds)
        hit = self._idx_cache.get(key)
        if hit is None:
            idx, t = self._order()
            keep = t >= now - seconds - 1e-9
            hit = self._idx_cache[key] = (t[keep], idx[keep])
        return hit[0], self.data[column][hit[1]]


    def _order(self) -> tuple[np.ndarray, np.ndarray]:
        """Ring slots oldest first and their times; computed once per sample, shared by every window."""
        order = self._idx_cache.get(("order", 0.0))
        if order is None:
            k = self.count
            idx = (self.head - k + np.arange(k)) % self.capacity
            order = self._idx_cache[("order", 0.0)] = (idx, self.t[idx])
        return order

    def ends(self, column: str, seconds: float, now: float) -> tuple[float, float, np.ndarray, np.ndarray] | None:
        """(t_first, t_last, x_first, x_last) of the window without copying it (None: fewer than 2 samples)."""
        k = self.count
        if k < 2:
            return None
        idx, t = self._order()
        first = int(np.searchsorted(t, now - seconds - 1e-9))
        if first >= k - 1:
            return None
        data = self.data[column]
        return float(t[first]), float(t[-1]), data[idx[first]], data[idx[-1]]


def windowed(kind: str, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """rate, delta, avg_over or max_over of samples x[k, n] taken at times t[k]."""
    n = x.shape[1] if x.ndim == 2 else 0
    if t.size < 2:
        return np.full(n, np.nan) if kind in ("rate", "delta") else (x[-1] if t.size else np.full(n, np.nan))
    if kind == "delta":
        return x[-1] - x[0]
    if kind == "rate":
        return (x[-1] - x[0]) / (t[-1] - t[0])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(x, axis=0) if kind == "avg_over" else np.nanmax(x, axis=0)


def time_to(t: np.ndarray, x: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Seconds until x reaches `limit` at its least-squares slope over the samples; inf if not rising toward it."""
    n = x.shape[1] if x.ndim == 2 else 0
    if t.size < 3:
        return np.full(n, np.inf)
    tc = t - t.mean()
    with np.errstate(all="ignore"):
        slope = (tc[:, None] * (x - x.mean(axis=0))).sum(axis=0) / (tc * tc).sum()
        left = np.asarray(limit, dtype=float) - x[-1]
        out = np.where((slope > 0) & (left > 0), left / slope, np.inf)
    out[left <= 0] = 0.0
    return out
