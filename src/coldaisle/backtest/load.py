"""Range queries in chunks, turned into per-step arrays over the fleet's GPUs, as Prometheus means them.

Each chunk is a few thousand steps (a bounded number of samples per query, never the whole window at once);
the last `context` steps of one chunk lead the next, so windows and the Xid memory see across the seam.

- **Several series per GPU** (a job label that changes, an exporter restarted): at each step the series whose
  newest sample is newest is the GPU's (`timestamp()` of the liveness metric), and every other metric's series
  with the same labels is read there; a series from another exporter fills in where that one has nothing.
- **Staleness**: a GPU is lost once its newest sample, by the sample's own timestamp, is older than
  `lost_after` (backfilled or remote-written data has no staleness markers, and `query_range` repeats a last
  value for five minutes); its readings are then unknown (NaN), as the agent sees a GPU that fell off the bus.
- **Counter resets**: a counter that goes down was reset; as in Prometheus' `rate()`, the value before the
  drop is added from there on, so `delta()` over a window is the increase.
- **Xid**: dcgm-exporter's gauge holds the last Xid; a new value is an Xid event at the step it appears.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from coldaisle.backtest import sources as S
from coldaisle.backtest.chunk import Chunk, join, widen
from coldaisle.backtest.fleet import Fleet, Needs, device_key, first_label, job_of_labels
from coldaisle.backtest.mapping import SiteNames
from coldaisle.backtest.prom import MAX_POINTS, Prometheus, RangeSeries, selector
from coldaisle.backtest.samples import reset_corrected, xid_events

_FB = (S.Candidate("DCGM_FI_DEV_FB_USED", 2.0**20), S.Candidate("DCGM_FI_DEV_FB_FREE", 2.0**20))


class Loader:
    """Reads the window chunk by chunk; carries what crosses a chunk's end (newest samples, counter offsets)."""

    def __init__(self, prom: Prometheus, fleet: Fleet, needs: Needs, site: SiteNames, sel: str, *,
                 step: float, context: int, lost_after: float, chunk_rows: int | None = None) -> None:
        self.prom, self.fleet, self.needs, self.site, self.sel = prom, fleet, needs, site, sel
        self.step, self.context, self.lost_after = step, context, lost_after
        n = len(fleet.devices)
        self.chunk_rows = chunk_rows or int(np.clip(1_500_000 // max(n, 1), 240, MAX_POINTS - context - 1))
        self.last_ts = np.full(n, np.nan)
        self.counters: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.xid_last = np.full(n, np.nan)
        self.series_ids: dict[frozenset[tuple[str, str]], int] = {}
        self.series_job: list[int] = []
        self.jobs: list[str] = []
        self.job_index: dict[str, int] = {}
        self.node_index = {name: i for i, name in enumerate(fleet.node_names)}
        self._fetched: dict[str, list[RangeSeries]] = {}

    def chunks(self, start: float, end: float, progress: Callable[[float], None] | None = None) -> Iterator[Chunk]:
        """Chunks covering [start, end]; the first is led by `context` steps from before `start`."""
        total = int(np.floor((end - start) / self.step + 1e-9)) + 1
        tail: Chunk | None = None
        k = -self.context
        while k < total:
            rows = min(self.chunk_rows + (self.context if tail is None else 0), total - k)
            times = start + self.step * np.arange(k, k + rows)
            chunk = self._read(times, self.context if tail is None else 0)
            if tail is not None:
                chunk = join(tail, chunk)
            yield chunk
            tail = chunk.tail(self.context)
            k += rows
            if progress:
                progress(float(times[-1]))

    def _read(self, times: np.ndarray, first: int) -> Chunk:
        self._fetched = self._fetch_all(times)
        live, cur = self._liveness(times)
        lost = self._lost(times, live, cur)
        columns: dict[str, np.ndarray] = {}
        throttle = xid = None
        for name, cand in self.needs.found.items():
            src = self.site.sources[name]
            if cand is None or src.level != "device" or not src.fetched or name == "lost":
                continue
            if name == "memory_total_bytes" and self.needs.fb_total:
                used, free = (self._values(c, times, cur) for c in _FB)
                columns[name] = used + free
                continue
            x = self._values(cand, times, cur)
            if src.kind == S.COUNTER:
                columns[name] = self._reset_corrected(name, x)
            elif src.kind == S.BITMASK:
                throttle = np.where(np.isnan(x) | lost, 0, x).astype(np.uint64)
            elif src.kind == S.XID:
                xid = self._xid_events(x)
            else:
                columns[name] = np.where(lost, np.nan, x)
        n = len(self.fleet.devices)
        chunk = Chunk(times, first, columns, throttle, lost, live,
                      np.full((len(times), n), np.nan) if xid is None else xid, self._job_of(cur), self.jobs)
        chunk.node_values, chunk.job_values = self._levels(times, "node"), self._levels(times, "job")
        width = len(self.jobs)
        chunk.job_values = {k: widen(v, width) for k, v in chunk.job_values.items()}
        return replace(chunk, jobs=list(self.jobs))

    # -- the liveness series: ages, lost, the current series of each GPU ------------------------------------
    def _liveness(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(age of each GPU's newest sample, id of the series it came from) per step."""
        live = self.needs.liveness
        query = f"timestamp({selector(live.metric, self.sel, live.match)})"
        t, n = len(times), len(self.fleet.devices)
        newest, cur = np.full((t, n), np.nan), np.full((t, n), -1, dtype=np.intp)
        for s in self._range(query, times):
            d = self.fleet.index.get(device_key(s.labels, self.site))
            if d is None:
                continue
            rows, sid = self._rows(s.times, times), self._series_id(s.labels)
            newer = ~(s.values <= newest[rows, d])
            newest[rows[newer], d], cur[rows[newer], d] = s.values[newer], sid
        seen = np.fmax.accumulate(np.vstack([self.last_ts[None, :], newest]), axis=0)[1:]
        self.last_ts = seen[-1].copy()
        with np.errstate(invalid="ignore"):
            age = np.where(np.isnan(seen), np.inf, times[:, None] - seen)
        return age, cur

    def _lost(self, times: np.ndarray, age: np.ndarray, cur: np.ndarray) -> np.ndarray:
        """Stale (the newest sample older than lost_after, once seen) or said lost by coldaisle_gpu_lost."""
        lost = np.isfinite(age) & (age > self.lost_after)
        said = self.needs.found.get("lost")
        if said is not None:
            with np.errstate(invalid="ignore"):
                lost |= self._values(said, times, cur) >= 0.5
        return lost

    def _series_id(self, labels: dict[str, str]) -> int:
        key = frozenset((k, v) for k, v in labels.items() if k != "__name__")
        sid = self.series_ids.get(key)
        if sid is None:
            sid = self.series_ids[key] = len(self.series_job)
            self.series_job.append(self._job(job_of_labels(labels, self.site)) if self.fleet.labelled_jobs else -1)
        return sid

    def _job(self, name: str) -> int:
        if not name:
            return -1
        if name not in self.job_index:
            self.job_index[name] = len(self.jobs)
            self.jobs.append(name)
        return self.job_index[name]

    def _job_of(self, cur: np.ndarray) -> np.ndarray:
        """Each GPU's job per step: its current series' job label, or (no job labels anywhere) its node."""
        if not self.fleet.labelled_jobs:
            for name in self.fleet.node_names:
                self._job(f"node:{name}")
            return np.broadcast_to(self.fleet.node_of, cur.shape).copy()
        table = np.array([*self.series_job, -1], dtype=np.intp)
        return table[cur]  # cur == -1 picks the trailing -1

    # -- value series ---------------------------------------------------------------------------------------
    def _values(self, cand: S.Candidate, times: np.ndarray, cur: np.ndarray) -> np.ndarray:
        """One metric over (step, GPU) in the policy's unit: the current series' value at each step."""
        out = np.full(cur.shape, np.nan)
        placed = []
        for s in self._range(selector(cand.metric, self.sel, cand.match), times):
            d = self.fleet.index.get(device_key(s.labels, self.site, cand.metric))
            if d is None:
                continue
            key = frozenset((k, v) for k, v in s.labels.items() if k != "__name__")
            placed.append((s.times[0] if s.times.size else np.inf, d, self.series_ids.get(key, -2), s))
        placed.sort(key=lambda p: p[0])  # a later series of another exporter fills in over an earlier one
        for _, d, sid, s in sorted(placed, key=lambda p: p[2] >= 0):
            rows = self._rows(s.times, times)
            ok = slice(None) if sid < 0 else (cur[rows, d] == sid) | (cur[rows, d] < 0)
            out[rows[ok], d] = s.values[ok] * cand.scale
        return out

    def _reset_corrected(self, name: str, x: np.ndarray) -> np.ndarray:
        start = self.counters.get(name, (np.full(x.shape[1], np.nan), np.zeros(x.shape[1])))
        out, last, offset = reset_corrected(x, *start)
        self.counters[name] = (last, offset)
        return out

    def _xid_events(self, x: np.ndarray) -> np.ndarray:
        events, self.xid_last = xid_events(x, self.xid_last)
        return events

    def _levels(self, times: np.ndarray, level: str) -> dict[str, np.ndarray]:
        """Node values (the max over a node's series) or job values: the worst rank's for latencies and the straggler
        score, the freshest rank's (the min) for progress age (S.WORST_RANK), as the agent's job view has them."""
        out = {}
        for name, cand in self.needs.found.items():
            if cand is None or self.site.sources[name].level != level:
                continue
            placed = [(self._column(s.labels, cand, level), s)
                      for s in self._range(selector(cand.metric, self.sel, cand.match), times)]
            arr = np.full((len(times), len(self.fleet.node_names) if level == "node" else len(self.jobs)), np.nan)
            pick = np.fmax if level == "node" or name in S.WORST_RANK else np.fmin
            for col, s in placed:
                if col >= 0:
                    rows = self._rows(s.times, times)
                    arr[rows, col] = pick(arr[rows, col], s.values * cand.scale)
            out[name] = arr
        return out

    def _column(self, labels: dict[str, str], cand: S.Candidate, level: str) -> int:
        """A node-level series' node, or a job-level series' job (coldaisle's `workload` label); -1: none."""
        if level == "job":
            return self._job(labels.get("workload", ""))
        names = self.site.node_labels.get(cand.metric, tuple(self.site.labels.node))
        return self.node_index.get(first_label(labels, list(names)), -1)

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _queries(self) -> list[str]:
        """Every range query a chunk needs (the liveness series' timestamps first)."""
        live = self.needs.liveness
        out = [f"timestamp({selector(live.metric, self.sel, live.match)})"]
        for name, cand in self.needs.found.items():
            src = self.site.sources[name]
            if cand is None or src.kind == S.STATIC or (src.kind == S.DERIVED and name != "lost"):
                continue  # card facts are read once (fleet.py); derived values come from the liveness series
            both = _FB if name == "memory_total_bytes" and self.needs.fb_total else (cand,)
            out += [selector(c.metric, self.sel, c.match) for c in both]
        return list(dict.fromkeys(out))

    def _fetch_all(self, times: np.ndarray) -> dict[str, list[RangeSeries]]:
        """A chunk's queries, four at a time: Prometheus works on the next while this process decodes one."""
        queries = self._queries()
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="backtest-read") as pool:
            answers = pool.map(lambda q: self._ask(q, times), queries)
            return dict(zip(queries, answers, strict=True))

    def _ask(self, query: str, times: np.ndarray) -> list[RangeSeries]:
        return self.prom.query_range(query, float(times[0]), float(times[-1]), self.step)

    def _range(self, query: str, times: np.ndarray) -> list[RangeSeries]:
        """A query's answer for this chunk (fetched ahead; each is read once, then dropped)."""
        found = self._fetched.pop(query, None)
        return self._ask(query, times) if found is None else found

    def _rows(self, t: np.ndarray, times: np.ndarray) -> np.ndarray:
        rows = np.rint((t - times[0]) / self.step).astype(np.intp)
        return np.clip(rows, 0, len(times) - 1)
