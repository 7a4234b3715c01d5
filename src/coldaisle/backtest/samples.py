"""Array work on samples over (step, GPU), as Prometheus means them: last values carried over gaps, counter resets,
and the last-Xid gauge read as events."""

from __future__ import annotations

import numpy as np


def reset_corrected(x: np.ndarray, last: np.ndarray, offset: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A counter over (step, GPU) with Prometheus' reset rule: after a drop, the value before it is added from
    there on. `last` and `offset` carry over from the previous chunk; returns (corrected, last, offset)."""
    filled = ffill(x, last)
    prev = np.vstack([last[None, :], filled[:-1]])
    with np.errstate(invalid="ignore"):
        added = np.where(filled < prev, prev, 0.0)
    offsets = offset + np.cumsum(added, axis=0)
    return x + offsets, filled[-1].copy(), offsets[-1].copy()


def xid_events(x: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The last-Xid gauge's new values at the step each appears (NaN elsewhere), and the last value seen. The first
    value a GPU shows is its past, not news; a repeat of the same Xid does not change the gauge and is not seen."""
    filled = ffill(x, last)
    prev = np.vstack([last[None, :], filled[:-1]])
    with np.errstate(invalid="ignore"):
        new = (filled != prev) & ~np.isnan(prev) & (filled > 0)
    return np.where(new, filled, np.nan), filled[-1].copy()


def ffill(x: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Each column's last known value at every step (NaN gaps take the value before; `first` leads)."""
    stacked = np.vstack([first[None, :], x])
    idx = np.where(np.isnan(stacked), 0, np.arange(stacked.shape[0])[:, None])
    np.maximum.accumulate(idx, axis=0, out=idx)
    return stacked[idx, np.arange(stacked.shape[1])][1:]
