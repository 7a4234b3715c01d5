"""What a real fleet's history looks like, backfilled into a real Prometheus: missed scrapes, a counter that resets,
a job label that comes and goes, and a GPU whose series stop (no staleness markers: `query_range` repeats its last
value for five minutes, so only the samples' own timestamps tell it is gone).

Site: nodes a1 and a2, two GPUs each, dcgm-exporter scraped every 15 s for 30 minutes from T0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from promdata import T0, backfilled, dcgm, om_text

from coldaisle.backtest.mapping import load_mapping
from coldaisle.backtest.prom import Prometheus
from coldaisle.backtest.run import Window, backtest
from coldaisle.policy.loader import parse_policy

SCRAPE = 15.0
TIMES = T0 + SCRAPE * np.arange(121)  # 03:00:00 .. 03:30:00
POLICY = """
rules:
  - name: hot
    when: temperature_c > 90
    for: 60 s
    actions: [{do: notify}]
  - name: pcie-errors
    when: delta(pcie_replay_total, 60) > 50
    actions: [{do: notify}, {do: drain}]
  - name: gpu-lost
    when: lost > 0
    actions: [{do: notify}, {do: drain}]
  - name: near-slowdown
    when: temperature_c >= slowdown_c + 5
    actions: [{do: notify}]
  - name: job-busy
    scope: job
    when: share(utilization_gpu > 90) > 0.5
    for: 30 s
    actions: [{do: notify}]
  - name: straggler-rank
    scope: job
    when: job_straggler_score >= 0.2
    for: 2 min
    actions: [{do: notify}]
