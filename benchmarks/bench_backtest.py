"""`coldaisle policy backtest` speed: a week of 512 GPUs at 15 s (issue 15 target: <= 60 s, Prometheus' own query
time not counted, and measured separately).

Run: python benchmarks/bench_backtest.py [--days 7] [--prometheus-hours 3]

Two parts, each in this process:
  evaluate    a week of 40,320 steps x 512 GPUs, as the reader hands it over (`load.Chunk`s of 2,929 steps: the
              rows generated outside the clock), through the backtest's own `screen_chunk` and `Evaluator.run`: the
              default policy's dcgm-evaluable rules (job progress unknown), with incidents sprinkled in (heat, PCIe
              bursts, Xids, a GPU lost for an hour, a spinning job). Baseline in the same run: the same chunks with
              the engine at every step (no screen), i.e. the agent's own loop over the week.
  read        the prometheus-unbound night's first `--prometheus-hours` hours from the twin (512 GPUs, every
              15 s, the families the default policy reads), backfilled by promtool into the Debian `prometheus`
              and backtested end to end (`backtest()`): the wall time, this process's CPU time (decoding, placing
              and correcting samples, evaluating: ours) and the time spent waiting on Prometheus (its query work,
              serialisation and transfer, summed over the four reading threads). Baseline in the same run: one
              answer decoded with `json.loads` and a per-sample loop, the obvious reader, beside ours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from coldaisle.backtest.chunk import Chunk, join
from coldaisle.backtest.fleet import Fleet
from coldaisle.backtest.result import Timeline
from coldaisle.backtest.run import Evaluator, screen_chunk, warm_steps
from coldaisle.backtest.sources import FAULT_HISTORY, names_read
from coldaisle.policy.loader import LoadedPolicy, load_policy
from coldaisle.telemetry.frame import DeviceInfo

STEP = 15.0
N_NODES, PER_NODE = 128, 4
SKIP = ("runaway-power-process", "inlet-too-hot", "host-memory-pressure")


def policy() -> LoadedPolicy:
    """The default policy as a dcgm-exporter site can evaluate it (no process rows, no inlet, no host PSI)."""
    lp = load_policy("default")
    return LoadedPolicy(lp.policy, [cr for cr in lp.rules if cr.rule.name not in SKIP
                                    and FAULT_HISTORY not in names_read(cr)], lp.source)


def fleet() -> Fleet:
    """512 H100s on 128 nodes, named as dcgm-exporter names them."""
    devices = tuple(DeviceInfo(f"node-gpu-{k:03d}", g, f"GPU-{k:03d}-{g}", "NVIDIA H100 80GB HBM3", 85520809984,
                               700.0, 700.0, 200.0, 87.0, 92.0) for k in range(N_NODES) for g in range(PER_NODE))
    index = {(d.node, str(d.index), d.uuid): i for i, d in enumerate(devices)}
    names = [f"node-gpu-{k:03d}" for k in range(N_NODES)]
    return Fleet(devices, index, names, np.repeat(np.arange(N_NODES), PER_NODE), [], True)


def rows(start: int, count: int, replay0: np.ndarray, rng: np.random.Generator) -> tuple[Chunk, np.ndarray]:
    """Steps [start, start + count) of a busy week (healthy training, a few incidents), as the reader would hand
    them over; dcgm-exporter reports whole degrees. Returns the rows and the PCIe counters at their end."""
    k = np.arange(start, start + count)
    n = N_NODES * PER_NODE
    temp = np.round(62 + 4 * np.sin(k / 240.0)[:, None] + rng.normal(0, 0.7, (count, n)))
    util = np.clip(np.round(rng.normal(92, 3, (count, n))), 0, 100)
    memu = np.clip(np.round(rng.normal(45, 8, (count, n))), 0, 100)
    mem = np.full((count, n), 70 * 2.0**30) + np.round(rng.normal(0, 256, (count, n))) * 2.0**20
    replay = replay0 + np.cumsum(rng.poisson(0.02, (count, n)), axis=0)
    xid, lost = np.full((count, n), np.nan), np.zeros((count, n), bool)
    for i in np.flatnonzero(k % 2880 == 1000):  # twice a day a GPU heats by 25 C over ten minutes, and cools
        temp[i:i + 40, (k[i] // 2880) % n] += np.linspace(0, 25, 40)[: min(40, count - i)]
    for i in np.flatnonzero(k % 5760 == 3000):  # every other day: a PCIe burst, an Xid 48, a GPU lost for an hour
        g = int(k[i] // 5760) % n
        replay[i:, g] += 200
        xid[i, (g + 7) % n] = 48
        lost[i:i + 240, (g + 11) % n] = True
    spin = (k % 10080 >= 5000) & (k % 10080 < 5040)  # once a week a job spins in a collective for ten minutes
    util[spin, :64], memu[spin, :64] = 99.0, 1.0
    temp[lost] = util[lost] = memu[lost] = mem[lost] = np.nan
    zeros = np.zeros((count, n))
    job_of = np.broadcast_to(np.repeat(np.arange(N_NODES // 16), 16 * PER_NODE), (count, n)).copy()
    jobs = [f"slurm:{1000 + j}" for j in range(N_NODES // 16)]
    chunk = Chunk(1.7e9 + STEP * k, 0, {"temperature_c": temp, "utilization_gpu": util, "utilization_memory": memu,
                                        "memory_used_bytes": mem, "pcie_replay_total": replay,
                                        "pcie_rx_bytes_per_s": zeros, "nvlink_rx_bytes_per_s": zeros},
                  np.zeros((count, n), np.uint64), lost, zeros, xid, job_of, jobs,
                  {"job_progress_age_s": np.full((count, len(jobs)), np.nan)}, {})
    return chunk, replay[-1].copy()


def week(days: float, warm: int, per: int = 2929):
    """The chunks the reader would yield: the first led by `warm` steps from before, each next by the last one's
    tail (load.py's own joining)."""
    rng = np.random.default_rng(15)
    total, replay, tail, k = int(days * 86400 / STEP), np.zeros(N_NODES * PER_NODE), None, -warm
    while k < total:
        count = min(per + (warm if tail is None else 0), total - k)
        new, replay = rows(k, count, replay, rng)
        chunk = replace(new, first=warm) if tail is None else join(tail, new)
        yield chunk
        tail, k = chunk.tail(warm), k + count


def part_evaluate(days: float, every_step: bool) -> dict[str, float]:
    """Screen and engine over `days` of synthetic chunks; generation is outside the clock."""
    lp, fl = policy(), fleet()
    warm = warm_steps(lp.rules, STEP)
    ev = Evaluator(lp, fl, STEP, warm)
    spent, timeline, steps = 0.0, Timeline(), 0
    for c in week(days, warm):
        t0 = time.perf_counter()
        busy, screen = screen_chunk(c, lp.rules, fl, ev, timeline, STEP)
        ev.run(c, np.ones(len(c.times), bool) if every_step else busy, screen)
        spent += time.perf_counter() - t0
        steps += len(c.times) - c.first
    firings = ev.recorder.finish()
    return {"steps": steps, "evaluated_steps": ev.evaluated, "seconds": round(spent, 2), "firings": len(firings),
            "rules_fired": sorted({f.rule for f in firings}),
            "signature": hash(tuple((f.rule, f.subject, f.first, f.last) for f in firings))}


NEEDED = ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_PROF_PCIE_RX_BYTES",
          "DCGM_FI_PROF_NVLINK_RX_BYTES", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
          "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_SLOWDOWN_TEMP")


