"""`coldaisle plan`: the thin command over plan_memory and plan_power (exit 0 fits, 1 does not, 2 bad input)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from coldaisle.errors import ConfigError
from coldaisle.plan.fit import plan_memory
from coldaisle.plan.power import TYPICAL_FRACTION, plan_power
from coldaisle.plan.render import render_terminal, write_html
from coldaisle.plan.request import Assumptions, PlanRequest
from coldaisle.plan.results import MemoryPlan, PowerPlan
from coldaisle.plan.site import load_site
from coldaisle.units import UnitError, parse_quantity

Opt = typer.Option


def _quantity(flag: str, value: str | None, dimension: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_quantity(value, dimension)
    except UnitError as exc:
        raise ConfigError(str(exc), field=flag) from None


def build_request(fields: dict[str, Any], assumptions: dict[str, Any]) -> PlanRequest:
    """A PlanRequest from CLI values; a rejected value is a ConfigError naming its --flag."""
    try:
        return PlanRequest(**fields, assumptions=Assumptions(**{k: v for k, v in assumptions.items()
                                                                if v is not None}))
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = "--" + "-".join(str(p) for p in err["loc"][-1:]).replace("_", "-")
        raise ConfigError(f"{err['msg']} (got {err.get('input')!r})", field=flag) from None


def plan_command(
    model: Annotated[str, Opt(help="Catalog name (llama-3.1-70b, deepseek-v3 ...) or a Hugging Face config.json.")],
    gpu: Annotated[str, Opt(help="GPU catalog id (h100-sxm-80gb, h100-pcie-80gb, h200-sxm-141gb ...).")] = \
        "h100-sxm-80gb",
    gpus: Annotated[int | None, Opt(help="Total GPUs of the job (default: tp x pp).")] = None,
    tp: Annotated[int, Opt(help="Tensor-parallel degree.")] = 1,
    pp: Annotated[int, Opt(help="Pipeline-parallel stages.")] = 1,
    ep: Annotated[int, Opt(help="Expert-parallel degree (MoE).")] = 1,
    mode: Annotated[str, Opt(help="inference or training.")] = "inference",
    batch: Annotated[int, Opt(help="Sequences in flight (inference) or micro-batch size (training).")] = 1,
    context: Annotated[int, Opt(help="Tokens per sequence (prompt + output), or training sequence length.")] = 4096,
    dtype: Annotated[str, Opt(help="Weights: fp32 bf16 fp16 fp8 int8 int4 nf4 mxfp4 nvfp4.")] = "bf16",
    kv_dtype: Annotated[str | None, Opt(help="KV cache: fp16 bf16 fp8 int8 fp32 (default 16-bit).")] = None,
    prefill_chunk: Annotated[int, Opt(help="Tokens per prefill step (vLLM max_num_batched_tokens).")] = 8192,
    optimizer: Annotated[str, Opt(help="Training: adamw adamw-fp32 adamw-8bit sgd.")] = "adamw",
    zero: Annotated[int, Opt(help="Training: ZeRO stage 0-3.")] = 0,
    fsdp: Annotated[str, Opt(help="Training: none full grad-op hybrid (maps onto ZeRO 3/2/3).")] = "none",
    sequence_parallel: Annotated[bool, Opt(help="Training: Megatron sequence parallelism.")] = False,
    recompute: Annotated[str, Opt(help="Training: none selective full.")] = "none",
    attention: Annotated[str, Opt(help="flash (no s^2 scores stored) or eager.")] = "flash",
    gpus_per_node: Annotated[int, Opt(help="GPUs per node (tp search bound, FSDP hybrid group).")] = 8,
    cuda_context: Annotated[str | None, Opt(help='Assumed CUDA context + workspaces per GPU ("1 GiB").')] = None,
    fragmentation: Annotated[float | None, Opt(help="Assumed allocator slack as a share of activations.")] = None,
    reserve: Annotated[float | None, Opt(help="Share of the card the serving engine leaves unused.")] = None,
    site: Annotated[str | None, Opt(help="Site YAML (or the shipped `dc4-incident`) for power and cooling.")] = None,
    power: Annotated[str | None, Opt(help='Per-GPU draw at full load (default: the card TDP), e.g. "700 W".')] = None,
    typical_load: Annotated[float, Opt(help="Typical draw as a share of full draw.")] = TYPICAL_FRACTION,
    html: Annotated[Path | None, Opt(help="Also write the plan as a self-contained HTML page.")] = None,
    as_json: Annotated[bool, Opt("--json", help="Print the plan as JSON (schema coldaisle.plan.memory/1).")] = False,
) -> None:
    """Will it fit, what will it draw, and how long until the room overheats (docs/plan.md)."""
    fields = {"model": model, "gpu": gpu, "gpus": gpus, "tp": tp, "pp": pp, "ep": ep, "mode": mode, "batch": batch,
              "context": context, "dtype": dtype, "kv_dtype": kv_dtype, "prefill_chunk": prefill_chunk,
              "optimizer": optimizer, "zero": zero, "fsdp": fsdp, "sequence_parallel": sequence_parallel,
              "recompute": recompute, "attention": attention, "gpus_per_node": gpus_per_node}
    assumptions = {"cuda_context": _quantity("--cuda-context", cuda_context, "bytes"),
                   "fragmentation": fragmentation, "reserve_fraction": reserve}
    mem = plan_memory(build_request(fields, assumptions))
    pw = None
    if site is not None:
        pw = plan_power(load_site(site), gpu, mem.layout.gpus, _quantity("--power", power, "power"), typical_load)
    if html is not None:
        write_html(mem, pw, html)
    if as_json:
        sys.stdout.write(to_json(mem, pw) + "\n")
    else:
        render_terminal(mem, pw, Console())
        if html is not None:
            Console(stderr=True).print(f"HTML plan: {html}")
    if not mem.fits or (pw is not None and not pw.fits_at_full):
        raise typer.Exit(1)


def to_json(mem: MemoryPlan, pw: PowerPlan | None) -> str:
    """The plan as one JSON document: {"memory": ..., "power": ... or null}."""
    return json.dumps({"memory": mem.model_dump(mode="json"), "power": pw.model_dump(mode="json") if pw else None},
                      indent=2)
