"""The backtest: find what the rules need, read the window chunk by chunk, screen each chunk vectorised over time,
and run the agent's policy step (`policy.step.PolicyStep`: the same engine, `for`/`clear`, windows, ladders and
hourly limits) at the steps where a rule has something to do, with the drain circuit breaker in front."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from coldaisle.actions.fleet import FleetBreaker
from coldaisle.backtest import sources as S
from coldaisle.backtest.chunk import Chunk
from coldaisle.backtest.fleet import Fleet, Needs, discover, find_needs
from coldaisle.backtest.frames import FrameMaker
from coldaisle.backtest.load import Loader
from coldaisle.backtest.mapping import SiteNames
from coldaisle.backtest.prom import Prometheus, matchers, selector
from coldaisle.backtest.record import Recorder, WouldBeFleet
from coldaisle.backtest.result import Result, Timeline
from coldaisle.backtest.screen import Steps, gpus_over, masks
from coldaisle.errors import ColdaisleError
from coldaisle.policy.loader import CompiledRule, LoadedPolicy
from coldaisle.policy.step import XID_MEMORY_S, PolicyStep


@dataclass(frozen=True)
class Window:
    """What to read: [start, end] every `step` seconds, the site's selector, when a silent GPU counts as lost."""

    start: float
    end: float
    step: float = 15.0
    selector: str = ""
    lost_after: float | None = None  # None: three scrape intervals, as the samples' timestamps show them
    chunk_rows: int | None = None
    every_step: bool = False  # evaluate every step, not only the screened ones (tests, benchmarks)


