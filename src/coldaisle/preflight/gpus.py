"""The GPU side of preflight: which Backend to read, and the driver's CUDA support table.

`auto` reads NVML when the host has it and otherwise skips the GPU checks with a note (a CPU-only CI
runner is not a failed GPU node); `nvml` insists, so a GPU node whose driver is gone fails loudly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coldaisle.preflight.versions import parse_version
from coldaisle.sim.open import BackendChoice, open_backend

CUDA_DRIVERS = Path(__file__).with_name("cuda_drivers.json")


def gpu_backend(options: Any) -> tuple[Any, str]:
    """(Backend or None, why none) for the options' backend choice, opened where every command opens one."""
    if options.backend_obj is not None:
        return options.backend_obj, ""
    opened = open_backend(BackendChoice(options.backend, options.scenario, options.node), required=False)
    return opened.backend, (f"{opened.note}; GPU checks skipped" if opened.backend is None else "")


def cuda_table() -> dict[str, Any]:
    """The CUDA toolkit -> minimum Linux driver table (data file, with its source)."""
    return json.loads(CUDA_DRIVERS.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def driver_supports(cuda: str, driver: str) -> tuple[bool, bool, str, str]:
    """(runs at all, runs at full compatibility, minimum for the major, minimum for this toolkit)."""
    table = cuda_table()
    major = cuda.split(".", maxsplit=1)[0]
    minor_key = ".".join(cuda.split(".")[:2])
    need_major = table["minor_version_compatibility"].get(major, "")
    need_full = table["toolkit_ga"].get(minor_key, "")
    drv = parse_version(driver, "NVIDIA")
    runs = bool(need_major) and drv is not None and drv >= parse_version(need_major, "NVIDIA")
    full = bool(need_full) and drv is not None and drv >= parse_version(need_full, "NVIDIA")
    return runs, full, need_major, need_full


def frame_for(ctx: Any) -> tuple[Any, Any]:
    """(devices, Frame) from the context's Backend, sampled once per run; Skip when there is no Backend."""
    from coldaisle.preflight.interface import Skip

    if "_gpu_frame" not in ctx.__dict__:
        backend = ctx.backend
        if backend is None:
            raise Skip(ctx.backend_reason)
        ctx._gpu_frame = (backend.devices(), backend.sample())
    return ctx._gpu_frame  # type: ignore[no-any-return]
