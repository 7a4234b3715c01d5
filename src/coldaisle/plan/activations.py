"""KV cache and activation memory, per GPU, as closed forms a reader can redo by hand.

Training activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models" (arXiv:2205.05198, s.4), generalised from GPT's shapes (q = k = v = h, MLP 4h, dropout)
to GQA, gated MLPs, MoE and models without dropout. Per layer, per micro-batch, with 16-bit activations:

    replicated across tensor-parallel ranks (split too with sequence parallelism):
        2 LayerNorm inputs 4sbh + QKV input 2sbh + MLP input 2sbh + 2 dropout masks 2sbh  (= 10sbh)
    split by tp:
        Q 2sb*qd + K,V 4sb*kvd + attention output 2sb*qd + MLP (GeLU 4sb*f, gated 6sb*f)    (= 24sbh)
    split by tp, only with eager attention and no selective recomputation:
        softmax 2as^2b + its dropout mask as^2b + dropout output 2as^2b                 (= 5as^2b)

which is the paper's sbh(10 + 24/t + 5as/(ht)) for GPT, sbh(34 + 5as/h)/t with sequence parallelism.
"""

from __future__ import annotations

from coldaisle.plan.arch import Architecture, Attention
from coldaisle.plan.dtypes import KV_BYTES, KvDtype

ACT_BYTES = 2.0  # fp16/bf16 activations


def kv_heads_per_gpu(a: Architecture, tp: int) -> int:
    """KV heads one tensor-parallel rank holds: split while tp <= heads, else one head replicated tp/kv times."""
    return max(a.kv_heads // tp, 1)


def kv_bytes_per_token_layer(a: Architecture, kv: KvDtype, tp: int = 1) -> float:
    """Cache bytes one token adds to one layer on one GPU: 2 x KV heads x head_dim (K and V), or MLA's latent."""
    if a.attention is Attention.MLA:
        return (a.kv_lora_rank or 0) * KV_BYTES[kv] + a.qk_rope_dim * KV_BYTES[kv]  # every rank holds the latent
    return 2.0 * kv_heads_per_gpu(a, tp) * a.head_dim * KV_BYTES[kv]


def cached_tokens(a: Architecture, context: int) -> int:
    """Tokens a sequence keeps in cache: its context, bounded by a sliding window."""
    return min(context, a.sliding_window) if a.sliding_window else context


def _mlp_width(a: Architecture, moe: bool, tp: int) -> float:
    """Elements per token of the MLP's stored tensors on one rank; routed copies spread over the stage's ranks."""
    per = 3.0 if a.gated_mlp else 2.0
    if not moe:
        return per * a.ffn / tp
    return per * (a.experts_per_token * a.expert_ffn + a.shared_ffn) / tp


def _attn_widths(a: Architecture) -> tuple[int, int]:
    """(query/output width, key/value width) of one layer across all heads."""
    if a.attention is Attention.MLA:
        return a.heads * (a.qk_nope_dim + a.qk_rope_dim), a.heads * (a.qk_nope_dim + a.qk_rope_dim + a.v_head_dim) // 2
    return a.heads * a.head_dim, a.kv_heads * a.head_dim


def layer_activation_bytes(a: Architecture, i: int, s: int, b: int, tp: int, sp: bool,
                           scores: bool) -> float:
    """Stored activations of layer i for one micro-batch of b sequences of s tokens (Korthikanti s.4.1)."""
    h = a.hidden
    qd, kvd = _attn_widths(a)
    masks = 2.0 if a.hidden_dropout else 0.0
    replicated = (4.0 + 2.0 + 2.0 + masks) * s * b * h
    split = s * b * (2.0 * qd + 4.0 * kvd + 2.0 * qd) / tp
    split += ACT_BYTES * s * b * _mlp_width(a, a.is_moe_layer(i), tp)
    if a.is_moe_layer(i):
        split += 4.0 * s * b * a.experts  # router logits in fp32
    if sp:
        replicated /= tp
    quad = 0.0
    if scores:
        quad = (2.0 + (3.0 if a.attn_dropout else 0.0)) * a.heads * s * s * b / tp
    return replicated + split + quad


def full_recompute_bytes(a: Architecture, s: int, b: int, tp: int, sp: bool) -> float:
    """Full recomputation keeps only each layer's input: 2sbh (split by tp with sequence parallelism)."""
    return 2.0 * s * b * a.hidden / (tp if sp else 1)


def inference_workspace_bytes(a: Architecture, tokens: int, context: int, tp: int,
                              scores: bool) -> float:
    """Peak transient activations of one layer processing `tokens` at once (prefill chunk); freed layer by layer."""
    qd, kvd = _attn_widths(a)
    moe = a.experts > 0
    attn = (2.0 * qd + 2.0 * kvd) / tp
    mlp = _mlp_width(a, moe, tp)
    ws = ACT_BYTES * tokens * (2.0 * a.hidden + max(attn, mlp))
    if scores:
        ws += ACT_BYTES * a.heads / tp * tokens * context
    return ws
