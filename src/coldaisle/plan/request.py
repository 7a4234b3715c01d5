"""What a plan is asked: model, card, parallel layout, workload and the stated overhead assumptions.

One typed request serves the CLI, the Python API and the launch gate (a YAML job file), so a
parallel layout that cannot work (tp that does not divide the heads, more pipeline stages than
layers) is refused the same way everywhere, naming the field.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from coldaisle.config import load_model
from coldaisle.errors import ConfigError
from coldaisle.plan.arch import Architecture, load_architecture
from coldaisle.plan.dtypes import KvDtype, Optimizer, WeightDtype
from coldaisle.telemetry.catalog import GpuSpec, gpu_spec
from coldaisle.units import Bytes

GiB = 2.0**30
MAX_CONTEXT = 100_000_000  # beyond any published model; a typo, not a plan
MAX_COUNT = 10_000_000


class Mode(StrEnum):
    """Serving a model or training it."""

    INFERENCE = "inference"
    TRAINING = "training"


class Recompute(StrEnum):
    """Activation recomputation (Korthikanti et al. 2022): none, selective (attention core) or full."""

    NONE = "none"
    SELECTIVE = "selective"
    FULL = "full"


class AttentionImpl(StrEnum):
    """Eager attention stores the s x s scores; FlashAttention does not."""

    FLASH = "flash"
    EAGER = "eager"


class Fsdp(StrEnum):
    """PyTorch FSDP sharding strategies, mapped onto ZeRO stages."""

    NONE = "none"
    FULL = "full"  # FULL_SHARD = ZeRO-3
    GRAD_OP = "grad-op"  # SHARD_GRAD_OP = ZeRO-2
    HYBRID = "hybrid"  # HYBRID_SHARD = ZeRO-3 inside a node, replicated across nodes


class Assumptions(BaseModel):
    """Runtime overheads no formula gives; defaults are stated in docs/plan.md with their reasons."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cuda_context: Bytes = Field(1.0 * GiB, ge=0, description="CUDA context, cuBLAS/NCCL workspaces per GPU")
    fragmentation: float = Field(0.10, ge=0, le=1, description="allocator slack, as a share of activations")
    reserve_fraction: float | None = Field(None, ge=0, lt=1, description="share of the card a serving engine "
                                           "leaves unused (vLLM gpu_memory_utilization 0.9 -> 0.10); "
                                           "default 0.10 for inference, 0 for training")


class PlanRequest(BaseModel):
    """One deployment to plan. Counts are per job; `batch` is sequences in flight (inference) or the micro-batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    gpu: str = "h100-sxm-80gb"
    gpus: int | None = Field(None, ge=1, le=MAX_COUNT)
    tp: int = Field(1, ge=1, le=4096)
    pp: int = Field(1, ge=1, le=4096)
    ep: int = Field(1, ge=1, le=4096)
    etp: int | None = Field(None, ge=1, le=4096, description="expert tensor parallel (default: tp when ep is 1)")
    mode: Mode = Mode.INFERENCE
    batch: int = Field(1, ge=1, le=MAX_COUNT)
    context: int = Field(4096, ge=1, le=MAX_CONTEXT)
    dtype: WeightDtype = WeightDtype.BF16
    kv_dtype: KvDtype | None = None
    prefill_chunk: int = Field(8192, ge=1, le=MAX_CONTEXT)
    optimizer: Optimizer = Optimizer.ADAMW
    zero: int = Field(0, ge=0, le=3)
    fsdp: Fsdp = Fsdp.NONE
    gpus_per_node: int = Field(8, ge=1, le=64)
    sequence_parallel: bool = False
    recompute: Recompute = Recompute.NONE
    attention: AttentionImpl = AttentionImpl.FLASH
    assumptions: Assumptions = Assumptions()

    @property
    def zero_stage(self) -> int:
        """The ZeRO stage in effect (FSDP strategies map onto stages)."""
        return {Fsdp.FULL: 3, Fsdp.HYBRID: 3, Fsdp.GRAD_OP: 2}.get(self.fsdp, self.zero)

    @property
    def reserve(self) -> float:
        """The engine's reserved share of the card."""
        r = self.assumptions.reserve_fraction
        return r if r is not None else (0.10 if self.mode is Mode.INFERENCE else 0.0)

    @property
    def kv(self) -> KvDtype:
        """Cache dtype: as asked, else the 16-bit (or fp32) type the weights compute in."""
        if self.kv_dtype is not None:
            return self.kv_dtype
        return KvDtype.FP32 if self.dtype is WeightDtype.FP32 else KvDtype.FP16

    def with_(self, **changes: object) -> PlanRequest:
        """A copy with some fields changed (searches vary context, batch and layout)."""
        return self.model_copy(update=changes)


