"""Will it fit: the worst GPU against the card, by how much, and what would fit instead.

`plan_memory` is the Python API behind `coldaisle plan`: it evaluates every pipeline stage, keeps the
worst, and answers the three questions an operator asks before launch: fits or not (and the margin),
the largest context and batch that fit this layout, and the fewest GPUs of this card that fit this
workload.
"""

from __future__ import annotations

from typing import Any

from coldaisle.errors import ConfigError
from coldaisle.plan import activations as act
from coldaisle.plan.arch import Architecture
from coldaisle.plan.dtypes import WeightDtype
from coldaisle.plan.memory import stage_bounds, stage_terms
from coldaisle.plan.params import total_params
from coldaisle.plan.request import MAX_CONTEXT, Mode, PlanRequest, Resolved, divisors, resolve
from coldaisle.plan.results import GiB, MemoryPlan, ParallelLayout, StageTotal, Term

_TRAINABLE = (WeightDtype.FP32, WeightDtype.BF16, WeightDtype.FP16)


def _worst(r: Resolved, every_stage: bool = True) -> tuple[int, list[Term], list[StageTotal]]:
    """The heaviest stage; without `every_stage`, skip stages shaped like an earlier (never lighter) one."""
    stages: list[StageTotal] = []
    worst: tuple[float, int, list[Term]] = (-1.0, 0, [])
    seen: set[tuple[int, int, bool, bool]] = set()
    a, pp = r.arch, r.request.pp
    for s, (first, count) in enumerate(stage_bounds(a.layers, pp)):
        shape = (count, sum(a.is_moe_layer(i) for i in range(first, first + count)), s == 0, s == pp - 1)
        if not every_stage and shape in seen:
            continue
        seen.add(shape)
        terms = stage_terms(r, s, first, count)
        total = sum(t.bytes for t in terms)
        stages.append(StageTotal(stage=s, first_layer=first, layers=count, bytes=total))
        if total > worst[0]:
            worst = (total, s, terms)
    return worst[1], worst[2], stages


def usable_bytes(r: Resolved) -> float:
    """Driver-reported memory less the serving engine's reserved share."""
    return r.card.memory_total * (1.0 - r.request.reserve)


def fits(r: Resolved) -> bool:
    """Whether the worst stage fits the usable memory (the searches call this many times)."""
    _, terms, _ = _worst(r, every_stage=False)
    return sum(t.bytes for t in terms) <= usable_bytes(r)


def _check(req: PlanRequest) -> None:
    if req.mode is Mode.TRAINING and req.dtype not in _TRAINABLE:
        raise ConfigError(f"training at {req.dtype.value} is not modelled (full training keeps 16/32-bit weights)",
                          field="dtype", hint="use --dtype bf16; QLoRA-style adapters are not planned yet")


def plan_memory(request: PlanRequest | None = None, *, answers: bool = True, arch: Architecture | None = None,
                **fields: Any) -> MemoryPlan:
    """Plan one deployment: `plan_memory(model="llama-2-7b", gpu="h100-sxm-80gb", context=4096)`."""
    req = request or PlanRequest(**fields)
    _check(req)
    r = resolve(req, arch)
    stage, terms, stages = _worst(r)
    total = sum(t.bytes for t in terms)
    cap = r.card.memory_total
    usable = usable_bytes(r)
    a = r.arch
    extra: dict[str, Any] = {}
    if answers:
        extra = {"largest_context": largest(r, "context"), "largest_batch": largest(r, "batch"),
                 "fewest_gpus": fewest_gpus(r)}
    return MemoryPlan(
        model=a.name, model_source=a.source, attention=a.attention.value, params_total=float(total_params(a)),
        mode=req.mode.value, gpu=r.card_key, gpu_name=r.card.name,
        layout=ParallelLayout(tp=req.tp, pp=req.pp, dp=r.dp, ep=req.ep, etp=r.etp, gpus=req.tp * req.pp * r.dp),
        batch=req.batch, context=req.context, dtype=req.dtype.value, kv_dtype=req.kv.value,
        capacity_bytes=cap, reserved_bytes=cap - usable, usable_bytes=usable, worst_stage=stage,
        stages=tuple(stages), terms=tuple(terms), total_bytes=total, fits=total <= usable,
        margin_bytes=usable - total, dominant=max(terms, key=lambda t: t.bytes).key,
        kv_bytes_per_token=a.layers * act.kv_bytes_per_token_layer(a, req.kv, 1),
        kv_bytes_per_token_gpu=stages[stage].layers * act.kv_bytes_per_token_layer(a, req.kv, req.tp),
        warnings=r.warnings, assumptions=assumption_lines(r), **extra,
    )


def assumption_lines(r: Resolved) -> tuple[str, ...]:
    """The stated, adjustable assumptions this plan used, for the report."""
    req, a = r.request, r.request.assumptions
    out = [f"capacity {r.card.memory_total / 2**20:,.0f} MiB as the driver reports it (not the marketing GB)",
           f"CUDA context and library workspaces {a.cuda_context / GiB:g} GiB per GPU",
           f"allocator fragmentation {a.fragmentation:.0%} of activations",
           f"reserved by the serving engine: {req.reserve:.0%} of the card"]
    if req.mode is Mode.INFERENCE:
        out.append(f"chunked prefill of at most {req.prefill_chunk:,} tokens per step; {req.attention.value} attention")
    else:
        out.append(f"1F1B pipeline schedule ({req.pp} micro-batches in flight on stage 0); "
                   f"{req.attention.value} attention; recompute {req.recompute.value}")
    return tuple(out)


def largest(r: Resolved, field: str, limit: int = MAX_CONTEXT) -> int | None:
    """The largest context (or batch) that fits this layout, by bisection; None if even 1 does not fit."""
    def ok(n: int) -> bool:
        return fits(r.model_copy(update={"request": r.request.with_(**{field: n})}))

    if not ok(1):
        return None
    lo, hi = 1, 2
    while hi <= limit and ok(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _candidates(r: Resolved, max_tp: int, max_dp: int) -> list[tuple[int, int, int]]:
    a, req = r.arch, r.request
    tps = [t for t in divisors(a.heads) if t <= max_tp and (t <= a.kv_heads or t % a.kv_heads == 0
                                                            or a.attention.value == "mla")]
    dps = [1] if req.mode is Mode.INFERENCE or req.zero_stage == 0 else [2**k for k in range(max_dp.bit_length())]
    out = [(t, p, d) for t in tps for p in range(1, a.layers + 1) for d in dps]
    return sorted(out, key=lambda c: (c[0] * c[1] * c[2], c[1], c[2]))


def fewest_gpus(r: Resolved, max_tp: int | None = None, max_dp: int = 1024) -> ParallelLayout | None:
    """The smallest tp x pp (x dp under ZeRO) of this card that fits; tp stays inside a node."""
    req = r.request
    for tp, pp, dp in _candidates(r, max_tp or req.gpus_per_node, max_dp):
        trial = req.with_(tp=tp, pp=pp, gpus=tp * pp * dp, ep=1, etp=None)
        try:
            rr = resolve(trial, r.arch)
        except ConfigError:
            continue
        if fits(rr):
            return ParallelLayout(tp=tp, pp=pp, dp=dp, ep=1, etp=rr.etp, gpus=tp * pp * dp)
    return None
