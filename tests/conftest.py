"""Shared test setup: hardware markers decide what runs here, never skips buried in test bodies."""

from __future__ import annotations

import os
from functools import cache

import pytest


@cache
def _gpu_absent_reason() -> str | None:
    """Why real-GPU tests cannot run on this host (None when an NVIDIA GPU answers through NVML)."""
    from coldaisle.errors import BackendUnavailable
    from coldaisle.telemetry.nvml import NvmlBackend

    try:
        NvmlBackend().close()
    except BackendUnavailable as exc:
        return exc.message
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` run only where a GPU is present, or fail loudly with COLDAISLE_REQUIRE_GPU=1."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items or os.environ.get("COLDAISLE_REQUIRE_GPU") == "1":
        return
    reason = _gpu_absent_reason()
    if reason is not None:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=f"gpu: {reason}"))