class StepClock:
    """The backtest's clock: the time of the step being evaluated (the breaker and Decisions read it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        """The step's unix time."""
        return self.now

    def monotonic(self) -> float:
        """The step's unix time (steps only move forward)."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Nothing waits in a backtest."""

    def wait(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Nothing waits in a backtest."""


class Evaluator:
    """The policy step over chosen steps: contiguous while a rule is pending or firing, else only at busy steps,
    each led by `warm` steps that fill the history windows and the Xid memory without evaluating a rule."""

    def __init__(self, lp: LoadedPolicy, fleet: Fleet, step: float, warm: int) -> None:
        self.clock = StepClock()
        self.notes: list[str] = []
        self.step = PolicyStep(lp, devices=len(fleet.devices), interval_s=step, wall=self.clock.time,
                               note=self._note)
        p = lp.policy
        seen = WouldBeFleet(fleet.node_names)
        breaker = FleetBreaker(seen, p.drain_max_share, p.drain_window, self.clock,
                               manual_reset=getattr(p, "drain_reset", "window") == "manual", settle_s=0.0)
        self.recorder = Recorder(lp.rules, fleet, breaker, seen)
        self.maker = FrameMaker(fleet)
        self.warm = warm
        self.fed_until = -math.inf
        self.evaluated = 0

    def _note(self, text: str) -> None:
        if text not in self.notes and len(self.notes) < 100:
            self.notes.append(text)

    def holding(self) -> bool:
        """Whether some rule is pending or firing for some subject (then every step counts)."""
        return any(self.step.engine.tracks.values())

    def run(self, chunk: Chunk, busy: np.ndarray, steps: Steps) -> None:
        """Evaluate the chunk's own steps (not its context) where the engine has work."""
        k, rows = chunk.first, len(chunk.times)
        while k < rows:
            if not self.holding():
                ahead = np.flatnonzero(busy[k:])
                if ahead.size == 0:
                    return
                k += int(ahead[0])
                for w in range(max(k - self.warm, 0), k):
                    if chunk.times[w] > self.fed_until:
                        self._observe(chunk, w, steps)
            self._evaluate(chunk, k)
            k += 1

    def _observe(self, chunk: Chunk, k: int, steps: Steps) -> None:
        """PolicyStep's bookkeeping without the engine: the windows' history and the Xid memory see step k (the
        columns the screen computed are the context's own, as tests/backtest/test_screen.py holds)."""
        s, t = self.step, float(chunk.times[k])
        xid = chunk.xid[k]
        for d in np.flatnonzero(~np.isnan(xid)).tolist():
            s.xids.note(d, int(xid[d]), t)
        if s.history.columns:
            s.history.append(_Sample(t, steps.devices),  # type: ignore[arg-type]
                             {c: steps.column(c, "device")[k] for c in s.history.columns})
        self.fed_until = t

    def _evaluate(self, chunk: Chunk, k: int) -> None:
        frame, nodes, jobs = self.maker.frame(chunk, k), self.maker.nodes(chunk, k), self.maker.jobs(chunk, k)
        self.clock.now = frame.wall_time
        decisions = self.step(frame, nodes, jobs)
        self.fed_until = frame.monotonic
        self.evaluated += 1
        self.recorder.after(frame.wall_time, self.step.engine, frame, nodes, jobs, decisions)


class _Sample:
    """What the history reads of a Frame: its time and its number of GPUs."""

    def __init__(self, monotonic: float, devices: int) -> None:
        self.monotonic, self.devices = monotonic, devices

    def __len__(self) -> int:
        return self.devices


def warm_steps(rules: list[CompiledRule], step: float) -> int:
    """Steps of history the rules look back over (their longest window; five minutes when they read `xid`)."""
    longest = max((s for cr in rules for s in cr.windows.values()), default=0.0)
    if any("xid" in S.names_read(cr) for cr in rules):
        longest = max(longest, XID_MEMORY_S)
    return math.ceil(longest / step + 1e-9) + 2


def backtest(prom: Prometheus, lp: LoadedPolicy, site: SiteNames, w: Window,
             progress: Callable[[float], None] | None = None) -> Result:
    """What `lp` would have done over the window; rules the history cannot evaluate are reported, not run."""
    t0 = time.perf_counter()
    sel = matchers(w.selector)
    needs, fleet = _find(prom, lp, site, sel, w)
    lost_after = w.lost_after or 3.0 * scrape_interval(prom, needs.liveness.metric, sel, w.start, w.end)
    read_s = time.perf_counter() - t0  # finding the series and the fleet is reading too
    warm = warm_steps(needs.rules, w.step)
    ev = Evaluator(LoadedPolicy(lp.policy, needs.rules, lp.source), fleet, w.step, warm)
    loader = Loader(prom, fleet, needs, site, sel, step=w.step, context=warm, lost_after=lost_after,
                    chunk_rows=w.chunk_rows)
    timeline, grid = Timeline(), 0
    chunks = loader.chunks(w.start, w.end, progress)
    while True:
        r0 = time.perf_counter()
        chunk = next(chunks, None)
        read_s += time.perf_counter() - r0
        if chunk is None:
            break
        grid += len(chunk.times) - chunk.first
        busy, steps = screen_chunk(chunk, needs.rules, fleet, ev, timeline, w.step)
        ev.run(chunk, np.ones(len(chunk.times), bool) if w.every_step else busy, steps)
    total = time.perf_counter() - t0
    seconds = {"prometheus": prom.wait_s, "read": read_s, "evaluate": total - read_s, "total": total}
    return Result(lp.source, prom.url, sel, w.start, w.end, w.step, lost_after, len(fleet.devices),
                  len(fleet.node_names), needs.skipped, ev.recorder.finish(), ev.recorder.totals,
                  fleet.notes + ev.notes, timeline, seconds, {"grid": grid, "evaluated": ev.evaluated})


def _find(prom: Prometheus, lp: LoadedPolicy, site: SiteNames, sel: str, w: Window) -> tuple[Needs, Fleet]:
    """The series the rules need and the fleet they describe; an error when no rule or no GPU is left."""
    lead = w.start - warm_steps(lp.rules, w.step) * w.step
    needs = find_needs(prom, lp, site, sel, lead, w.end, w.step)
    if not needs.rules:
        why = "; ".join(f"{s.rule} {s.why}" for s in needs.skipped)
        hints = sorted({s.hint for s in needs.skipped if s.hint})
        raise ColdaisleError(f"no rule of {lp.source} can be evaluated on this history: {why}",
                             hint=" ".join(hints) or None)
    fleet = discover(prom, needs, site, sel, lead, w.end)
    if not fleet.devices:
        raise ColdaisleError(f"no GPU named by {needs.liveness.metric} (labels {site.labels.node}, "
                             f"{site.labels.gpu}) in the window", hint="check the mapping file's `labels:`")
    return needs, fleet


def screen_chunk(chunk: Chunk, rules: list[CompiledRule], fleet: Fleet, ev: Evaluator, timeline: Timeline,
                 step: float) -> tuple[np.ndarray, Steps]:
    """Every rule's condition over the chunk: GPU-hours and the timeline, and the steps with work."""
    steps = Steps(chunk, fleet, ev.maker.memory_total)
    found = masks(rules, steps)
    own = slice(chunk.first, None)
    counts = {}
    for cr in rules:
        counts[cr.rule.name] = gpus_over(cr, found[cr.rule.name], steps)[own]
        ev.recorder.totals[cr.rule.name].gpu_hours += float(counts[cr.rule.name].sum()) * step / 3600.0
    timeline.add(chunk.times[own], counts)
    busy = np.zeros(len(chunk.times), bool)
    for m in found.values():
        busy |= m.any(axis=1)
    return busy, steps


def scrape_interval(prom: Prometheus, metric: str, sel: str, start: float, end: float) -> float:
    """The liveness series' scrape interval: the median gap between distinct sample timestamps in ten minutes."""
    query = f"timestamp({selector(metric, sel)})"
    for a in (start, max(start, end - 600.0)):
        gaps = []
        for s in prom.query_range(query, a, min(a + 600.0, end), 1.0)[:64]:
            distinct = np.unique(s.values)
            gaps.extend(np.diff(distinct).tolist())
        if gaps:
            return float(np.median(gaps))
    return 100.0  # no two samples of one GPU within ten minutes: lost after five minutes (the lookback)