@contextmanager
def night_in_prometheus(hours: float, workdir: Path) -> Iterator[tuple[str, float]]:
    """The twin's night (its first `hours`) backfilled by promtool and served by `prometheus`: (URL, start)."""
    from coldaisle.backtest.prom import Prometheus
    from coldaisle.replay.openmetrics import recorded_run
    from coldaisle.sim.run import load_plan

    plan = load_plan("prometheus-unbound")
    om = workdir / "night.om"
    recorded_run(plan, om, every_s=STEP, until_s=hours * 3600, names=NEEDED)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(workdir / "data")],
                   check=True, capture_output=True)
    om.unlink()
    (workdir / "p.yml").write_text("global: {scrape_interval: 1h}\n")
    proc = subprocess.Popen(["prometheus", f"--config.file={workdir / 'p.yml'}", "--web.listen-address=127.0.0.1:19191",
                             f"--storage.tsdb.path={workdir / 'data'}", "--storage.tsdb.retention.time=100y"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    try:
        for _ in range(150):
            try:
                Prometheus("http://127.0.0.1:19191").series("up", 0, 1)
                break
            except Exception:  # not ready yet
                time.sleep(0.2)
        yield "http://127.0.0.1:19191", plan.start_epoch
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def part_read(hours: float, workdir: Path) -> dict[str, float]:
    """The twin's night in a real Prometheus, backtested: our CPU apart from waiting on Prometheus; one answer
    decoded by ours and by json."""
    from coldaisle.backtest.mapping import Mapping, apply
    from coldaisle.backtest.prom import Prometheus, decode_matrix
    from coldaisle.backtest.run import Window, backtest

    with night_in_prometheus(hours, workdir) as (url, start):
        prom = Prometheus(url)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        r = backtest(prom, load_policy("default"), apply(Mapping(unknown=["job_progress_age_s"]), None),
                     Window(start, start + hours * 3600, STEP))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        body = prom._post("query_range", {"query": "DCGM_FI_DEV_GPU_TEMP", "start": f"{start}",
                                          "end": f"{start + 2928 * STEP}", "step": "15"}, "bench")
    t0 = time.perf_counter()
    decode_matrix(body, STEP)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in json.loads(body)["data"]["result"]:
        np.array([float(v) for _, v in s["values"]]), np.array([float(t) for t, _ in s["values"]])
    naive = time.perf_counter() - t0
    return {"hours": hours, "steps": r.steps["grid"], "wall_s": round(wall, 2), "our_cpu_s": round(cpu, 2),
            "prometheus_wait_s_summed_over_4_threads": round(r.seconds["prometheus"], 2),
            "read_wall_s": round(r.seconds["read"], 2), "evaluate_wall_s": round(r.seconds["evaluate"], 2),
            "fetched_mib": round(prom.fetched_bytes / 2**20, 1), "firings": len(r.firings),
            "decode_one_answer_s": round(ours, 3), "json_loads_one_answer_s": round(naive, 3),
            "answer_mib": round(len(body) / 2**20, 1)}


def main() -> None:
    """Run the parts and print the figures as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--prometheus-hours", type=float, default=3.0, help="0: skip the read part")
    args = ap.parse_args()
    out: dict[str, object] = {"machine": f"{platform.machine()} nproc={len(os.sched_getaffinity(0))}",
                              "load_before": os.getloadavg()}
    out["screened"] = part_evaluate(args.days, every_step=False)
    out["every_step_baseline"] = part_evaluate(args.days, every_step=True)
    out["ratio_screened_to_every_step"] = round(out["screened"]["seconds"] / out["every_step_baseline"]["seconds"], 3)
    if args.prometheus_hours > 0 and shutil.which("promtool") and shutil.which("prometheus"):
        with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
            out["read"] = part_read(args.prometheus_hours, Path(tmp))
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["load_after"] = os.getloadavg()
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
