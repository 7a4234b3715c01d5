"""Heartbeat: a training or serving loop says "still making progress" for ~0.3 µs, a supervisor reads it.

Use it in a training loop: `coldaisle.progress(tokens=tokens_so_far)` after each step; in a serving loop:
`coldaisle.latency(seconds)` per request; with PyTorch, one line: `heartbeat.torch_hook(optimizer)`. A long
stretch without progress that is not a hang can say what it is: `with coldaisle.phase("checkpoint"): ...`
(a supervisor then waits for it up to its `--hang-timeout` instead of its learned step rhythm).

Writer side (the job): `coldaisle.progress(step=..., tokens=...)` and `coldaisle.latency(seconds)`. The first
call reads `COLDAISLE_HEARTBEAT` once. Unset: every later call returns after one global check (no supervisor,
no cost). Set to a directory: the process writes `rank-<RANK>.hb` there (`LOCAL_RANK` when `RANK` is unset,
`pid-<pid>.hb` when neither is); set to anything else: that file. The file is created under a temporary name,
initialised, renamed into place and `mmap`ed; every later call is a few stores into the mapping plus
`time.monotonic_ns()` (served by the vDSO on Linux, no system call: see benchmarks/RESULTS.md).

Record (native byte order, 8-byte words; word 0 is the magic `COLDAHB1`):
  1 version, 2 pid, 3 rank (-1 unknown), 4 ring size N, 5 started_ns, 6 seq, 7 step, 8 tokens (float64),
  9 updated_ns (last progress), 10 latency count (ever), 11 latency_ns (last latency), 12 phase_ns (when the
  current phase began, 0: none), 13-15 the phase's name (24 bytes of UTF-8, NUL-padded), 16.. N float64
  latencies in seconds, a ring indexed by count % N. (Words 12-15 were reserved and zero in the first writers,
  which read as "no phase": the version stays 1.)
Timestamps are CLOCK_MONOTONIC nanoseconds, comparable between processes on one host.

Consistency is a seqlock: `progress` makes seq odd, stores step, tokens and updated_ns, then makes it even;
the reader loads seq and those three words in one unpack, then seq again (through a read-only mapping), and
retries unless both are the same even number. This is exact on x86-64 (neither stores nor loads are reordered
among themselves); on weakly ordered CPUs (aarch64) the interpreter puts no fence between its stores, so a
torn record is possible in principle there. The latency ring is not under the seqlock: a sample read
half-updated is one of N old or new samples, which the percentiles tolerate. Neither is the phase: its name is
written before its start time and the start time cleared first, so a reader sees a phase with its own name or
none (a name torn by a racing change is at worst the next phase's).

Call `progress` from one thread (the loop): two threads interleaving their updates can let a reader see a
torn record. `latency` may be called from several threads: a race loses a sample, nothing worse. A child
forked after the parent started reporting stays silent (the record is the parent's); `close()` makes a
process look at the environment again.

Reader side (supervisor, agent): `HeartbeatReader(path).read()` never raises for a bad file: missing,
truncated and garbage files come back as `HeartbeatProblem`s beside the good ranks.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # the writer must not pull in coldaisle.telemetry (and numpy) with it
    from coldaisle.telemetry.clock import Clock

ENV_VAR: Final = "COLDAISLE_HEARTBEAT"
MAGIC: Final = b"COLDAHB1"
VERSION: Final = 1
RING_SIZE: Final = 256  # a power of two: the ring index is a mask
SUFFIX: Final = ".hb"

_HEADER: Final = struct.Struct("=8sqqqqqqqdqqqqqqq")  # words 0-15, see the module docstring
_HOT: Final = struct.Struct("=qqdq")  # seq, step, tokens, updated_ns: what the seqlock guards
_W_SEQ, _W_STEP, _W_TOKENS, _W_UPDATED, _W_LAT_COUNT, _W_LAT_NS, _W_RING = 6, 7, 8, 9, 10, 11, 16
_W_PHASE_NS, _W_PHASE_NAME, PHASE_NAME_BYTES = 12, 13, 24
_MAX_RING: Final = 1 << 16
_MAX_SIZE: Final = (_W_RING + _MAX_RING) * 8
_RING_MASK: Final = RING_SIZE - 1


class _Unresolved:
    """The writer's state before the first call has looked at the environment."""


