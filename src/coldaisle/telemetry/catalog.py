"""GPU hardware facts as data (gpus.yaml): the twin builds its cards from here, plan extends it."""

from __future__ import annotations

import difflib
from functools import cache
from importlib.resources import files

from pydantic import BaseModel, ConfigDict, RootModel

from coldaisle.config import parse_model
from coldaisle.errors import ConfigError
from coldaisle.units import Bytes, BytesPerSecond, Celsius, Watts


class GpuSpec(BaseModel):
    """One GPU model's published (or explicitly assumed) limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    memory_total: Bytes
    tdp: Watts
    min_power_limit: Watts
    idle_power: Watts
    slowdown: Celsius
    shutdown: Celsius
    memory_bandwidth: BytesPerSecond | None = None  # published peak HBM bandwidth (plan's decode estimates)
    form_factor: str = ""  # sxm, pcie, oam...: what the card plugs into (plan names it in reports)
    sources: tuple[str, ...] = ()


class _Catalog(RootModel[dict[str, GpuSpec]]):
    """The whole catalog file: GPU id -> spec."""


@cache
def gpu_catalog() -> dict[str, GpuSpec]:
    """Every GPU model coldaisle knows, keyed by its short id (e.g. `h100-pcie-80gb`)."""
    path = files("coldaisle.telemetry") / "gpus.yaml"
    text = path.read_text(encoding="utf-8")
    return parse_model(text, str(path), _Catalog).root


def gpu_spec(key: str) -> GpuSpec:
    """The spec for `key`, or a ConfigError with a did-you-mean."""
    catalog = gpu_catalog()
    if key in catalog:
        return catalog[key]
    close = difflib.get_close_matches(key, list(catalog), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known GPUs: {', '.join(sorted(catalog))}"
    raise ConfigError(f"unknown GPU model {key!r}", hint=hint)
