"""triton against the version torch pins: torch.compile's kernels are built for exactly one triton."""

from __future__ import annotations

from collections.abc import Iterable

from coldaisle.preflight.checks.torch_wheels import applicable, compare
from coldaisle.preflight.context import Context
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note, Skip


class Triton(Check):
    """A triton that is not torch's pin breaks torch.compile at the first compiled kernel."""

    id = "stack.triton"
    title = "triton vs torch"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Fail on a triton outside torch's pin, warn when torch wants one and none is installed."""
        torch = ctx.dists.get("torch")
        if torch is None:
            raise Skip("torch is not installed in this environment")
        reqs = [r for r in applicable(torch, "triton") + applicable(torch, "pytorch-triton")]
        if not reqs:
            if "triton" in ctx.dists:
                yield self.finding(CheckSeverity.WARN, f"triton {ctx.dists['triton'].version} is installed but torch "
                                   f"{torch.version} does not use it (a CPU build?)", "triton",
                                   "pip uninstall triton, or install the CUDA build of torch it was meant for")
                return
            raise Skip(f"torch {torch.version} requires no triton")
        for req in reqs:
            yield from compare(self, ctx, req, CheckSeverity.WARN, CheckSeverity.FAIL,
                               "torch.compile will fail or miscompile")