_UNRESOLVED: Final = _Unresolved()
_monotonic_ns = time.monotonic_ns

# Writer state of this process. `_q` is the record as int64 words: _UNRESOLVED, None (no-op) or the view.
_q: Any = _UNRESOLVED
_d: Any = None  # the same record as float64 words
_mm: mmap.mmap | None = None
_seq = 0
_step = 0
_lat_n = 0
_phases: list[tuple[bytes, int]] = []  # the open phases of this process, innermost last


def progress(step: int | None = None, tokens: float | None = None) -> None:
    """Report one more step (or `step`) and the tokens processed so far, so a supervisor can tell hung from slow."""
    global _seq, _step  # noqa: PLW0603 - module globals: the cheapest state for the hot path
    q = _q
    if q is None:
        return
    if q is _UNRESOLVED:
        q = _resolve()
        if q is None:
            return
    if step is None:
        step = _step + 1
    now = _monotonic_ns()
    seq = _seq
    q[_W_SEQ] = seq + 1  # odd: readers retry; only three stores until it is even again
    try:
        q[_W_STEP] = step
        if tokens is not None:
            _d[_W_TOKENS] = tokens
        q[_W_UPDATED] = now
    finally:
        q[_W_SEQ] = seq + 2
        _seq = seq + 2
    _step = step


def latency(seconds: float) -> None:
    """Report one request's latency, so serving p50/p99 become metrics and rule inputs."""
    global _lat_n  # noqa: PLW0603 - module globals: the cheapest state for the hot path
    q = _q
    if q is None:
        return
    if q is _UNRESOLVED:
        q = _resolve()
        if q is None:
            return
    n = _lat_n
    _d[_W_RING + (n & _RING_MASK)] = seconds
    _lat_n = n + 1
    q[_W_LAT_COUNT] = n + 1
    q[_W_LAT_NS] = _monotonic_ns()


