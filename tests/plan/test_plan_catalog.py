"""The catalogs are data with a source for every entry, and the GPU catalog still serves the twin."""

from __future__ import annotations

from coldaisle.plan.arch import model_catalog
from coldaisle.telemetry.catalog import gpu_catalog, gpu_spec


def test_every_model_names_its_config_source() -> None:
    for name, a in model_catalog().items():
        assert a.source.startswith("https://"), name
        assert "huggingface.co" in a.source or "arxiv.org" in a.source, name


def test_gpu_catalog_has_the_cards_plan_needs_with_driver_reported_memory() -> None:
    cat = gpu_catalog()
    for key in ("h100-sxm-80gb", "h100-pcie-80gb", "h200-sxm-141gb", "a100-sxm-40gb", "a100-sxm-80gb", "b200-180gb",
                "mi300x-192gb"):
        spec = cat[key]
        assert spec.sources and spec.memory_bandwidth and spec.memory_bandwidth > 1e12, key
    assert gpu_spec("h100-pcie-80gb").memory_total == 81_559 * 2**20  # "an 80 GB H100 shows 81,559 MiB"
    assert gpu_spec("b200-180gb").memory_total == 183_359 * 2**20
    assert gpu_spec("mi300x-192gb").memory_total == 205_822_885_888
