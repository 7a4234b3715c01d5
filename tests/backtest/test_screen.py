"""The screen: every rule's condition over a whole chunk at once must be, step for step, what the agent's own
context computes; and the backtest that runs the engine only where the screen finds work must fire exactly as one
that runs it at every step.

The chunk is synthetic but unkind: bursts of heat on some GPUs, a job whose GPUs spin and then stop, memory that
climbs, a PCIe counter that resets, Xids, GPUs that go silent, jobs that start and end, NaNs (a lost GPU) under
`not (...)`, windows (rate, delta, avg_over, max_over, time_to), node and job aggregates and a job-level value.
"""

from __future__ import annotations

import numpy as np
import pytest

from coldaisle.backtest.chunk import Chunk
from coldaisle.backtest.fleet import Fleet
from coldaisle.backtest.result import Timeline
from coldaisle.backtest.run import Evaluator, screen_chunk, warm_steps
from coldaisle.backtest.screen import Steps, masks
from coldaisle.backtest.sources import FAULT_HISTORY, names_read
from coldaisle.policy.context import EvalContext
from coldaisle.policy.loader import LoadedPolicy, load_policy, parse_policy
from coldaisle.policy.step import PolicyStep
from coldaisle.telemetry.frame import DeviceInfo, ThrottleReason

STEP = 5.0
EXTRA = """
rules:
  - name: hot-on-average
    when: avg_over(temperature_c, 60) > 75 and max_over(temperature_c, 30) > 80
    clear: temperature_c < 60
    for: 10 s
    actions: [{do: notify}, {do: power_cap, fraction: 0.5, after: 10 s}]
  - name: hot-node
    scope: node
    when: max(temperature_c) > 85 or count(thermal_throttled > 0) >= 2
    actions: [{do: notify}, {do: drain, after: 20 s}]
    max_actions_per_hour: 2
  - name: memory-moving-unknown
    when: not (rate(memory_used_bytes, 20) <= 0) and lost == 0 and temperature_c > 70
    for: 5 s
    actions: [{do: notify}]
  - name: job-stalled
    scope: job
    when: share(utilization_gpu > 90) > 0.5 and not (job_progress_age_s < 30)
    straggler: utilization_gpu < 50
    for: 15 s
    actions: [{do: notify}, {do: drain, nodes: straggler}, {do: sigterm, after: 10 s}]
"""


def _fleet(nodes: int = 6, per: int = 4) -> Fleet:
    devices = tuple(DeviceInfo(f"n{k:02d}", g, f"GPU-{k}-{g}", "NVIDIA H100 80GB HBM3", 80 * 2**30, 700.0, 700.0,
                               200.0, 87.0, 92.0) for k in range(nodes) for g in range(per))
    index = {(d.node, str(d.index), d.uuid): i for i, d in enumerate(devices)}
    return Fleet(devices, index, [f"n{k:02d}" for k in range(nodes)], np.repeat(np.arange(nodes), per), [], True)


def _chunk(fleet: Fleet, steps: int = 400, seed: int = 7) -> Chunk:
    rng = np.random.default_rng(seed)
    n = len(fleet.devices)
    times = 1.7e9 + STEP * np.arange(steps)
    temp = 45 + rng.normal(0, 2, (steps, n))
    for _ in range(6):  # heat bursts: ramps up and back down on a few GPUs
        g, t0, width = rng.integers(0, n, 3), int(rng.integers(0, steps - 60)), int(rng.integers(10, 50))
        temp[t0:t0 + width, g] += np.linspace(0, 50, width)[:, None]
    util = np.where(rng.random((steps, n)) < 0.9, 60.0, 5.0)
    util[100:180, :12] = 99.0  # job 0's GPUs spin
    mem = np.cumsum(np.where(rng.random((steps, n)) < 0.05, 2.0**30, 0.0), axis=0)
    replay = np.cumsum(rng.poisson(0.3, (steps, n)), axis=0).astype(float)
    replay[150:, 7] += 120.0  # a burst of PCIe replays on one GPU
    lost = np.zeros((steps, n), bool)
    lost[300:340, 5] = True
    temp[lost] = util[lost] = mem[lost] = np.nan
    throttle = np.where(temp > 84, np.uint64(ThrottleReason.HW_THERMAL_SLOWDOWN), np.uint64(0)).astype(np.uint64)
    xid = np.full((steps, n), np.nan)
    xid[[60, 200, 210], [3, 9, 9]] = [48.0, 79.0, 63.0]
    job_of = np.full((steps, n), -1, dtype=np.intp)
    job_of[:220, :12], job_of[50:, 12:20] = 0, 1  # job 0 ends at step 220, job 1 starts at step 50
    progress = np.where(np.arange(steps)[:, None] < 120, 1.0, STEP * (np.arange(steps)[:, None] - 120))
    job_values = {"job_progress_age_s": np.hstack([progress, np.full((steps, 1), np.nan)])}
    return Chunk(times, 0, {"temperature_c": temp, "utilization_gpu": util, "memory_used_bytes": mem,
                            "pcie_replay_total": replay, "memory_total_bytes": np.full((steps, n), 80.0 * 2**30)},
                 throttle, lost, np.zeros((steps, n)), xid, job_of, ["slurm:1", "slurm:2"], job_values, {})


