"""A model's architecture, normalised from a Hugging Face `config.json` (or the shipped catalog of them).

Memory is a function of a handful of shapes: hidden size, layers, attention and KV heads, the MLP width,
the vocabulary, experts and, for DeepSeek's multi-head latent attention (MLA), the latent ranks. Every
family spells them differently; this module reads the spellings we know into one typed `Architecture`,
and a missing or nonsensical field is an error naming the file, the line and the key.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from coldaisle.config import Loc, line_for, load_yaml_with_lines
from coldaisle.errors import ConfigError

#: model_type values whose MLP is gated (SwiGLU / GeGLU: gate, up and down projections).
GATED = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "deepseek_v2",
                   "deepseek_v3", "gemma", "gemma2", "olmo", "olmo2", "granite", "phi3", "megatron_swiglu"})
#: model_type values read with GPT-2 spellings (n_embd, n_layer, n_head, n_inner).
GPT2_STYLE = frozenset({"gpt2", "gpt_bigcode", "megatron_gpt"})


class Attention(StrEnum):
    """How keys and values are cached: one KV head per query head, a few shared, one, or a latent."""

    MHA = "mha"
    GQA = "gqa"
    MQA = "mqa"
    MLA = "mla"


class Architecture(BaseModel):
    """The shapes that decide memory; every field in the units its config.json uses (counts, not bytes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    ffn: int
    gated_mlp: bool = True
    tie_embeddings: bool = False
    qkv_bias: bool = False
    max_position: int = 0
    learned_positions: bool = False
    sliding_window: int | None = None
    attn_dropout: bool = False
    hidden_dropout: bool = False
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_dim: int = 0
    qk_rope_dim: int = 0
    v_head_dim: int = 0
    experts: int = 0
    experts_per_token: int = 0
    expert_ffn: int = 0
    shared_ffn: int = 0  # total width of the always-on shared expert(s)
    dense_layers: int = 0  # leading layers with a dense MLP (DeepSeek first_k_dense_replace)
    moe_every: int = 1

    @property
    def attention(self) -> Attention:
        """MLA when a KV latent rank is set, else by the number of KV heads."""
        if self.kv_lora_rank:
            return Attention.MLA
        if self.kv_heads == 1 and self.heads > 1:
            return Attention.MQA
        return Attention.GQA if self.kv_heads < self.heads else Attention.MHA

    def is_moe_layer(self, i: int) -> bool:
        """Whether layer i (0-based) routes tokens to experts."""
        return self.experts > 0 and i >= self.dense_layers and (i - self.dense_layers) % self.moe_every == 0


class _Fields:
    """Reads keys from one config dict; a problem names the file, line and key."""

    def __init__(self, data: dict[str, Any], file: str, lines: dict[Loc, int]) -> None:
        self.data, self.file, self.lines = data, file, lines

    def error(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        """A ConfigError at `key`."""
        return ConfigError(message, file=self.file, line=line_for((key,), self.lines), field=key, hint=hint)

    def int(self, *keys: str, default: int | None = None, minimum: int = 1) -> int:
        """The first present key of `keys` as an integer >= minimum (or the default when none is present)."""
        for key in keys:
            value = self.data.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(key, f"must be a whole number, got {value!r}")
            if value < minimum:
                raise self.error(key, f"must be at least {minimum}, got {value}")
            return value
        if default is None:
            names = " or ".join(repr(k) for k in keys)
            raise self.error(keys[0], f"missing: the config has no {names}",
                             hint="is this a transformer config.json? plan needs the model's shapes")
        return default

    def flag(self, *keys: str) -> bool:
        """True when any key is a positive number or True (dropout rates, bias switches)."""
        return any(bool(self.data.get(k)) and self.data.get(k) != 0 for k in keys)


def from_hf_config(data: Any, file: str, lines: dict[Loc, int] | None = None, name: str | None = None,
                   source: str | None = None) -> Architecture:
    """Normalise one Hugging Face config dict into an Architecture, or raise ConfigError naming the key."""
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object of model settings", file=file)
    f = _Fields(data, file, lines or {})
    model_type = str(data.get("model_type") or "")
    if model_type in GPT2_STYLE or "n_embd" in data:
        return _gpt2(f, model_type or "gpt2", name or Path(file).parent.name or file, source or file)
    hidden = f.int("hidden_size", "d_model")
    heads = f.int("num_attention_heads", "n_heads")
    kv_heads = f.int("num_key_value_heads", "num_kv_heads", default=heads)
    head_dim = f.int("head_dim", default=hidden // heads)
    if heads % kv_heads:
        raise f.error("num_key_value_heads", f"{heads} attention heads cannot share {kv_heads} KV heads evenly")
    experts = f.int("n_routed_experts", "num_local_experts", "num_experts", default=0, minimum=0)
    shared = f.int("n_shared_experts", default=0, minimum=0)
    expert_ffn = f.int("moe_intermediate_size", "intermediate_size", default=0, minimum=0) if experts else 0
    values: dict[str, Any] = {
        "name": name or Path(file).parent.name or file, "source": source or file, "model_type": model_type,
        "hidden": hidden, "layers": f.int("num_hidden_layers", "n_layers"), "heads": heads, "kv_heads": kv_heads,
        "head_dim": head_dim, "vocab": f.int("vocab_size"), "ffn": f.int("intermediate_size", "ffn_hidden_size"),
        "gated_mlp": model_type in GATED or str(data.get("hidden_act", "silu")) in ("silu", "swish"),
        "tie_embeddings": bool(data.get("tie_word_embeddings", False)),
        "qkv_bias": model_type == "qwen2" or f.flag("attention_bias", "qkv_bias"),
        "max_position": f.int("max_position_embeddings", default=0, minimum=0),
        "sliding_window": _window(data), "attn_dropout": f.flag("attention_dropout", "attn_pdrop"),
        "hidden_dropout": f.flag("hidden_dropout", "resid_pdrop"),
        "experts": experts, "experts_per_token": f.int("num_experts_per_tok", default=0, minimum=0),
        "expert_ffn": expert_ffn,
        "shared_ffn": shared * expert_ffn or f.int("shared_expert_intermediate_size", default=0, minimum=0),
        "dense_layers": f.int("first_k_dense_replace", default=0, minimum=0),
        "moe_every": f.int("moe_layer_freq", "decoder_sparse_step", default=1),
    }
    if data.get("kv_lora_rank"):
        values.update(q_lora_rank=data.get("q_lora_rank"), kv_lora_rank=f.int("kv_lora_rank"),
                      qk_nope_dim=f.int("qk_nope_head_dim"), qk_rope_dim=f.int("qk_rope_head_dim"),
                      v_head_dim=f.int("v_head_dim"))
    if experts and not values["experts_per_token"]:
        raise f.error("num_experts_per_tok", "missing: a mixture-of-experts config must say how many experts "
                                             "each token uses")
    return Architecture(**values)


def _window(data: dict[str, Any]) -> int | None:
    if data.get("use_sliding_window") is False:
        return None
    w = data.get("sliding_window")
    return int(w) if isinstance(w, int) and not isinstance(w, bool) and w > 0 else None


def _gpt2(f: _Fields, model_type: str, name: str, source: str) -> Architecture:
    hidden = f.int("n_embd", "hidden_size")
    heads = f.int("n_head", "num_attention_heads")
    return Architecture(
        name=name, source=source, model_type=model_type, hidden=hidden, layers=f.int("n_layer", "num_hidden_layers"),
        heads=heads, kv_heads=1 if f.flag("multi_query") else heads, head_dim=hidden // heads,
        vocab=f.int("vocab_size"), ffn=f.int("n_inner", default=4 * hidden), gated_mlp=False,
        tie_embeddings=bool(f.data.get("tie_word_embeddings", True)), qkv_bias=True,
        max_position=f.int("n_positions", "max_position_embeddings", default=0, minimum=0),
        learned_positions=True, attn_dropout=f.flag("attn_pdrop"), hidden_dropout=f.flag("resid_pdrop"),
    )


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    note: str = ""
    config: dict[str, Any]


@cache
def model_catalog() -> dict[str, Architecture]:
    """The shipped models (plan/models.yaml), keyed by short name, each with its config.json source."""
    path = files("coldaisle.plan") / "models.yaml"
    text = path.read_text(encoding="utf-8")
    data, lines = load_yaml_with_lines(text, str(path))
    out: dict[str, Architecture] = {}
    for key, raw in data.items():
        entry = _Entry.model_validate(raw)
        sub = {k[2:]: v for k, v in lines.items() if k[:2] == (key, "config")}
        out[key] = from_hf_config(entry.config, str(path), sub, name=key, source=entry.source)
    return out


def load_architecture(name_or_path: str) -> Architecture:
    """A catalog model by name, or any Hugging Face config.json by path; a clear error otherwise."""
    catalog = model_catalog()
    if name_or_path in catalog:
        return catalog[name_or_path]
    p = Path(name_or_path)
    if p.is_dir():
        p = p / "config.json"
    if p.suffix == ".json" or p.exists():
        return _read_config(p)
    import difflib

    close = difflib.get_close_matches(name_or_path.lower(), list(catalog), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known models: {', '.join(sorted(catalog))}"
    raise ConfigError(f"unknown model {name_or_path!r} (not a catalog name, not a config.json)",
                      hint=hint + "; or pass the path of a Hugging Face config.json")


def _read_config(p: Path) -> Architecture:
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", file=str(p)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=str(p)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg}", file=str(p), line=exc.lineno) from None
    try:
        _, lines = load_yaml_with_lines(text, str(p))  # JSON is YAML: this gives every key its line
    except ConfigError:
        lines = {}
    return from_hf_config(data, str(p), lines, name=p.parent.name or p.stem, source=str(p))
