"""Memory per GPU for every pipeline stage, as terms with their arithmetic; the worst stage decides the fit.

Weights are split by tensor parallelism (heads, MLP, vocabulary), pipeline stages (layers) and expert
parallelism (experts); KV heads are replicated, not split, once tp exceeds them. Training adds gradients
and optimizer states, sharded over data-parallel ranks by ZeRO stage (Rajbhandari et al. 2020), and
activations for the micro-batches a 1F1B pipeline keeps in flight (Korthikanti et al. 2022, s.4.2.3).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from coldaisle.plan import activations as act
from coldaisle.plan.arch import Architecture
from coldaisle.plan.dtypes import OPTIMIZER_BYTES, WEIGHT_BYTES, dense_bytes, weight_bytes
from coldaisle.plan.params import embedding_params, head_params, layer_params
from coldaisle.plan.request import AttentionImpl, Fsdp, Mode, Recompute, Resolved
from coldaisle.plan.results import GiB, Term

KORTHIKANTI = "Korthikanti et al. 2022, arXiv:2205.05198 s.4"
ZERO = "Rajbhandari et al. 2020, ZeRO, arXiv:1910.02054 s.5"


def stage_bounds(layers: int, pp: int) -> list[tuple[int, int]]:
    """(first layer, layer count) per stage: an even split, the remainder on the last stages."""
    base, extra = divmod(layers, pp)
    out, first = [], 0
    for s in range(pp):
        n = base + (1 if s >= pp - extra else 0)
        out.append((first, n))
        first += n
    return out


@dataclass(frozen=True)
class StageParams:
    """Parameters one GPU of a stage holds: quantisable linear weights, 16-bit others, and the expert share."""

    linear: float
    dense: float
    expert: float  # part of `linear` that is routed experts (sharded over expert-data-parallel ranks)

    @property
    def total(self) -> float:
        """All parameters on the GPU."""
        return self.linear + self.dense


@lru_cache(maxsize=4096)
def stage_params(a: Architecture, first: int, count: int, tp: int, ep: int, etp: int, is_first: bool,
                 is_last: bool, pp: int) -> StageParams:
    """Per-GPU parameter counts of one stage under tp/ep sharding (embedding first, lm_head last)."""
    kv_share = act.kv_heads_per_gpu(a, tp) / a.kv_heads
    linear = dense = expert = 0.0
    for i in range(first, first + count):
        lp = layer_params(a, i)
        experts = lp.experts / (ep * etp)
        linear += lp.attn / tp + lp.kv * kv_share + lp.attn_replicated + lp.mlp / tp + experts
        dense += lp.router + lp.norms
        expert += experts
    if is_first:
        dense += a.vocab * a.hidden / tp + (embedding_params(a) - a.vocab * a.hidden)
    if is_last and not (a.tie_embeddings and pp == 1):
        dense += (head_params(a) - a.hidden) / tp + a.hidden
    return StageParams(linear, dense, expert)


def _g(x: float) -> str:
    return f"{x / GiB:,.2f} GiB"


def weight_terms(r: Resolved, sp: StageParams) -> Iterator[Term]:
    """Inference weights at the request's dtype (quantisation applies to linear layers only)."""
    d = r.request.dtype
    q, o = weight_bytes(d), dense_bytes(d)
    total = sp.linear * q + sp.dense * o
    yield Term(key="weights", label=f"weights ({d.value})", bytes=total,
               formula=f"{sp.linear:,.0f} linear params x {q:g} B + {sp.dense:,.0f} embedding/norm params x {o:g} B"
                       f" = {_g(total)}", source=WEIGHT_BYTES[d].source)


