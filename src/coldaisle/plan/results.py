"""The typed answers plan gives: a per-GPU memory breakdown and a power and cooling budget.

Bytes are bytes (base units, as everywhere in coldaisle); renderers show GiB (2^30) and say so, because
nvidia-smi prints MiB and many tools print GiB labelled "GB". Every term carries the formula with its
numbers filled in and the source of the formula, so a reader can check the plan with a calculator.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

MEMORY_SCHEMA = "coldaisle.plan.memory/1"
POWER_SCHEMA = "coldaisle.plan.power/1"
GiB = 2.0**30


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Term(_Frozen):
    """One line of the breakdown: what, how many bytes, the arithmetic and where the formula comes from."""

    key: str
    label: str
    bytes: float
    formula: str
    source: str = ""

    @property
    def gib(self) -> float:
        """The term in GiB (2^30 bytes)."""
        return self.bytes / GiB


class ParallelLayout(_Frozen):
    """A parallel layout: tensor, pipeline, data, expert parallel degrees and the GPUs they use."""

    tp: int
    pp: int
    dp: int
    ep: int = 1
    etp: int = 1
    gpus: int


class StageTotal(_Frozen):
    """One pipeline stage's layers and total bytes per GPU."""

    stage: int
    first_layer: int
    layers: int
    bytes: float


class MemoryPlan(_Frozen):
    """Will it fit: the worst GPU's breakdown against the card's driver-reported memory."""

    schema_id: str = MEMORY_SCHEMA
    model: str
    model_source: str
    attention: str
    params_total: float
    mode: str
    gpu: str
    gpu_name: str
    layout: ParallelLayout
    batch: int
    context: int
    dtype: str
    kv_dtype: str
    capacity_bytes: float
    reserved_bytes: float
    usable_bytes: float
    worst_stage: int
    stages: tuple[StageTotal, ...]
    terms: tuple[Term, ...]
    total_bytes: float
    fits: bool
    margin_bytes: float  # usable - total: negative is by how much it misses
    dominant: str
    kv_bytes_per_token: float  # whole model, one sequence, unsharded
    kv_bytes_per_token_gpu: float  # on the worst GPU
    largest_context: int | None = None
    largest_batch: int | None = None
    fewest_gpus: ParallelLayout | None = None
    warnings: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()

    def term(self, key: str) -> Term:
        """The term called `key` (KeyError if this plan has none)."""
        for t in self.terms:
            if t.key == key:
                return t
        raise KeyError(key)


class Constraint(_Frozen):
    """One power or cooling limit and what the cluster asks of it."""

    name: str
    capacity_w: float
    demand_tdp_w: float
    demand_typical_w: float
    cap_w: float | None  # the per-GPU cap that keeps this limit; None if no cap in range does


class PowerPlan(_Frozen):
    """What the cluster draws, what the site can take, the cap that fits, and how fast the aisle heats if not."""

    schema_id: str = POWER_SCHEMA
    site: str
    gpu: str
    gpus: int
    nodes: int
    gpu_power_w: float
    typical_fraction: float
    cluster_tdp_w: float
    cluster_typical_w: float
    constraints: tuple[Constraint, ...]
    fits_at_full: bool
    fits_at_typical: bool
    cap_w: float | None
    binding: str | None
    throughput_at_cap: float | None
    throughput_source: str
    aisle_limit_c: float
    minutes_to_limit: float | None  # at full draw, uncapped; None if the twin never passes the limit
    minutes_to_limit_capped: float | None
    horizon_min: float
    peak_aisle_c: float
    assumptions: tuple[str, ...] = ()
