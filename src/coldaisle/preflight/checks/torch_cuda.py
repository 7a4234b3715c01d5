"""torch's CUDA build against the CUDA versions the loaded NVIDIA driver supports."""

from __future__ import annotations

import re
from collections.abc import Iterable

from coldaisle.preflight.context import Context
from coldaisle.preflight.gpus import driver_supports
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note, Skip

_CUDA = re.compile(r"^cuda\s*(?::[^=\n]*)?=\s*['\"]([\d.]+)['\"]", re.M)


def torch_cuda_build(ctx: Context) -> str | None:
    """The CUDA version torch was built with (torch/version.py, read as text: never imported)."""
    dist = ctx.dists.get("torch")
    if dist is None:
        return None
    try:
        text = (dist.location / "torch" / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    m = _CUDA.search(text)
    return m.group(1) if m else None


class TorchCuda(Check):
    """A cu12x torch on a driver too old for CUDA 12 cannot start a single kernel."""

    id = "stack.torch-cuda"
    title = "torch's CUDA build vs the driver's CUDA support"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Fail when the driver is below the major's minimum, warn below the toolkit's own driver."""
        if "torch" not in ctx.dists:
            raise Skip("torch is not installed in this environment")
        cuda = torch_cuda_build(ctx)
        if cuda is None:
            raise Skip(f"torch {ctx.dists['torch'].version} is not a CUDA build")
        driver = ctx.driver_version
        if driver is None:
            yield self.finding(CheckSeverity.WARN, f"torch is built for CUDA {cuda} but no NVIDIA driver is loaded",
                               "nvidia driver", "install and load the NVIDIA driver (modprobe nvidia)")
            return
        runs, full, need_major, need_full = driver_supports(cuda, driver)
        subject = f"torch {ctx.dists['torch'].version} (CUDA {cuda}) on driver {driver}"
        if not runs:
            yield self.finding(CheckSeverity.FAIL,
                               f"driver {driver} is older than {need_major or '?'}, the oldest that "
                               f"runs CUDA {cuda.split('.')[0]}.x: torch will find no usable GPU", subject,
                               f"upgrade the driver to {need_full or need_major} or later, or install a torch "
                               "built for an older CUDA")
        elif not full:
            yield self.finding(CheckSeverity.WARN, f"driver {driver} predates CUDA {cuda} ({need_full or 'unknown'}); "
                               "it runs through minor-version compatibility, without PTX JIT", subject,
                               f"upgrade the driver to {need_full} or later" if need_full else
                               "check NVIDIA's CUDA compatibility table for this toolkit")
