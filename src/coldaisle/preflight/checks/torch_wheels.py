"""The nvidia-* wheels torch was built against (NCCL, cuDNN, cuBLAS, runtime) against those installed."""

from __future__ import annotations

from collections.abc import Iterable

from packaging.requirements import Requirement

from coldaisle.preflight.context import Context
from coldaisle.preflight.dists import Dist
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note, Skip
from coldaisle.preflight.versions import normalize_name


def applicable(dist: Dist, prefix: str) -> list[Requirement]:
    """`dist`'s requirements named `prefix`* whose markers hold here (extras are not requested)."""
    out = []
    for req in dist.requirements():
        if not normalize_name(req.name).startswith(prefix):
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        out.append(req)
    return out


def compare(check: Check, ctx: Context, req: Requirement, missing: CheckSeverity, differs: CheckSeverity,
            why: str) -> Iterable[Finding]:
    """Findings for one requirement of torch: absent, or installed outside its specifier."""
    name = normalize_name(req.name)
    have = ctx.dists.get(name)
    torch = ctx.dists["torch"]
    if have is None:
        yield check.finding(missing, f"torch {torch.version} requires {req} but {name} is not installed", name,
                            f"pip install '{req.name}{req.specifier}'")
    elif not req.specifier.contains(have.version, prereleases=True):
        yield check.finding(differs, f"torch {torch.version} was built against {req.name}{req.specifier}; "
                            f"{have.version} is installed ({why})", f"{name}=={have.version}",
                            f"pip install '{req.name}{req.specifier}', or record why this version is wanted")


class TorchWheels(Check):
    """A missing CUDA library wheel fails at import; a different NCCL or cuDNN is a build nobody tested."""

    id = "stack.torch-wheels"
    title = "nvidia-* wheels torch requires vs installed"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Fail on a missing wheel, warn on a version torch was not built against."""
        torch = ctx.dists.get("torch")
        if torch is None:
            raise Skip("torch is not installed in this environment")
        reqs = applicable(torch, "nvidia-")
        if not reqs:
            raise Skip(f"torch {torch.version} requires no nvidia-* wheels (CPU or self-contained build)")
        for req in reqs:
            yield from compare(self, ctx, req, CheckSeverity.FAIL, CheckSeverity.WARN,
                               "an override: make sure it is deliberate, e.g. an NCCL fix")
