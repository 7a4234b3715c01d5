"""Fail-slow: a rank that keeps its peers waiting without ever hanging, scored and named while the job runs.

In a synchronous job every rank finishes a step together, so the slow rank is not the one with the longest
step time: it is the one that works longest per step while its peers wait for it in a collective (and wait
idle: gloo blocks, and so do NCCL's host threads outside a spin). So each rank's work per step is its process's
CPU seconds per step over the last `window_s`, read from /proc (guard.rhythm.RankActivity) in spans of a few
seconds, leaving out the spans that hold a checkpoint or an evaluation (`per_step`); a job whose ranks
step independently is compared by step time as well. A rank's score is the share of its step its
peers did not need:

    score = max(0, 1 - median(peers' work per step) / its own)   (and the same with step times; the larger)

0 for a rank as fast as the median of the others; 0.29 for a rank doing 40 % more work (1 - 1/1.4); towards 1
as it falls further behind. A rank whose score stays at or over `threshold` for `sustain` looks in a row is
named: one line to the user, its host and GPU, and from then on in the scores file the node's agent exports
(`coldaisle_job_rank_straggler_score`) and in the run's bundle. Naming never stops the job; a policy rule on
`job_straggler_score` may act (the default one alerts).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from coldaisle.guard.rhythm import RankActivity, RankSample
from coldaisle.guard.watch import Look, Verdict
from coldaisle.telemetry.procfs import read_environ

SCORES_FILE = "straggler.json"
SCHEMA = "coldaisle.straggler/1"


@dataclass(frozen=True, slots=True)
class RankScore:
    """One rank's standing against its peers over the window."""

    rank: int
    score: float
    work_per_step_s: float  # CPU seconds per step
    step_s: float  # wall seconds per step
    host: str = ""
    gpu: str = ""


def scores(work: dict[int, float], step: dict[int, float]) -> dict[int, float]:
    """Each rank's straggler score from its work per step and step time (pure; see the module doc)."""
    out = {}
    for r in work:
        best = 0.0
        for values in (work, step):
            peers = [v for k, v in values.items() if k != r and v > 0 and math.isfinite(v)]
            own = values.get(r, math.nan)
            if peers and own > 0 and math.isfinite(own):
                best = max(best, 1.0 - statistics.median(peers) / own)
        out[r] = round(min(1.0, best), 4)
    return out


def per_step(samples: Iterable[RankSample], since: float, min_steps: int = 10,
             span_s: float = 3.0) -> tuple[float, float] | None:
    """(CPU seconds, wall seconds) per step over the samples since `since`; None with fewer than `min_steps` steps.

    Samples come at the supervisor's looks, not at step boundaries, so one look-to-look interval holds a step
    and a part of another: with 0.7 s steps seen every 0.5 s, half the intervals say 0.5 s and half 1 s, and a
    median of them says 0.5. So consecutive intervals are pooled into spans of at least `span_s` (each ending
    at a look where the step changed), a span that holds a pause (a checkpoint, an evaluation: more than three
    times the quickest span's time per step; the median would be a pause's own when pauses fill the window) is
    left out, and the rest are summed: total CPU and wall time over total steps. Fewer than `min_steps` steps
    say too little: each step's work jitters, and a mean over a handful of steps differs by chance."""
    spans: list[tuple[float, float, int]] = []  # (cpu, wall, steps)
    first: RankSample | None = None
    last: RankSample | None = None  # the last look at which the step changed
    for s in samples:
        if s.t < since:
            continue
        if first is None or last is None or s.step < last.step:  # the first sample, or a restarted rank
            first, last, spans = s, s, []
            continue
        if s.step > last.step:
            last = s
            if s.t - first.t >= span_s:
                spans.append((s.cpu_s - first.cpu_s, s.t - first.t, s.step - first.step))
                first = s
    if first is not None and last is not None and last.step > first.step:  # the span still open
        spans.append((last.cpu_s - first.cpu_s, last.t - first.t, last.step - first.step))
    if not spans:
        return None
    quickest = min(wall / n for _, wall, n in spans)
    kept = [(c, w, n) for c, w, n in spans if w / n <= 3 * quickest]
    steps = sum(n for _, _, n in kept)
    if steps < min_steps:
        return None
    return sum(c for c, _, _ in kept) / steps, sum(w for _, w, _ in kept) / steps


