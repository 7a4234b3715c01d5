"""The incident's deployment, planned before launch (shared/incident-report.txt, docs/plan.md worked example).

The report: a dense trillion-parameter model, "nearly 2TB" of FP16 weights, on 512 H100 PCIe 80GB cards with
"a naive implementation of pipeline parallelism", and a 100,000-token document. PCIe cards in four-GPU chassis
have no NVLink for tensor parallelism, so the layout is pipeline-only; 32 stages of 4 layers x 16 replicas is
the layout that loads and serves short prompts but not the 100k-token one (16 stages do not even load).
"""

from __future__ import annotations

import pytest

from coldaisle.plan import MemoryPlan, PowerPlan, load_site, plan_memory, plan_power

GiB = 2.0**30
INCIDENT = {"model": "megatron-1t", "gpu": "h100-pcie-80gb", "gpus": 512, "tp": 1, "pp": 32, "mode": "inference",
            "batch": 1, "context": 100_000, "dtype": "fp16"}


@pytest.fixture(scope="module")
def plan() -> MemoryPlan:
    return plan_memory(**INCIDENT)


def test_the_weights_are_the_reports_2_tb(plan: MemoryPlan) -> None:
    assert 2 * plan.params_total / 1e12 == pytest.approx(2.0, rel=0.02)  # "nearly 2TB" in FP16
    assert plan.capacity_bytes == 81_559 * 2**20  # what the driver reports on an H100 PCIe, not 80e9


def test_it_does_not_fit_per_gpu_and_says_by_how_much(plan: MemoryPlan) -> None:
    assert not plan.fits
    assert plan.margin_bytes == pytest.approx(plan.usable_bytes - plan.total_bytes)
    assert -plan.margin_bytes > 25 * GiB  # far from a rounding question
    assert plan.worst_stage == 0  # the stage that also holds the embedding


def test_weights_dominate_and_the_kv_cache_is_what_the_100k_request_adds(plan: MemoryPlan) -> None:
    assert plan.dominant == "weights"
    layers_per_stage = 128 // 32
    per_token_per_layer = 2 * 25600 * 2  # K and V, all 160 heads x 160 dims (tp 1), 2 bytes
    assert plan.term("kv_cache").bytes == layers_per_stage * 100_000 * per_token_per_layer
    assert plan.term("kv_cache").bytes > -plan.margin_bytes  # without the long request it would have fit


def test_the_largest_context_that_fits_is_the_boundary(plan: MemoryPlan) -> None:
    n = plan.largest_context
    assert n is not None and 1_000 < n < 100_000
    assert plan_memory(**{**INCIDENT, "context": n}, answers=False).fits
    assert not plan_memory(**{**INCIDENT, "context": n + 1}, answers=False).fits
    fixed = plan.total_bytes - plan.term("kv_cache").bytes
    assert n == pytest.approx((plan.usable_bytes - fixed) / plan.kv_bytes_per_token_gpu, abs=1)


def test_fewer_stages_do_not_even_load_and_tensor_parallel_would_have_fit() -> None:
    shallow = plan_memory(**{**INCIDENT, "pp": 16}, answers=False)
    assert shallow.term("weights").bytes > shallow.usable_bytes  # weights alone miss
    assert plan_memory(**{**INCIDENT, "tp": 8, "pp": 8}, answers=False).fits  # the example layout


def test_fewest_cards_that_fit_the_100k_request(plan: MemoryPlan) -> None:
    f = plan.fewest_gpus
    assert f is not None and f.gpus < 512
    assert plan_memory(**{**INCIDENT, "tp": f.tp, "pp": f.pp, "gpus": f.gpus}, answers=False).fits
    for tp in (1, 2, 4, 8):  # no smaller layout within a node fits
        for pp in range(1, 129):
            if tp * pp < f.gpus:
                assert not plan_memory(**{**INCIDENT, "tp": tp, "pp": pp, "gpus": tp * pp}, answers=False).fits


@pytest.fixture(scope="module")
def power() -> PowerPlan:
    return plan_power(load_site("dc4-incident"), "h100-pcie-80gb", 512, 700.0)


def test_512_cards_at_700_w_exceed_the_row_cooling(power: PowerPlan) -> None:
    assert power.cluster_tdp_w == pytest.approx(512 * 700 + 128 * 600)  # 358 kW of GPUs + hosts
    assert not power.fits_at_full
    assert power.binding is not None and power.binding.startswith("row cooling")


def test_the_cap_that_fits_the_row_cooling_budget(power: PowerPlan) -> None:
    # per row: 128 GPUs and 32 hosts of 600 W under 75 kW -> (75,000 - 19,200) / 128 = 435.9 W
    assert power.cap_w == 435
    assert power.throughput_at_cap == pytest.approx(435 / 700)
    row = next(c for c in power.constraints if c.name.startswith("row"))
    assert 128 * power.cap_w + 32 * 600 <= row.capacity_w


def test_minutes_until_the_aisle_passes_40_c_come_from_the_twin(power: PowerPlan) -> None:
    # The report: the cold aisle went "from 18 C to 42 C in under six minutes" at 700 W per card.
    assert power.minutes_to_limit is not None and 3.0 < power.minutes_to_limit < 6.0
    assert power.minutes_to_limit_capped is None  # held at the cap, the twin's aisle never passes 40 C
