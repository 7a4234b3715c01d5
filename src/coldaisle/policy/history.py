"""A bounded ring of past values for the columns that windowed functions (rate, time_to...) need."""

from __future__ import annotations

import numpy as np

from coldaisle.telemetry.frame import Frame


class History:
    """Keeps `capacity` samples of selected per-device columns; no allocation per sample once sized."""

    def __init__(self, columns: dict[str, float], interval_s: float = 1.0, max_samples: int = 86_400) -> None:
        longest = max(columns.values(), default=0.0)
        self.interval_s = max(interval_s, 1e-3)
        self.capacity = int(min(max_samples, np.ceil(longest / self.interval_s) + 3))
        self.columns = sorted(columns)
        self.t = np.full(self.capacity, np.nan)
        self.data: dict[str, np.ndarray] = {}
        self.head = 0  # next slot
        self.count = 0
        self.n = -1
        self._idx_cache: dict[tuple[object, float], tuple[np.ndarray, np.ndarray]] = {}
        # per column: the last array appended, and since when the same read-only array has been appended
        self._last: dict[str, np.ndarray] = {}
        self._same_since: dict[str, float] = {}

    def append(self, frame: Frame, values: dict[str, np.ndarray]) -> None:
        """Store this sample's values of the tracked columns (resets if the device count changes)."""
        if not self.columns:
            return
        n = len(frame)
        if n != self.n:
            self.n, self.count, self.head = n, 0, 0
            self.data = {c: np.full((self.capacity, n), np.nan) for c in self.columns}
            self._last.clear()
        now = frame.monotonic
        for c in self.columns:
            v = values[c]
            if v is not self._last.get(c) or v.flags.writeable:  # a read-only array never changes: same values
                self._last[c], self._same_since[c] = v, now
            self.data[c][self.head] = v
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

    def steady(self, column: str, seconds: float, now: float, min_samples: int = 2) -> np.ndarray | None:
        """The column's values when they have not changed over the whole window (at least `min_samples`
        samples in it), else None.

        Unchanged is known without comparing: the same read-only array was appended every time (the twin hands
        out an unchanged column so). A windowed function over a steady column is then known at once: no
        change, no slope."""
        since = self._same_since.get(column)
        if since is None or since > now - seconds - 1e-9 or self.count < min_samples:
            return None  # the column changed inside the window (the common case for a live reading)
        first = self._first_at(now - seconds - 1e-9)
        if self.count - first < min_samples:
            return None
        return self._last[column]

    def _slot(self, k: int) -> int:
        """Ring slot of the k-th oldest sample."""
        return (self.head - self.count + k) % self.capacity

    def _first_at(self, t0: float) -> int:
        """The position (0 = oldest) of the first sample at or after `t0`: where the sampling interval puts it
        when the samples came on time (checked), else a binary search over the ring."""
        k, t, cap, base = self.count, self.t, self.capacity, self.head - self.count
        if k:
            guess = max(k - 1 - int((t[(base + k - 1) % cap] - t0) // self.interval_s), 0)
            if 0 <= guess < k and t[(base + guess) % cap] >= t0 and (guess == 0 or t[(base + guess - 1) % cap] < t0):
                return guess
        lo, hi = 0, k
        while lo < hi:
            mid = (lo + hi) // 2
            if t[(self.head - self.count + mid) % self.capacity] < t0:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def ends(self, column: str, seconds: float, now: float) -> tuple[float, float, np.ndarray, np.ndarray] | None:
        """(t_first, t_last, x_first, x_last) of the window without copying it (None: fewer than 2 samples)."""
        k = self.count
        if k < 2:
            return None
        first = self._first_at(now - seconds - 1e-9)
        if first >= k - 1:
            return None
        a, b = self._slot(first), self._slot(k - 1)
        data = self.data[column]
        return float(self.t[a]), float(self.t[b]), data[a], data[b]


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