"""
GAP = (TIMES > T0 + 600) & (TIMES < T0 + 640)  # a1/gpu1 misses two scrapes (03:10:15, 03:10:30)
STOP = T0 + 1500.0  # a2/gpu1's series stop at 03:25:00
JOB = (TIMES >= T0 + 300) & (TIMES < T0 + 1200)  # job 77 holds a1's GPUs 03:05-03:20
SLOW = (TIMES >= T0 + 600) & JOB  # its rank 1 falls behind from 03:10 (score 0.3), rank 0 keeps up (0.02)


def _site() -> str:
    temp, util, replay = {}, {}, {}
    for node in ("a1", "a2"):
        for g in (0, 1):
            temp[(node, g)] = np.full(TIMES.size, 50.0)
            util[(node, g)] = np.where(JOB, 99.0, 10.0) if node == "a1" else np.full(TIMES.size, 10.0)
            replay[(node, g)] = np.full(TIMES.size, 1000.0)
    hot = (TIMES >= T0 + 570) & (TIMES <= T0 + 720)  # a1/gpu1 at 95 C from 03:09:30, through its missed scrapes
    temp[("a1", 1)][hot] = 95.0
    after = TIMES >= T0 + 900  # a2/gpu0: the driver reloads at 03:15 (counter back to 0) and 70 replays follow
    replay[("a2", 0)][after] = np.minimum(70.0, (TIMES[after] - T0 - 900) * 7.0)
    families: dict[str, list] = {"DCGM_FI_DEV_GPU_TEMP": [], "DCGM_FI_DEV_GPU_UTIL": [],
                                 "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": []}
    for (node, g), t in temp.items():
        keep = ~GAP if (node, g) == ("a1", 1) else TIMES < STOP if (node, g) == ("a2", 1) else np.ones_like(JOB)
        for name, values in (("DCGM_FI_DEV_GPU_TEMP", t), ("DCGM_FI_DEV_GPU_UTIL", util[(node, g)]),
                             ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", replay[(node, g)])):
            for in_job in (False, True):  # the job label makes a second series while the job holds the GPU
                sel = keep & (JOB if in_job else ~JOB) if node == "a1" else keep & (not in_job)
                labels = dcgm(node, g, **({"hpc_job": "77"} if in_job else {}))
                if sel.any():
                    families[name].append((labels, list(zip(TIMES[sel], values[sel], strict=True))))
    scores = [({"node": "a1", "workload": "slurm:77", "rank": str(r), "host": "a1", "gpu": str(r)},
               list(zip(TIMES[JOB], np.where(SLOW, 0.3 if r else 0.02, 0.02)[JOB], strict=True))) for r in (0, 1)]
    families["coldaisle_job_rank_straggler_score"] = scores  # coldaisle's agent: one series per rank
    return om_text(families)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> object:
    path = Path(tmp_path_factory.mktemp("site")) / "site.om"
    path.write_text(_site())
    with backfilled(path) as server:
        return backtest(Prometheus(server.url), parse_policy(POLICY, "site.yaml"), load_mapping(None),
                        Window(T0, T0 + 1800.0, SCRAPE))


def _firings(result, rule: str) -> list:  # type: ignore[no-untyped-def]
    return [f for f in result.firings if f.rule == rule]


@pytest.mark.prometheus
def test_missed_scrapes_hold_the_last_value_and_are_not_a_lost_gpu(result) -> None:  # type: ignore[no-untyped-def]
    assert result.lost_after == pytest.approx(3 * SCRAPE)  # three scrape intervals, read from the timestamps
    (hot,) = _firings(result, "hot")
    assert hot.subject == "a1/gpu1" and hot.uuid == "GPU-a1-1" and hot.gpu == 1
    assert hot.first == T0 + 630  # held from 03:09:30 through the gap: `for: 60 s` was not reset by it
    assert hot.cleared and hot.last == T0 + 720
    assert all(f.subject != "a1/gpu1" for f in _firings(result, "gpu-lost"))


@pytest.mark.prometheus
def test_card_facts_come_from_the_gpu_catalog_by_model_name(result) -> None:  # type: ignore[no-untyped-def]
    (near,) = _firings(result, "near-slowdown")  # NVIDIA H100 80GB HBM3: slowdown 87 C in gpus.yaml; 95 >= 92
    assert (near.subject, near.first, near.last) == ("a1/gpu1", T0 + 570, T0 + 720)
    assert not result.notes  # every model was in the catalog


@pytest.mark.prometheus
def test_a_counter_reset_counts_the_increase_after_it_as_prometheus_does(result) -> None:  # type: ignore[no-untyped-def]
    (pcie,) = _firings(result, "pcie-errors")
    assert pcie.subject == "a2/gpu0"
    assert T0 + 900 < pcie.first <= T0 + 960  # 1000 -> 0 -> 70 within a minute: an increase of 70, not -930
    assert [a.do for a in pcie.actions] == ["notify", "drain"] and pcie.actions[1].status == "would act"


@pytest.mark.prometheus
def test_a_gpu_whose_series_stop_is_lost_by_its_samples_own_timestamps(result) -> None:  # type: ignore[no-untyped-def]
    (lost,) = _firings(result, "gpu-lost")
    last_sample = TIMES[TIMES < STOP][-1]
    assert lost.subject == "a2/gpu1" and lost.uuid == "GPU-a2-1"
    assert lost.first == last_sample + 4 * SCRAPE  # the first step whose newest sample is older than 45 s
    assert not lost.cleared  # still lost when the window ends (Prometheus itself would show it 5 more minutes)
    assert lost.evidence.get("gpu") == "a2/gpu1"


@pytest.mark.prometheus
def test_jobs_come_from_dcgm_exporters_hpc_job_label(result) -> None:  # type: ignore[no-untyped-def]
    (busy,) = _firings(result, "job-busy")
    assert busy.subject == busy.job == "slurm:77" and busy.nodes == ["a1"]
    assert busy.first == T0 + 330 and busy.last == T0 + 1185  # 30 s after the label came; until it went


@pytest.mark.prometheus
def test_a_jobs_straggler_score_is_its_slowest_ranks(result) -> None:  # type: ignore[no-untyped-def]
    """Read from coldaisle's per-rank series: the slow rank's 0.3, not the other's 0.02 (nor the freshest)."""
    (slow,) = _firings(result, "straggler-rank")
    assert slow.subject == "slurm:77" and slow.first == T0 + 720  # 2 minutes after 03:10
    assert slow.evidence.get("job_straggler_score") == pytest.approx(0.3)
    assert "straggler-rank" not in [s.rule for s in result.skipped]