def training_state_terms(r: Resolved, sp: StageParams) -> Iterator[Term]:
    """Weights, gradients and optimizer states per GPU under ZeRO stage 0-3 / FSDP."""
    req, cost = r.request, OPTIMIZER_BYTES[r.request.optimizer]
    z = req.zero_stage
    dp = min(r.dp, req.gpus_per_node) if req.fsdp is Fsdp.HYBRID else r.dp
    edp = max(req.tp * dp // (req.ep * r.etp), 1)
    shared, expert = sp.total - sp.expert, sp.expert
    rows = (("weights", "weights", cost.weights, 3), ("gradients", "gradients", cost.gradients, 2),
            ("optimizer_states", "optimizer states", cost.states, 1))
    for key, label, per, stage in rows:
        div, ediv = (dp, edp) if z >= stage else (1, 1)
        b = per * (shared / div + expert / ediv)
        sharded = f" / dp {div} (ZeRO-{z})" if div > 1 else ""
        yield Term(key=key, label=label, bytes=b, source=f"{ZERO}; {cost.source}",
                   formula=f"{sp.total:,.0f} params x {per:g} B{sharded} = {_g(b)}")


def kv_term(r: Resolved, count: int) -> Term:
    """KV cache of the stage's layers for batch x context tokens."""
    req, a = r.request, r.arch
    per = act.kv_bytes_per_token_layer(a, req.kv, req.tp)
    tokens = act.cached_tokens(a, req.context)
    b = count * req.batch * tokens * per
    what = "latent (kv_lora_rank + rope dims)" if a.attention.value == "mla" else \
        f"2 x {act.kv_heads_per_gpu(a, req.tp)} KV heads x {a.head_dim}"
    return Term(key="kv_cache", label=f"KV cache ({req.kv.value})", bytes=b,
                formula=f"{count} layers x batch {req.batch} x {tokens:,} tokens x {what} x "
                        f"{act.KV_BYTES[req.kv]:g} B = {_g(b)}",
                source="K and V per layer per token (Vaswani et al. 2017; GQA: Ainslie et al. 2023; "
                       "MLA latent: DeepSeek-V2, arXiv:2405.04434)")


def training_activation_term(r: Resolved, stage: int, first: int, count: int) -> Term:
    """Stored activations of the micro-batches this stage keeps in flight (1F1B keeps pp - stage)."""
    req, a = r.request, r.arch
    s, b, t = req.context, req.batch, req.tp
    flight = req.pp - stage
    sp = req.sequence_parallel
    scores = req.attention is AttentionImpl.EAGER and req.recompute is Recompute.NONE
    if req.recompute is Recompute.FULL:
        per = act.full_recompute_bytes(a, s, b, t, sp) * count
        work = act.layer_activation_bytes(a, first, s, b, t, sp, req.attention is AttentionImpl.EAGER)
        total, how = per * flight + work, "2sbh per layer (full recomputation) + one layer being recomputed"
    else:
        per = sum(act.layer_activation_bytes(a, i, s, b, t, sp, scores) for i in range(first, first + count))
        total, how = per * flight, "sbh(10 + 24/t) + 5as^2b/t per layer, generalised (see docs/plan.md)"
    if stage == 0 and a.hidden_dropout:
        total += s * b * a.hidden * flight / (t if sp else 1)  # embedding dropout mask
    if stage == req.pp - 1:
        total += 4.0 * s * b * (a.vocab / t + a.hidden / (t if sp else 1))  # fp32 logits and final norm
    return Term(key="activations", label="activations", bytes=total, source=KORTHIKANTI,
                formula=f"{count} layers x {flight} micro-batches in flight, s={s:,} b={b} t={t}"
                        f"{' SP' if sp else ''}: {how} = {_g(total)}")


def inference_activation_term(r: Resolved, is_last: bool) -> Term:
    """The transient workspace of one layer processing a prefill chunk, plus logits on the last stage."""
    req, a = r.request, r.arch
    tokens = min(req.batch * req.context, req.prefill_chunk)
    eager = req.attention is AttentionImpl.EAGER
    b = act.inference_workspace_bytes(a, tokens, req.context, req.tp, eager)
    if is_last:
        b += 4.0 * req.batch * a.vocab / req.tp
    return Term(key="activations", label="activation workspace", bytes=b,
                formula=f"{tokens:,} prefill tokens x 2 B x (2h + widest layer tensor / tp)"
                        f"{' + eager scores' if eager else ''} = {_g(b)}",
                source="assumption: chunked prefill of --prefill-chunk tokens (vLLM max_num_batched_tokens)")


def stage_terms(r: Resolved, stage: int, first: int, count: int) -> list[Term]:
    """Every term for one GPU of one stage, overheads included."""
    req = r.request
    sp = stage_params(r.arch, first, count, req.tp, req.ep, r.etp, stage == 0, stage == req.pp - 1, req.pp)
    if req.mode is Mode.TRAINING:
        terms = [*training_state_terms(r, sp), training_activation_term(r, stage, first, count)]
    else:
        terms = [*weight_terms(r, sp), kv_term(r, count), inference_activation_term(r, stage == req.pp - 1)]
    acts = sum(t.bytes for t in terms if t.key == "activations")
    frag = req.assumptions.fragmentation
    ctx = req.assumptions.cuda_context
    terms.append(Term(key="cuda_context", label="CUDA context + workspaces", bytes=ctx,
                      formula=f"assumed {_g(ctx)} per GPU", source="assumption (adjustable: --cuda-context)"))
    terms.append(Term(key="fragmentation", label="allocator fragmentation", bytes=frag * acts,
                      formula=f"{frag:.0%} of activations = {_g(frag * acts)}",
                      source="assumption (adjustable: --fragmentation); ZeRO s.6.3 on fragmentation"))
    return terms
