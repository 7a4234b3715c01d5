"""How the breakdown moves with the layout: sharding, replication of KV heads, MLA, MoE, quantisation, windows."""

from __future__ import annotations

import pytest

from coldaisle.plan import plan_memory
from coldaisle.plan.arch import model_catalog
from coldaisle.plan.dtypes import WEIGHT_BYTES, WeightDtype
from coldaisle.plan.memory import stage_bounds
from coldaisle.plan.params import layer_params

GiB = 2.0**30


def kv(model: str, **kw: object) -> float:
    return plan_memory(model=model, answers=False, **kw).term("kv_cache").bytes


def test_tensor_parallel_splits_kv_heads_until_it_runs_out_then_replicates() -> None:
    # Llama-3-70B has 8 KV heads: tp 8 gives each rank one; tp 16 and 32 cannot split further.
    base = kv("llama-3-70b", context=8192, tp=1)
    assert kv("llama-3-70b", context=8192, tp=2) == pytest.approx(base / 2)
    assert kv("llama-3-70b", context=8192, tp=8) == pytest.approx(base / 8)
    assert kv("llama-3-70b", context=8192, tp=16) == pytest.approx(base / 8)
    assert kv("llama-3-70b", context=8192, tp=32) == pytest.approx(base / 8)


def test_weights_keep_shrinking_with_tp_while_kv_does_not() -> None:
    w8 = plan_memory(model="llama-3-70b", tp=8, answers=False).term("weights").bytes
    w16 = plan_memory(model="llama-3-70b", tp=16, answers=False).term("weights").bytes
    assert w16 < 0.55 * w8


def test_mqa_caches_one_head_and_mla_caches_the_latent_on_every_rank() -> None:
    # DeepSeek-V2 (arXiv:2405.04434) s.2.1: MLA caches (d_c + d_h^R) elements per token per layer: 512 + 64.
    a = model_catalog()["deepseek-v3"]
    plan = plan_memory(model="deepseek-v3", gpu="b200-180gb", tp=8, pp=8, context=1000, dtype="fp8", answers=False)
    assert plan.attention == "mla"
    assert plan.kv_bytes_per_token == a.layers * (512 + 64) * 2
    per_gpu = kv("deepseek-v3", gpu="b200-180gb", tp=8, pp=8, context=1000, dtype="fp8")
    assert per_gpu == pytest.approx(kv("deepseek-v3", gpu="b200-180gb", tp=1, pp=8, context=1000, dtype="fp8"))
    mha = model_catalog()["llama-2-7b"]
    assert mha.attention == "mha" and model_catalog()["llama-2-70b"].attention == "gqa"


def test_kv_cache_dtype_and_batch_scale_the_cache() -> None:
    f16 = kv("llama-3.1-8b", context=32768, batch=4)
    assert kv("llama-3.1-8b", context=32768, batch=4, kv_dtype="fp8") == pytest.approx(f16 / 2)
    assert kv("llama-3.1-8b", context=32768, batch=8) == pytest.approx(f16 * 2)


def test_a_sliding_window_bounds_the_cache() -> None:
    # Mistral-7B-v0.1 config.json: sliding_window 4096; v0.3 has none.
    assert kv("mistral-7b-v0.1", context=32768) == pytest.approx(kv("mistral-7b-v0.1", context=4096))
    assert kv("mistral-7b-v0.3", context=32768) == pytest.approx(8 * kv("mistral-7b-v0.3", context=4096))


def test_quantised_weights_pay_for_their_scales_and_keep_embeddings_16_bit() -> None:
    plan = plan_memory(model="llama-2-7b", dtype="int4", answers=False)
    a = model_catalog()["llama-2-7b"]
    linear = sum(layer_params(a, i).total - layer_params(a, i).norms for i in range(a.layers))
    dense = 2 * a.vocab * a.hidden + a.layers * 2 * a.hidden + a.hidden
    assert plan.term("weights").bytes == pytest.approx(linear * 4.25 / 8 + dense * 2)
    assert WEIGHT_BYTES[WeightDtype.NF4].bytes * 8 == pytest.approx(4.127)  # QLoRA double quantisation


def test_expert_parallel_spreads_the_experts() -> None:
    one = plan_memory(model="mixtral-8x7b", gpu="h100-sxm-80gb", gpus=8, tp=8, answers=False)
    ep8 = plan_memory(model="mixtral-8x7b", gpu="h100-sxm-80gb", gpus=8, tp=8, ep=8, answers=False)
    # Same GPUs either way: experts split 8 ways by expert-tensor-parallel or by expert parallel.
    assert one.term("weights").bytes == pytest.approx(ep8.term("weights").bytes, rel=0.01)
    dp = plan_memory(model="mixtral-8x7b", mode="training", gpus=64, tp=8, ep=8, zero=1, context=4096,
                     answers=False)
    assert dp.layout.dp == 8


