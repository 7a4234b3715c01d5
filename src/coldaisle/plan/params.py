"""Parameter counts per layer, grouped by how tensor, expert and pipeline parallelism split them.

Megatron-LM and vLLM split the attention projections and the MLP across tensor-parallel ranks
(column- then row-parallel), keep norms and the MoE router whole on every rank, split the vocabulary
of the embedding and output layer, and give each expert-parallel rank its own experts. MLA's two
down-projections (to the query and KV latents) are small and replicated (vLLM's ReplicatedLinear).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from coldaisle.plan.arch import Architecture


@dataclass(frozen=True)
class LayerParams:
    """One transformer layer's parameters by sharding class (counts, not bytes)."""

    attn: int  # q, o (and MLA up-projections): split by tp
    kv: int  # k and v projections of GQA/MHA/MQA: split by tp up to one KV head per rank
    attn_replicated: int  # MLA down-projections and latent norms: whole on every rank
    mlp: int  # dense MLP, or shared experts of an MoE layer: split by tp
    experts: int  # routed experts, all of them: split by ep x expert-tp
    router: int  # MoE gate: whole on every rank
    norms: int  # layer norms: whole on every rank

    @property
    def total(self) -> int:
        """Every parameter of the layer."""
        return self.attn + self.kv + self.attn_replicated + self.mlp + self.experts + self.router + self.norms

    @property
    def active(self) -> int:
        """Parameters one token touches (dense models: all)."""
        return self.total


def _mlp(hidden: int, width: int, gated: bool) -> int:
    return (3 if gated else 2) * hidden * width


@lru_cache(maxsize=65536)
def layer_params(a: Architecture, i: int) -> LayerParams:
    """Parameters of layer i (0-based); MoE layers carry experts, router and shared experts."""
    h = a.hidden
    if a.kv_lora_rank:
        q_up = (a.q_lora_rank or h) * a.heads * (a.qk_nope_dim + a.qk_rope_dim)
        kv_up = a.kv_lora_rank * a.heads * (a.qk_nope_dim + a.v_head_dim)
        down = h * (a.kv_lora_rank + a.qk_rope_dim) + a.kv_lora_rank
        if a.q_lora_rank:
            down += h * a.q_lora_rank + a.q_lora_rank
        attn, kv, rep = q_up + kv_up + a.heads * a.v_head_dim * h, 0, down
    else:
        qd, kvd = a.heads * a.head_dim, a.kv_heads * a.head_dim
        attn = 2 * h * qd + (qd if a.qkv_bias else 0)
        kv = 2 * h * kvd + (2 * kvd if a.qkv_bias else 0)
        rep = 0
    if a.is_moe_layer(i):
        mlp = _mlp(h, a.shared_ffn, a.gated_mlp)
        experts = a.experts * _mlp(h, a.expert_ffn, a.gated_mlp)
        router = h * a.experts
    else:
        mlp, experts, router = _mlp(h, a.ffn, a.gated_mlp), 0, 0
    return LayerParams(attn, kv, rep, mlp, experts, router, 2 * h)


def embedding_params(a: Architecture) -> int:
    """Token embedding (plus learned position embedding) parameters."""
    return a.vocab * a.hidden + (a.max_position * a.hidden if a.learned_positions else 0)


def head_params(a: Architecture) -> int:
    """Output layer (lm_head) parameters plus the final norm; a tied head still costs its copy on another stage."""
    return a.vocab * a.hidden + a.hidden


def total_params(a: Architecture) -> int:
    """All parameters of the model, counted once (a tied lm_head is not counted twice)."""
    layers = sum(layer_params(a, i).total for i in range(a.layers))
    head = a.hidden if a.tie_embeddings else head_params(a)
    return layers + embedding_params(a) + head


def active_params(a: Architecture) -> int:
    """Parameters one token uses: routed experts count only `experts_per_token` of `experts`."""
    out = 0
    for i in range(a.layers):
        lp = layer_params(a, i)
        routed = lp.experts * a.experts_per_token // a.experts if a.experts else 0
        out += lp.total - lp.experts + routed
    return out + embedding_params(a) + (a.hidden if a.tie_embeddings else head_params(a))