def _policy() -> LoadedPolicy:
    default = load_policy("default")
    keep = [cr for cr in default.rules if cr.rule.scope != "process" and FAULT_HISTORY not in names_read(cr)
            and cr.rule.name not in ("inlet-too-hot", "host-memory-pressure", "collective-hang")]
    extra = parse_policy(EXTRA, "extra.yaml")
    return LoadedPolicy(default.policy, keep + extra.rules, "test")


def test_the_screen_computes_what_the_agents_context_computes_at_every_step() -> None:
    fleet, lp = _fleet(), _policy()
    chunk = _chunk(fleet)
    ev = Evaluator(lp, fleet, STEP, warm_steps(lp.rules, STEP))
    batched = masks(lp.rules, Steps(chunk, fleet, ev.maker.memory_total))
    step = PolicyStep(lp, devices=len(fleet.devices), interval_s=STEP, wall=lambda: 0.0)
    held = 0
    for k in range(len(chunk.times)):
        frame, nodes, jobs = ev.maker.frame(chunk, k), ev.maker.nodes(chunk, k), ev.maker.jobs(chunk, k)
        ctx = EvalContext(frame, nodes, jobs, step.history, xid_last=step.xids.column(frame))
        step.history.append(frame, {c: ctx.column(c, "device") for c in step.history.columns})
        for cr in lp.rules:
            want = np.asarray(cr.when.fn(ctx), dtype=bool)
            got = batched[cr.rule.name][k]
            if cr.rule.scope == "job":  # the screen has a column for every job; the agent lists the running ones
                present = [chunk.jobs.index(name) for name in jobs.names]
                assert not got[np.setdiff1d(np.arange(len(chunk.jobs)), present)].any()
                got = got[present]
            assert np.array_equal(got, want), f"{cr.rule.name} at step {k}"
            held += int(want.sum())
    assert held > 50  # the conditions did hold, often: the comparison was not of empty masks


@pytest.mark.parametrize("seed", [7, 11])
def test_running_the_engine_only_where_the_screen_finds_work_fires_exactly_as_every_step(seed: int) -> None:
    fleet, lp = _fleet(), _policy()
    chunk = _chunk(fleet, seed=seed)
    results = []
    for every in (True, False):
        ev = Evaluator(lp, fleet, STEP, warm_steps(lp.rules, STEP))
        busy, steps = screen_chunk(chunk, lp.rules, fleet, ev, Timeline(), STEP)
        ev.run(chunk, np.ones(len(chunk.times), bool) if every else busy, steps)
        firings = [(f.rule, f.subject, f.first, f.last, f.cleared,
                    [(a.at, a.rung, a.do, a.target, a.status) for a in f.actions]) for f in ev.recorder.finish()]
        results.append((firings, ev.evaluated))
    (every, n_every), (screened, n_screened) = results
    assert screened == every
    assert {f[0] for f in every} >= {"hot-on-average", "hot-node", "job-stalled", "gpu-lost-or-critical-xid",
                                     "pcie-errors", "thermal-approaching-slowdown"}
    assert n_screened < n_every  # and the screen did skip steps
