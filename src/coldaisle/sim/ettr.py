"""ETTR and goodput: where a training run's wall time went, interruption by interruption.

Wall time runs from the job's first start to now. Each interruption splits its share into: work lost since
the last checkpoint (stop - checkpoint), detection (stop until the last rank is gone: a crash is torn down
in seconds, a hang waits for a watchdog or a policy), restart (until the job runs again) and false drains
(swapping in spares for nodes drained with no fault under them, and the whole cost of a stop the policy
caused with no fault). Everything else is productive; ETTR = productive / wall. The parts add up to the
wall time exactly (tests check it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

CAUSES = ("detection", "restart", "lost_work", "false_drains")


@dataclass
class Interruption:
    """One unexpected stop of the job and what brought it back."""

    cause: str  # the failure category (or timeline fault kind) that stopped it; "policy": the agent, no fault
    node: str  # where that fault struck ("" if none)
    start_s: float  # when the run it ended had started
    stop_s: float  # when the job stopped making progress
    end_s: float  # when its last rank was gone
    checkpoint_s: float  # the checkpoint the next run resumes from
    restart_s: float = math.nan  # when it ran again (NaN: not yet)
    swap_s: float = 0.0  # of the wait, the time spent swapping nodes in
    swapped: tuple[str, ...] = ()
    false_swap: bool = False  # every node swapped was drained with no fault under it


@dataclass
class Ledger:
    """A run's wall time split into productive time and time lost by cause."""

    wall_s: float
    productive_s: float
    lost_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0.0))
    interruptions: int = 0
    by_cause: dict[str, int] = field(default_factory=dict)  # failure category -> interruptions
    lost_by_category: dict[str, float] = field(default_factory=dict)  # failure category -> seconds lost

    @property
    def ettr(self) -> float:
        """Effective training time ratio: productive time over wall time."""
        return self.productive_s / self.wall_s if self.wall_s > 0 else math.nan


def ledger(runs: Sequence[Interruption], first_start: float, now: float, *, current_start: float | None = None,
           stalled_since: float | None = None) -> Ledger:
    """Book `runs` (the interruptions so far, in order) up to `now`. `current_start`: when the run under way
    started (None while the job waits to restart); `stalled_since`: when that run stopped progressing, if it
    has not ended yet (its detection is still running)."""
    if now <= first_start:
        return Ledger(0.0, 0.0)
    out = Ledger(now - first_start, 0.0, interruptions=len(runs))
    for i in runs:
        _book(out, i, now)
    if current_start is not None:
        until = now if stalled_since is None else min(max(stalled_since, current_start), now)
        out.productive_s += until - current_start
        out.lost_s["detection"] += now - until
    return out


def _book(out: Ledger, i: Interruption, now: float) -> None:
    """Add one interruption's productive time and losses (the restart still running counts up to now)."""
    back = now if math.isnan(i.restart_s) else i.restart_s
    lost = {"lost_work": i.stop_s - i.checkpoint_s, "detection": i.end_s - i.stop_s}
    wait = max(back - i.end_s, 0.0)
    swap = min(i.swap_s, wait) if i.false_swap else 0.0
    lost["restart"], lost["false_drains"] = wait - swap, swap
    if i.cause == "policy":  # the policy stopped a healthy job: all of it is the policy's false alarm
        lost = {"false_drains": sum(lost.values())} | dict.fromkeys(("lost_work", "detection", "restart"), 0.0)
    for k, v in lost.items():
        out.lost_s[k] += v
    out.productive_s += i.checkpoint_s - i.start_s
    out.by_cause[i.cause] = out.by_cause.get(i.cause, 0) + 1
    out.lost_by_category[i.cause] = out.lost_by_category.get(i.cause, 0.0) + sum(lost.values())