class phase:  # lower case: used as `with coldaisle.phase("checkpoint"):`, like a function
    """Mark a stretch of the loop that makes no progress on purpose (a checkpoint, an evaluation, a warm-up).

    `with coldaisle.phase("checkpoint"): torch.save(...)`. A supervisor that sees no progress during a phase
    waits up to its `--hang-timeout` (the upper bound) instead of its learned step rhythm, and names the phase
    in what it says; the silence after it is measured from its end. Phases nest; the innermost is the one
    reported. Without a supervisor it costs one check.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name.encode("utf-8", "replace")[:PHASE_NAME_BYTES]

    def __enter__(self) -> phase:
        q = _q if _q is not _UNRESOLVED else _resolve()
        if q is not None:
            _phases.append((self.name, _monotonic_ns()))
            _show_phase(q)
        return self

    def __exit__(self, *_exc: object) -> None:
        global _seq  # noqa: PLW0603 - the writer state is per process
        q = _q
        if q is not None and q is not _UNRESOLVED and _phases:
            _phases.pop()
            _show_phase(q)
            seq = _seq  # leaving a phase is a sign of life: silence is measured from its end (no step counted)
            q[_W_SEQ] = seq + 1
            q[_W_UPDATED] = _monotonic_ns()
            q[_W_SEQ] = _seq = seq + 2


def _show_phase(q: Any) -> None:
    """Publish the innermost open phase (or none): the start time cleared first, the name, then the start time."""
    q[_W_PHASE_NS] = 0
    if _phases and _mm is not None:
        name, started = _phases[-1]
        at = _W_PHASE_NAME * 8
        _mm[at:at + PHASE_NAME_BYTES] = name.ljust(PHASE_NAME_BYTES, b"\0")
        q[_W_PHASE_NS] = started


def close() -> None:
    """Unmap the heartbeat file and forget the environment lookup, so the next call looks again (tests, re-exec)."""
    global _q, _d, _mm, _seq, _step, _lat_n
    if isinstance(_q, memoryview):
        _q.release()
        _d.release()
    if _mm is not None:
        _mm.close()
    _q, _d, _mm, _seq, _step, _lat_n = _UNRESOLVED, None, None, 0, 0, 0
    _phases.clear()


def heartbeat_file(base: str | os.PathLike[str], env: dict[str, str] | None = None, pid: int | None = None) -> Path:
    """The file this process writes under `base`: per-rank inside a directory, `base` itself otherwise."""
    base = Path(base)
    if not base.is_dir():
        return base
    env = os.environ if env is None else env
    rank = _rank(env)
    return base / (f"rank-{rank}{SUFFIX}" if rank >= 0 else f"pid-{pid or os.getpid()}{SUFFIX}")


def torch_hook(optimizer: Any, tokens_per_step: float | None = None) -> Any:
    """One line in a PyTorch loop: report progress after every `optimizer.step()`; returns the removable handle."""
    counter = [0.0]

    def _after_step(_optimizer: Any, _args: Any, _kwargs: Any) -> None:
        if tokens_per_step is None:
            progress()
        else:
            counter[0] += tokens_per_step
            progress(tokens=counter[0])

    return optimizer.register_step_post_hook(_after_step)


def _rank(env: Any) -> int:
    """The distributed rank from torchrun/Slurm-style variables, -1 when there is none."""
    for name in ("RANK", "LOCAL_RANK"):
        value = env.get(name, "")
        if value.strip().lstrip("-").isdigit():
            return int(value)
    return -1


def _resolve() -> Any:
    """First call: map the supervisor's heartbeat file, or settle into the permanent no-op."""
    global _q, _d, _mm  # noqa: PLW0603 - the writer state is per process
    base = os.environ.get(ENV_VAR)
    _q = None
    if not base:
        return None
    path = heartbeat_file(base)
    try:
        _mm = _create(path, os.getpid(), _rank(os.environ))
    except OSError as exc:
        warnings.warn(f"coldaisle heartbeat disabled: cannot create {path}: {exc}", RuntimeWarning, stacklevel=3)
        return None
    _q, _d = memoryview(_mm).cast("q"), memoryview(_mm).cast("d")
    if "torch.distributed" in sys.modules and os.environ.get("COLDAISLE_FLIGHT_DIR"):
        from coldaisle.guard.flight import start_dumper  # stdlib only: the writer stays free of numpy

        start_dumper()
    return _q


