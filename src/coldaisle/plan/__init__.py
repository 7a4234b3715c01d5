"""Will it fit, what will it draw, how long until the room overheats: `coldaisle plan` as a Python API.

    from coldaisle.plan import plan_memory, plan_power, load_site, require_fit
    plan = plan_memory(model="llama-3.1-70b", gpu="h100-sxm-80gb", tp=4, context=32768)
    plan.fits, plan.margin_bytes, plan.dominant, plan.largest_context, plan.fewest_gpus

Everything returns typed pydantic results (`MemoryPlan`, `PowerPlan`); docs/plan.md gives every formula
with its source.
"""

from coldaisle.plan.arch import Architecture, from_hf_config, load_architecture, model_catalog
from coldaisle.plan.fit import plan_memory
from coldaisle.plan.gate import GateVerdict, PlanDoesNotFit, check_plan, require_fit
from coldaisle.plan.power import plan_power
from coldaisle.plan.request import Assumptions, PlanRequest
from coldaisle.plan.results import MemoryPlan, PowerPlan, Term
from coldaisle.plan.site import Site, load_site

__all__ = [
    "Architecture",
    "Assumptions",
    "GateVerdict",
    "MemoryPlan",
    "PlanDoesNotFit",
    "PlanRequest",
    "PowerPlan",
    "Site",
    "Term",
    "check_plan",
    "from_hf_config",
    "load_architecture",
    "load_site",
    "model_catalog",
    "plan_memory",
    "plan_power",
    "require_fit",
]
