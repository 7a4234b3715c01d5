"""Bytes per number for weights, KV cache and optimizer states, each with where the figure comes from.

Quantised formats carry their block scales: a 4-bit weight with one 16-bit scale and zero per group of
128 costs 4 + 32/128 = 4.25 bits, not 4. That overhead is what separates a plan that fits from one that
does not at the edge, so it is stated here once and shown in every breakdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class WeightDtype(StrEnum):
    """How the transformer blocks' linear weights are stored."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"  # GPTQ / AWQ style: 4-bit, group 128, fp16 scale and zero
    NF4 = "nf4"  # bitsandbytes / QLoRA with double quantisation
    MXFP4 = "mxfp4"
    NVFP4 = "nvfp4"


class KvDtype(StrEnum):
    """How the KV cache is stored (vLLM's --kv-cache-dtype)."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"


class Optimizer(StrEnum):
    """Optimizer and precision recipe; decides gradient bytes and optimizer-state bytes per parameter."""

    ADAMW = "adamw"  # mixed precision: fp32 master copy + momentum + variance
    ADAMW_FP32 = "adamw-fp32"  # pure fp32 training
    ADAMW_8BIT = "adamw-8bit"  # bitsandbytes 8-bit states + fp32 master copy
    SGD = "sgd"  # momentum, mixed precision


@dataclass(frozen=True)
class Cost:
    """Bytes per parameter (or element) and the source of the figure."""

    bytes: float
    source: str


_QLORA = "Dettmers et al. 2023, QLoRA, arXiv:2305.14314 s.3: double quantisation costs 0.127 bits per parameter"
WEIGHT_BYTES: dict[WeightDtype, Cost] = {
    WeightDtype.FP32: Cost(4.0, "IEEE 754 binary32"),
    WeightDtype.BF16: Cost(2.0, "bfloat16"),
    WeightDtype.FP16: Cost(2.0, "IEEE 754 binary16"),
    WeightDtype.FP8: Cost(1.0, "FP8 E4M3 (arXiv:2209.05433); per-tensor scales are negligible"),
    WeightDtype.INT8: Cost(1.0, "LLM.int8()/W8A16: 1 byte per weight; per-channel scales are negligible"),
    WeightDtype.INT4: Cost(4.25 / 8, "GPTQ/AWQ group size 128 with fp16 scale and zero: 4 + 32/128 bits "
                                     "(AutoAWQ q_group_size=128 default)"),
    WeightDtype.NF4: Cost(4.127 / 8, _QLORA),
    WeightDtype.MXFP4: Cost(4.25 / 8, "OCP Microscaling Formats v1.0: 32 FP4 elements share one 8-bit scale"),
    WeightDtype.NVFP4: Cost(4.5 / 8, "NVIDIA NVFP4: 16 FP4 elements share one FP8 E4M3 scale"),
}

KV_BYTES: dict[KvDtype, float] = {
    KvDtype.FP32: 4.0, KvDtype.BF16: 2.0, KvDtype.FP16: 2.0, KvDtype.FP8: 1.0, KvDtype.INT8: 1.0,
}

_ZERO = "Rajbhandari et al. 2020, ZeRO, arXiv:1910.02054 s.3.1: mixed-precision Adam keeps K = 12 bytes/param"


@dataclass(frozen=True)
class OptimizerCost:
    """Bytes per parameter for the training copy of weights, gradients and optimizer states."""

    weights: float
    gradients: float
    states: float  # includes the fp32 master copy where the recipe keeps one
    source: str


OPTIMIZER_BYTES: dict[Optimizer, OptimizerCost] = {
    Optimizer.ADAMW: OptimizerCost(2.0, 2.0, 12.0, _ZERO),
    Optimizer.ADAMW_FP32: OptimizerCost(4.0, 4.0, 8.0, "fp32 weights and gradients, fp32 momentum and variance"),
    Optimizer.ADAMW_8BIT: OptimizerCost(2.0, 2.0, 6.0, "Dettmers et al. 2022, 8-bit optimizers (arXiv:2110.02861): "
                                                       "2 x 1-byte states + 4-byte fp32 master copy"),
    Optimizer.SGD: OptimizerCost(2.0, 2.0, 8.0, "fp32 master copy + fp32 momentum (ZeRO s.3.1 accounting)"),
}


def weight_bytes(dtype: WeightDtype) -> float:
    """Bytes per quantisable (linear-layer) weight at `dtype`, block scales included."""
    return WEIGHT_BYTES[dtype].bytes


def dense_bytes(dtype: WeightDtype) -> float:
    """Bytes per weight that quantisation leaves alone (embeddings, lm_head, norms, routers): 16-bit or fp32."""
    return 4.0 if dtype is WeightDtype.FP32 else 2.0