def _create(path: Path, pid: int, rank: int) -> mmap.mmap:
    """Write a fresh record under a temporary name and rename it into place, so readers never see half a file."""
    size = (_W_RING + RING_SIZE) * 8
    tmp = path.with_name(f".{path.name}.{pid}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        mm = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    _HEADER.pack_into(mm, 0, MAGIC, VERSION, pid, rank, RING_SIZE, _monotonic_ns(), 0, 0, 0.0, 0, 0, 0, 0, 0, 0, 0)
    try:
        tmp.replace(path)
    except OSError:
        mm.close()
        tmp.unlink(missing_ok=True)
        raise
    return mm


def _after_fork_in_child() -> None:
    """A forked child must not write into its parent's record: it goes quiet if the parent was reporting."""
    global _q, _d, _mm
    if isinstance(_q, memoryview):
        _q, _d, _mm = None, None, None
    _phases.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------- reader


@dataclass(frozen=True, slots=True)
class RankHeartbeat:
    """What one rank last said: enough for a supervisor to tell running, slow, hung and gone apart."""

    path: str
    pid: int
    rank: int  # -1 when the job set neither RANK nor LOCAL_RANK
    step: int
    tokens: float
    age_s: float  # since the last progress() or latency() call, on this host's monotonic clock
    steps_per_s: float  # over the interval since the previous read(); NaN on the first read of this pid
    tokens_per_s: float
    latency_p50_s: float  # over the last N reported latencies; NaN when none
    latency_p99_s: float
    latency_count: int  # latencies ever reported
    phase: str = ""  # the phase the rank says it is in (`coldaisle.phase(...)`), "" when none
    phase_age_s: float = math.nan  # since that phase began
    started_age_s: float = math.nan  # since the rank's first report (when its record was created)


@dataclass(frozen=True, slots=True)
class HeartbeatProblem:
    """A file that could not be read as a heartbeat, and why (reported, never raised)."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class HeartbeatSnapshot:
    """One read of every rank file: the ranks that answered and the files that did not make sense."""

    ranks: tuple[RankHeartbeat, ...]
    problems: tuple[HeartbeatProblem, ...]


@dataclass(frozen=True, slots=True)
class _Record:
    """A decoded record (step, tokens and time re-read under the seqlock), before ages and rates."""

    pid: int
    rank: int
    step: int
    tokens: float
    last_ns: int  # the latest of start, progress and latency times
    latency_count: int
    latencies: tuple[float, ...]
    phase: str = ""
    phase_ns: int = 0
    started_ns: int = 0


def parse_record(buf: bytes) -> _Record | str:
    """Decode a record copy (pure); a string says why it is not one, so garbage is reported, not raised."""
    if len(buf) < _HEADER.size:
        return f"truncated: {len(buf)} bytes, a header needs {_HEADER.size}"
    magic, version, pid, rank, ring, started, _, step, tokens, updated, count, lat_ns, phase_ns, *_ = \
        _HEADER.unpack_from(buf)
    problem = _header_problem(magic, version, ring, count, len(buf))
    if problem:
        return problem
    lat = struct.unpack_from(f"={ring}d", buf, _W_RING * 8)[: min(count, ring)]
    at = _W_PHASE_NAME * 8
    name = bytes(buf[at:at + PHASE_NAME_BYTES]).rstrip(b"\0").decode("utf-8", "replace") if phase_ns > 0 else ""
    return _Record(pid, rank, step, tokens, max(started, updated, lat_ns), count, lat, name, max(phase_ns, 0),
                   started)


def _header_problem(magic: bytes, version: int, ring: int, count: int, size: int) -> str | None:
    """Why a header is not one this reader can trust, or None when it is."""
    if magic != MAGIC:
        return f"not a heartbeat file (magic {magic!r})"
    if version != VERSION:
        return f"heartbeat version {version}, this reader knows {VERSION}"
    if not 0 < ring <= _MAX_RING or count < 0:
        return f"corrupt: latency ring size {ring}, count {count}"
    if size < (_W_RING + ring) * 8:
        return f"truncated: {size} bytes, the record needs {(_W_RING + ring) * 8}"
    return None


def percentile(values: list[float] | tuple[float, ...], q: float) -> float:
    """The q-th percentile with linear interpolation (numpy's default), NaN for no values; no numpy import."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class HeartbeatReader:
    """Reads every rank's heartbeat under a directory (or one file) for the supervisor and the agent.

    A record whose seq stays odd is retried `spins` times at once, then `waits` times 1 ms apart: a writer
    preempted in mid-update on a loaded host holds it odd for tens of milliseconds, so only a record odd
    for the whole ~0.25 s (a writer killed in mid-update) is reported as a problem.
    """

    def __init__(self, path: str | os.PathLike[str], clock: Clock | None = None, spins: int = 10_000,
                 waits: int = 250) -> None:
        from coldaisle.telemetry.clock import RealClock

        self.path = Path(path)
        self._clock = clock or RealClock()
        self._spins, self._waits = spins, waits
        self._previous: dict[str, tuple[int, int, float, float]] = {}  # path -> pid, step, tokens, read time

    def read(self) -> HeartbeatSnapshot:
        """One consistent record per rank file, with ages and rates since the previous read."""
        ranks: list[RankHeartbeat] = []
        problems: list[HeartbeatProblem] = []
        files = self._files(problems)
        names = {str(f) for f in files}
        self._previous = {k: v for k, v in self._previous.items() if k in names}
        for file in files:
            got = self._read_file(file)
            if isinstance(got, str):
                problems.append(HeartbeatProblem(str(file), got))
            else:
                ranks.append(self._summarise(str(file), got, self._clock.monotonic()))
        ranks.sort(key=lambda r: (r.rank, r.path))
        return HeartbeatSnapshot(tuple(ranks), tuple(problems))

    def _files(self, problems: list[HeartbeatProblem]) -> list[Path]:
        """The rank files to read; a missing path is a problem, not an error."""
        try:
            if not self.path.is_dir():
                return [self.path] if self.path.exists() else self._missing(problems)
            return sorted(p for p in self.path.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))
        except OSError as exc:
            problems.append(HeartbeatProblem(str(self.path), f"cannot list: {exc}"))
            return []

    def _missing(self, problems: list[HeartbeatProblem]) -> list[Path]:
        """Record that the heartbeat path is absent (the job has not started, or it was removed)."""
        problems.append(HeartbeatProblem(str(self.path), "missing"))
        return []

    def _read_file(self, file: Path) -> _Record | str:
        """Copy and check the record, then take step, tokens and time again under the seqlock."""
        try:
            with open(file, "rb") as fh:
                rec = parse_record(fh.read(_MAX_SIZE))
                if isinstance(rec, str):
                    return rec
                hot = self._hot_words(fh.fileno())
        except (OSError, ValueError) as exc:
            return f"cannot read: {exc}"
        if hot is None:
            return "record still being written after retries (writer stopped mid-update?)"
        step, tokens, updated = hot
        return replace(rec, step=step, tokens=tokens, last_ns=max(rec.last_ns, updated))

    def _hot_words(self, fd: int) -> tuple[int, float, int] | None:
        """Seqlock read through a read-only mapping: seq, step, tokens, time in one unpack, then seq again.

        The window between the first and the last load must be shorter than the writer's update period
        (~0.3 µs when a loop does nothing but report), so it is one `unpack_from` (CPython's struct loads the
        fields in order, seq first) and one word load, never system calls. Our writers never shrink a live
        file (a restart renames a new one into place), so the mapped header cannot vanish under the reader.
        """
        mm = mmap.mmap(fd, _HEADER.size, access=mmap.ACCESS_READ)
        q = memoryview(mm).cast("q")
        hot, offset = _HOT.unpack_from, _W_SEQ * 8
        try:
            for attempt in range(self._spins + self._waits):
                if attempt >= self._spins:
                    self._clock.sleep(0.001)
                seq, step, tokens, updated = hot(mm, offset)
                if not seq & 1 and q[_W_SEQ] == seq:
                    return step, tokens, updated
            return None
        finally:
            q.release()
            mm.close()

    def _summarise(self, path: str, rec: _Record, now: float) -> RankHeartbeat:
        """Add age, rates (against the previous read of the same pid) and latency percentiles."""
        prev = self._previous.get(path)
        steps_per_s = tokens_per_s = math.nan
        if prev is not None and prev[0] == rec.pid and now > prev[3]:
            steps_per_s = (rec.step - prev[1]) / (now - prev[3])
            tokens_per_s = (rec.tokens - prev[2]) / (now - prev[3])
        self._previous[path] = (rec.pid, rec.step, rec.tokens, now)
        lat = list(rec.latencies)
        return RankHeartbeat(path, rec.pid, rec.rank, rec.step, rec.tokens, now - rec.last_ns / 1e9, steps_per_s,
                             tokens_per_s, percentile(lat, 50), percentile(lat, 99), rec.latency_count, rec.phase,
                             now - rec.phase_ns / 1e9 if rec.phase else math.nan, now - rec.started_ns / 1e9)