class StragglerWatch:
    """Every `every_s`: score the ranks, name the one that stays slow, publish the scores; never a verdict."""

    def __init__(self, activity: RankActivity, say: Callable[[str], None], *, host: str = "",
                 gpus: Callable[[int], str] = lambda _r: "", every_s: float = 5.0, window_s: float = 30.0,
                 threshold: float = 0.15, sustain: int = 4, out: Callable[[], Path | None] = lambda: None,
                 wall: Callable[[], float] | None = None) -> None:
        import time

        self.activity, self.say, self.host, self.gpus = activity, say, host, gpus
        self.every_s, self.window_s, self.threshold, self.sustain = every_s, window_s, threshold, sustain
        self.out, self.wall = out, wall or time.time
        self.latest: dict[int, RankScore] = {}
        self.named: dict[int, dict[str, Any]] = {}  # rank -> when and how it was named
        self._strikes: dict[int, int] = {}
        self._next = 0.0

    def look(self, job: Look) -> Verdict | None:
        """Score when due; names a rank once it has stayed slow."""
        if job.now < self._next:
            return None
        self._next = job.now + self.every_s
        work, step = {}, {}
        for rank in self.activity.ranks():
            per = per_step(self.activity.samples[rank], job.now - self.window_s)
            if per is None:  # long steps, or a pause filled the window: all the samples kept (RankActivity.keep_s)
                per = per_step(self.activity.samples[rank], -math.inf)
            if per is not None:
                work[rank], step[rank] = per
        if len(work) < 2:
            return None
        got = scores(work, step)
        self.latest = {r: RankScore(r, s, round(work[r], 4), round(step[r], 4), self.host, self.gpus(r))
                       for r, s in got.items()}
        for r, s in got.items():
            self._strikes[r] = self._strikes.get(r, 0) + 1 if s >= self.threshold else 0
            if self._strikes[r] >= self.sustain and r not in self.named:
                self._name(r, job.now)
        self._publish()
        return None

    def evidence(self) -> dict[str, Any]:
        """The latest scores and the ranks named, for the bundle (nothing before the first scores)."""
        if not self.latest:
            return {}
        return {"straggler_scores": [asdict(s) for s in self.latest.values()],
                "stragglers_named": list(self.named.values())}

    def _name(self, rank: int, now: float) -> None:
        s = self.latest[rank]
        peers = [x.work_per_step_s for r, x in self.latest.items() if r != rank]
        where = f" on {s.host}" + (f" GPU {s.gpu}" if s.gpu else "") if s.host else ""
        self.named[rank] = {**asdict(s), "named_at_wall": round(self.wall(), 3),
                            "peers_work_per_step_s": round(statistics.median(peers), 4) if peers else None}
        self.say(f"straggler: rank {rank}{where} is slower than its peers (score {s.score:.2f}: "
                 f"{s.work_per_step_s:.3f} s of work per step against the others' "
                 f"{statistics.median(peers):.3f} s) for {self.sustain * self.every_s:.0f} s; the job goes on")

    def _publish(self) -> None:
        directory = self.out()
        if directory is not None:
            write_scores(directory, list(self.latest.values()), sorted(self.named), self.wall())


def write_scores(directory: str | os.PathLike[str], ranks: list[RankScore], named: list[int], wall: float) -> None:
    """The scores file beside the heartbeats, for the node's agent (written then renamed; a vanished directory,
    the job ending, is not an error)."""
    doc = {"schema": SCHEMA, "written": wall, "named": named, "ranks": [asdict(s) for s in ranks]}
    try:
        fd, tmp = tempfile.mkstemp(prefix=".straggler.", dir=directory)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, Path(directory) / SCORES_FILE)
    except OSError:
        pass


class RankGpus:
    """rank -> the GPU it drives, by PyTorch's convention: CUDA_VISIBLE_DEVICES[LOCAL_RANK], else LOCAL_RANK on a
    node with GPUs; "" when the rank's environment does not say (read once per rank process)."""

    def __init__(self, activity: RankActivity, has_gpus: bool, proc: str = "/proc") -> None:
        self.activity, self.has_gpus, self.proc = activity, has_gpus, proc
        self._cache: dict[int, str] = {}

    def __call__(self, rank: int) -> str:
        pid = self.activity.pids.get(rank)
        if pid is None:
            return ""
        if pid not in self._cache:
            self._cache[pid] = gpu_of(read_environ(pid, self.proc) or {}, self.has_gpus)
        return self._cache[pid]


def gpu_of(env: Mapping[str, str], has_gpus: bool) -> str:
    """The GPU of a rank with this environment (see RankGpus)."""
    local = env.get("LOCAL_RANK", "")
    visible = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and local.isdigit() and int(local) < len(visible):
        return visible[int(local)]
    if len(visible) == 1:
        return visible[0]
    return local if has_gpus and local.isdigit() else ""


def read_scores(directory: str | os.PathLike[str], max_age_s: float = 60.0,
                now: Callable[[], float] | None = None) -> list[RankScore]:
    """The scores a supervisor published beside its heartbeats (none when absent, stale or unreadable)."""
    import time

    try:
        doc = json.loads((Path(directory) / SCORES_FILE).read_text())
        if doc.get("schema") != SCHEMA or (now or time.time)() - float(doc["written"]) > max_age_s:
            return []
        return [RankScore(int(r["rank"]), float(r["score"]), float(r["work_per_step_s"]), float(r["step_s"]),
                          str(r.get("host", "")), str(r.get("gpu", ""))) for r in doc["ranks"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
