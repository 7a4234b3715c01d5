"""A chunk of history: every array over (step, GPU), the context steps that lead it, and how chunks are joined."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Chunk:
    """Steps `times` (rows before `first` are context from before the chunk), every array over (step, GPU)."""

    times: np.ndarray
    first: int
    columns: dict[str, np.ndarray]  # Frame columns the rules read, in the policy's units
    throttle: np.ndarray | None  # clock event reasons bitmask
    lost: np.ndarray
    age: np.ndarray  # seconds since the GPU's newest sample (inf before its first)
    xid: np.ndarray  # the Xid code at the step a new one appeared, else NaN
    job_of: np.ndarray  # job index per GPU (-1: none)
    jobs: list[str]
    job_values: dict[str, np.ndarray] = field(default_factory=dict)  # (step, job)
    node_values: dict[str, np.ndarray] = field(default_factory=dict)  # (step, node)

    def tail(self, rows: int) -> Chunk:
        """The last `rows` steps, the context of the next chunk."""
        cut = slice(max(len(self.times) - rows, 0), None)
        return Chunk(self.times[cut], 0, {k: v[cut] for k, v in self.columns.items()},
                     None if self.throttle is None else self.throttle[cut], self.lost[cut], self.age[cut],
                     self.xid[cut], self.job_of[cut], self.jobs, {k: v[cut] for k, v in self.job_values.items()},
                     {k: v[cut] for k, v in self.node_values.items()})


def widen(a: np.ndarray, width: int) -> np.ndarray:
    """Job columns registered after `a` was built are NaN in it."""
    return a if a.shape[1] >= width else np.hstack([a, np.full((a.shape[0], width - a.shape[1]), np.nan)])


def join(tail: Chunk, new: Chunk) -> Chunk:
    """`tail` (the previous chunk's last steps) in front of `new`; job columns that appeared since are NaN there."""
    cat = np.concatenate
    throttle = None if new.throttle is None or tail.throttle is None else cat([tail.throttle, new.throttle])
    return Chunk(cat([tail.times, new.times]), len(tail.times),
                 {k: cat([tail.columns[k], v]) for k, v in new.columns.items()}, throttle,
                 cat([tail.lost, new.lost]), cat([tail.age, new.age]), cat([tail.xid, new.xid]),
                 cat([tail.job_of, new.job_of]), new.jobs,
                 {k: np.vstack([widen(tail.job_values[k], v.shape[1]), v]) for k, v in new.job_values.items()},
                 {k: cat([tail.node_values[k], v]) for k, v in new.node_values.items()})