class Resolved(BaseModel):
    """A request checked against its model and card: the layout every formula reads."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    request: PlanRequest
    arch: Architecture
    card_key: str
    card: GpuSpec
    dp: int
    etp: int
    warnings: tuple[str, ...] = ()


def resolve(req: PlanRequest, arch: Architecture | None = None) -> Resolved:
    """Load the model and card and check the parallel layout, or raise ConfigError naming the field."""
    a = arch or load_architecture(req.model)
    card = gpu_spec(req.gpu)
    per_replica = req.tp * req.pp
    gpus = req.gpus or per_replica
    if gpus % per_replica:
        raise _bad("gpus", f"{gpus} GPUs do not divide into replicas of tp {req.tp} x pp {req.pp} = {per_replica}")
    check_layout(a, req.tp, req.pp, req.ep)
    dp = gpus // per_replica
    etp = req.etp or (req.tp if req.ep == 1 else 1)
    if req.ep * etp > req.tp * dp or (req.tp * dp) % (req.ep * etp):
        raise _bad("ep", f"ep {req.ep} x expert-tp {etp} must divide the tp x dp = {req.tp * dp} ranks of a stage",
                   "experts are spread over the ranks that hold one pipeline stage")
    if req.mode is Mode.INFERENCE and req.zero_stage:
        raise _bad("zero", "ZeRO/FSDP shards training state; inference has none", "drop --zero/--fsdp")
    return Resolved(request=req, arch=a, card_key=req.gpu, card=card, dp=dp, etp=etp,
                    warnings=tuple(_warnings(req, a)))


def check_layout(a: Architecture, tp: int, pp: int, ep: int) -> None:
    """Refuse tp that does not split the heads, pp deeper than the layers, ep that does not split the experts."""
    if a.heads % tp:
        raise _bad("tp", f"tp {tp} does not divide the {a.heads} attention heads of {a.name}",
                   f"use one of {', '.join(str(d) for d in divisors(a.heads) if d <= 64)}")
    if a.attention.value != "mla" and tp > a.kv_heads and tp % a.kv_heads:
        raise _bad("tp", f"tp {tp} above {a.kv_heads} KV heads must be a multiple of them to replicate each evenly")
    if pp > a.layers:
        raise _bad("pp", f"pp {pp} is more pipeline stages than {a.name}'s {a.layers} layers",
                   f"use at most {a.layers}")
    if ep > 1 and not a.experts:
        raise _bad("ep", f"{a.name} is dense: it has no experts to spread with ep {ep}")
    if a.experts and a.experts % ep:
        raise _bad("ep", f"ep {ep} does not divide {a.name}'s {a.experts} experts")


def divisors(n: int) -> list[int]:
    """Divisors of n, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def _bad(field: str, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(message, field=field, hint=hint)


def _warnings(req: PlanRequest, a: Architecture) -> list[str]:
    out = []
    if a.max_position and req.context > a.max_position:
        out.append(f"context {req.context:,} exceeds {a.name}'s max_position_embeddings {a.max_position:,}: "
                   "it needs RoPE scaling or another model; memory is planned as asked")
    return out


def load_request(path: str | Path) -> PlanRequest:
    """A request from a YAML job file (`coldaisle run --plan`), errors as file:line:field."""
    req: PlanRequest = load_model(path, PlanRequest)
    return req
