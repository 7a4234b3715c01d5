"""Cost of `coldaisle.progress()` per call beside an empty function call (issue target: <= 2 µs per call).

Run: python benchmarks/bench_heartbeat.py [--calls 1000000] [--batch 1000]

Every case is timed the same way in the same run, batches interleaved round-robin so drift hits all alike:
  batches  `--calls` calls per case in batches of `--batch`, perf_counter_ns around each batch; the per-call
           cost of a batch is its time / batch; median and p99 over the batches. `empty_loop` (the bare
           `for` loop) is measured too, and `net_ns` subtracts it.
  single   `--calls` individual calls per case, perf_counter_ns before and after each; `timer` (nothing
           between the two reads) is their own overhead, subtracted from the median and p99 in `net_ns`.
           Single-call figures are quantised by the clock and inflated by every interrupt: an upper bound.
Cases: `empty_function()` (the baseline: a Python call that does nothing, same signature), `progress()` with
no supervisor (the no-op), `progress()` with a heartbeat directory, `progress(step=i, tokens=x)` and
`latency(x)`. `layouts` compares the shipped memoryview stores with `struct.pack_into` and a ctypes structure
doing the same seqlock update on an anonymous mapping. `clock` checks that `time.monotonic_ns()` costs a
vDSO call, not a system call: its time beside `os.getppid()` (a real system call), and, when `strace` is
installed, the system calls of a child doing 0 and then 100,000 `progress()` calls.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import mmap
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coldaisle.guard import heartbeat as hb

perf_ns = time.perf_counter_ns


def empty_function(step: int | None = None, tokens: float | None = None) -> None:
    """The baseline: a call with the same signature that does nothing."""


def pct(values: list[float] | array[Any], q: float) -> float:
    """The q-th percentile (nearest rank) of values."""
    s = sorted(values)
    return float(s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))])


def batched(cases: dict[str, Callable[[], None]], calls: int, batch: int) -> dict[str, dict[str, float]]:
    """Per-call ns from batch means, every case's batches interleaved."""
    means: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(calls // batch):
        for name, run in cases.items():
            t0 = perf_ns()
            run()
            means[name].append((perf_ns() - t0) / batch)
    loop = pct(means["empty_loop"], 50)
    return {name: {"median_ns": round(pct(m, 50), 1), "p99_ns": round(pct(m, 99), 1),
                   "net_median_ns": round(pct(m, 50) - loop, 1)} for name, m in means.items()}


def batch_runner(fn: Callable[..., None], batch: int, kind: str) -> Callable[[], None]:
    """A loop of `batch` calls of fn written out the way a user's loop calls it."""
    r = range(batch)
    if kind == "loop":
        def run() -> None:
            for _ in r:
                pass
    elif kind == "step_tokens":
        def run() -> None:
            for i in r:
                fn(step=i, tokens=2.0 * i)
    elif kind == "latency":
        def run() -> None:
            for _ in r:
                fn(0.045)
    else:
        def run() -> None:
            for _ in r:
                fn()
    return run


def single(cases: dict[str, Callable[[], None]], calls: int) -> dict[str, dict[str, float]]:
    """Each call timed alone; the timer's own cost (two back-to-back reads) measured the same way."""
    samples = {name: array("q") for name in ("timer", *cases)}
    for _ in range(calls):
        t0 = perf_ns()
        t1 = perf_ns()
        samples["timer"].append(t1 - t0)
        for name, fn in cases.items():
            t0 = perf_ns()
            fn()
            t1 = perf_ns()
            samples[name].append(t1 - t0)
    timer = pct(samples["timer"], 50)
    out = {}
    for name, s in samples.items():
        med, p99 = pct(s, 50), pct(s, 99)
        out[name] = {"median_ns": med, "p99_ns": p99, "net_median_ns": med - timer, "net_p99_ns": p99 - timer}
    return out


def layouts(calls: int, batch: int) -> dict[str, dict[str, float]]:
    """The same seqlock update three ways over an anonymous mapping: why progress() uses memoryview stores."""
    mm = mmap.mmap(-1, 4096)
    q, d = memoryview(mm).cast("q"), memoryview(mm).cast("d")
    one, three = struct.Struct("=q"), struct.Struct("=qdq")

    class Rec(ctypes.Structure):
        _fields_ = [("head", ctypes.c_int64 * 6), ("seq", ctypes.c_int64), ("step", ctypes.c_int64),
                    ("tokens", ctypes.c_double), ("updated", ctypes.c_int64)]

    rec = Rec.from_buffer(mm)
    mono = time.monotonic_ns
    state = {"seq": 0}

    def with_memoryview(step: int = 1, tokens: float = 2.0) -> None:
        seq = state["seq"]
        now = mono()
        q[6] = seq + 1
        q[7] = step
        d[8] = tokens
        q[9] = now
        q[6] = seq + 2
        state["seq"] = seq + 2

    def with_pack_into(step: int = 1, tokens: float = 2.0) -> None:
        seq = state["seq"]
        now = mono()
        one.pack_into(mm, 48, seq + 1)
        three.pack_into(mm, 56, step, tokens, now)
        one.pack_into(mm, 48, seq + 2)
        state["seq"] = seq + 2

    def with_ctypes(step: int = 1, tokens: float = 2.0) -> None:
        seq = state["seq"]
        now = mono()
        rec.seq = seq + 1
        rec.step = step
        rec.tokens = tokens
        rec.updated = now
        rec.seq = seq + 2
        state["seq"] = seq + 2

    cases = {"empty_loop": batch_runner(empty_function, batch, "loop")}
    for fn in (with_memoryview, with_pack_into, with_ctypes):
        cases[fn.__name__] = batch_runner(fn, batch, "call")
    return batched(cases, calls, batch)  # the mapping lives as long as the closures (ctypes holds it)


CHILD = """
import sys, coldaisle
coldaisle.progress()
for _ in range(int(sys.argv[1])):
    coldaisle.progress()
"""


def syscalls_of_child(directory: Path, n: int) -> dict[str, int] | None:
    """System calls (total and clock_gettime) of a child doing n progress() calls, counted by strace -c."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    out = directory / f"strace-{n}.txt"
    env = {**os.environ, hb.ENV_VAR: str(directory), "RANK": "0"}
    subprocess.run([strace, "-f", "-c", "-o", str(out), sys.executable, "-c", CHILD, str(n)], env=env, check=True)
    counts = {"total": 0, "clock_gettime": 0}
    for line in out.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in counts and parts[0][0].isdigit():
            counts[parts[-1]] = int(parts[3])  # % time, seconds, usecs/call, calls, [errors,] name
    return counts


def clock(calls: int, batch: int) -> dict[str, Any]:
    """monotonic_ns beside a real system call, and the system calls that progress() makes."""
    cases = {"empty_loop": batch_runner(empty_function, batch, "loop"),
             "time.monotonic_ns": batch_runner(time.monotonic_ns, batch, "call"),
             "os.getppid (a system call)": batch_runner(os.getppid, batch, "call")}
    result: dict[str, Any] = {"per_call": batched(cases, calls, batch)}
    src = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    result["clocksource"] = src.read_text().strip() if src.exists() else None
    with tempfile.TemporaryDirectory() as tmp:
        zero, many = syscalls_of_child(Path(tmp), 0), syscalls_of_child(Path(tmp), 100_000)
    if zero and many:
        result["strace_child"] = {"0_calls": zero, "100000_calls": many,
                                  "extra_syscalls_per_call": (many["total"] - zero["total"]) / 100_000}
    return result


def progress_cases(calls: int, batch: int, single_calls: int) -> dict[str, Any]:
    """The issue's figures: progress() with and without a supervisor beside the empty function."""
    hb.close()
    os.environ.pop(hb.ENV_VAR, None)
    hb.progress()  # settles into the no-op
    noop = hb.progress
    cases = {"empty_loop": batch_runner(empty_function, batch, "loop"),
             "empty_function": batch_runner(empty_function, batch, "call"),
             "progress_noop": batch_runner(noop, batch, "call")}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # the no-op cases run first (their state is one module global), then the same again with a supervisor
        out["batches_no_supervisor"] = batched(cases, calls, batch)
        out["single_no_supervisor"] = single({"empty_function": empty_function, "progress_noop": noop}, single_calls)
        hb.close()
        os.environ[hb.ENV_VAR], os.environ["RANK"] = tmp, "0"
        hb.progress()
        cases = {"empty_loop": cases["empty_loop"], "empty_function": cases["empty_function"],
                 "progress": batch_runner(hb.progress, batch, "call"),
                 "progress_step_tokens": batch_runner(hb.progress, batch, "step_tokens"),
                 "latency": batch_runner(hb.latency, batch, "latency")}
        out["batches_supervised"] = batched(cases, calls, batch)
        out["single_supervised"] = single({"empty_function": empty_function, "progress": hb.progress}, single_calls)
        snap = hb.HeartbeatReader(tmp).read()
        out["reader_saw"] = {"step": snap.ranks[0].step, "latency_count": snap.ranks[0].latency_count}
        t0 = perf_ns()
        reader = hb.HeartbeatReader(tmp)
        for _ in range(1000):
            reader.read()
        out["reader_us_per_read_1_rank"] = round((perf_ns() - t0) / 1000 / 1000, 1)
        hb.close()
    return out


def main() -> None:
    """Run every case and print the figures as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    started = time.perf_counter()
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} nproc={len(os.sched_getaffinity(0))} {platform.platform()}",
        "python": platform.python_version(), "calls_per_case": args.calls, "batch": args.batch,
    }
    result.update(progress_cases(args.calls, args.batch, args.calls))
    result["layouts"] = layouts(args.calls, args.batch)
    result["clock"] = clock(args.calls // 10, args.batch)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
