"""The launch gate: `coldaisle run` and preflight call `require_fit` and refuse a job whose plan does not fit.

A job file is a PlanRequest in YAML (the same keys as `coldaisle plan`'s flags), optionally with a site
and a per-GPU power. The gate answers with the same typed plans `coldaisle plan` prints, so the refusal
says what misses and by how much.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from coldaisle.errors import ColdaisleError
from coldaisle.plan.fit import plan_memory
from coldaisle.plan.power import plan_power
from coldaisle.plan.render import gib
from coldaisle.plan.request import PlanRequest, load_request
from coldaisle.plan.results import MemoryPlan, PowerPlan
from coldaisle.plan.site import Site, load_site

REFUSED_EXIT = 74  # next to coldaisle run's 70-73 (docs/run.md)


class PlanDoesNotFit(ColdaisleError):
    """The job's plan does not fit its GPUs' memory or its site's power and cooling."""

    exit_code = REFUSED_EXIT


class GateVerdict(BaseModel):
    """The gate's answer: ok or not, one reason per failed check, and the plans behind them."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    reasons: tuple[str, ...]
    memory: MemoryPlan
    power: PowerPlan | None = None


def check_plan(job: PlanRequest | str | Path, site: Site | str | Path | None = None,
               power_w: float | None = None) -> GateVerdict:
    """Plan the job (and its power on `site`) and say whether it may launch; never raises for a misfit."""
    req = job if isinstance(job, PlanRequest) else load_request(job)
    mem = plan_memory(req, answers=False)
    reasons: list[str] = []
    if not mem.fits:
        reasons.append(f"memory: the worst GPU needs {gib(mem.total_bytes)} of {gib(mem.usable_bytes)} usable on "
                       f"{mem.gpu}, missing {gib(-mem.margin_bytes)} (largest term: {mem.dominant})")
    pw = None
    if site is not None:
        s = site if isinstance(site, Site) else load_site(site)
        pw = plan_power(s, req.gpu, mem.layout.gpus, power_w)
        if not pw.fits_at_full:
            cap = f"cap GPUs at {pw.cap_w:g} W" if pw.cap_w is not None else "no power cap in range fits"
            reasons.append(f"power: {pw.binding} is exceeded at {pw.gpu_power_w:g} W per GPU ({cap})")
    return GateVerdict(ok=not reasons, reasons=tuple(reasons), memory=mem, power=pw)


def require_fit(job: PlanRequest | str | Path, site: Site | str | Path | None = None,
                power_w: float | None = None) -> GateVerdict:
    """check_plan, raising PlanDoesNotFit (exit 74) with every reason when the job must not launch."""
    verdict = check_plan(job, site, power_w)
    if not verdict.ok:
        raise PlanDoesNotFit("the job's plan does not fit: " + "; ".join(verdict.reasons),
                             hint="see `coldaisle plan` for the breakdown, the largest context and the fewest GPUs "
                                  "that fit")
    return verdict