def test_pipeline_stages_split_layers_and_the_first_stage_holds_the_embedding() -> None:
    assert stage_bounds(10, 4) == [(0, 2), (2, 2), (4, 3), (7, 3)]
    plan = plan_memory(model="llama-3.1-8b", pp=4, answers=False)
    assert [s.layers for s in plan.stages] == [8, 8, 8, 8]
    assert plan.stages[0].bytes > plan.stages[1].bytes  # embedding (vocab 128,256)


def test_training_pipeline_keeps_more_micro_batches_on_early_stages() -> None:
    plan = plan_memory(model="llama-3.1-8b", mode="training", gpus=32, pp=4, tp=8, context=4096, answers=False)
    assert plan.worst_stage == 0
    assert plan.stages[1].bytes > plan.stages[2].bytes


def test_flash_attention_and_full_recompute_shrink_activations() -> None:
    kw = {"model": "llama-3.1-8b", "mode": "training", "gpus": 8, "tp": 8, "context": 8192, "answers": False}
    eager = plan_memory(**kw, attention="eager").term("activations").bytes
    flash = plan_memory(**kw).term("activations").bytes
    full = plan_memory(**kw, recompute="full").term("activations").bytes
    assert full < flash < eager


def test_largest_batch_and_context_are_boundaries() -> None:
    plan = plan_memory(model="llama-3.1-8b", gpu="h100-sxm-80gb", context=32768, batch=1)
    assert plan.fits and plan.largest_batch is not None and plan.largest_batch >= 1
    bigger = plan_memory(model="llama-3.1-8b", context=32768, batch=plan.largest_batch + 1, answers=False)
    assert not bigger.fits
    assert plan_memory(model="llama-3.1-8b", context=plan.largest_context, answers=False).fits


def test_fewest_gpus_for_a_model_that_needs_several() -> None:
    plan = plan_memory(model="llama-3.1-70b", gpu="h100-sxm-80gb", context=8192)
    assert not plan.fits  # 141 GB of bf16 weights on one 80 GB card
    f = plan.fewest_gpus
    assert f is not None and f.gpus == 2
    assert plan_memory(model="llama-3.1-70b", context=8192, tp=f.tp, pp=f.pp, answers=False).fits


def test_the_engine_reserve_and_overheads_are_adjustable_assumptions() -> None:
    base = plan_memory(model="llama-3.1-8b", answers=False)
    assert base.reserved_bytes == pytest.approx(0.10 * base.capacity_bytes)  # vLLM gpu_memory_utilization 0.9
    loose = plan_memory(model="llama-3.1-8b", answers=False,
                        assumptions={"reserve_fraction": 0.0, "cuda_context": "512 MiB", "fragmentation": 0})
    assert loose.usable_bytes == loose.capacity_bytes
    assert loose.term("cuda_context").bytes == 512 * 2**20 and loose.term("fragmentation").bytes == 0
    training = plan_memory(model="llama-3.1-8b", mode="training", gpus=8, tp=8, answers=False)
    assert training.reserved_bytes == 0


@pytest.mark.parametrize(("model", "mode", "pp"), [("deepseek-v3", "inference", 7), ("deepseek-v3", "training", 61),
                                                   ("llama-3.1-8b", "training", 5), ("mixtral-8x7b", "inference", 3)])
def test_the_fast_fit_check_agrees_with_every_stage(model: str, mode: str, pp: int) -> None:
    from coldaisle.plan.fit import _worst, fits, usable_bytes
    from coldaisle.plan.request import PlanRequest, resolve

    for context in (1024, 16384, 131072):
        r = resolve(PlanRequest(model=model, mode=mode, pp=pp, gpus=8 * pp, tp=8, gpu="b200-180gb", context=context))
        _, terms, stages = _worst(r)
        assert len(stages) == pp
        assert fits(r) == (sum(t.bytes for t in terms) <= usable_bytes(r))
        assert max(s.bytes for s in stages) == pytest.approx(sum(t.bytes for t in terms))


def test_moe_activations_do_not_depend_on_where_the_experts_sit() -> None:
    kw = {"model": "mixtral-8x7b", "mode": "training", "gpus": 64, "tp": 8, "zero": 1, "context": 4096,
          "sequence_parallel": True, "answers": False}
    a1 = plan_memory(**kw).term("activations").bytes
    a8 = plan_memory(**kw, ep=8).term("activations").bytes
    assert a1 == pytest.approx(a8)
    dense = plan_memory(**{**kw, "model": "mistral-7b-v0.3"}).term("activations").bytes
    assert 1.3 * dense < a1 < 3 * dense  # top-2 routing doubles the MLP's stored tensors
