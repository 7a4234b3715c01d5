"""Power and heat: what the cluster draws against the site's PDUs and cooling, the cap that fits, and how
many minutes the cold aisle has if the cooling is short.

Budgets are closed forms per rack (PDU) and per row (cooling): GPUs of the job at the stated power, the
site's other GPUs idle, every node's host power. The time to overheat is not a second thermal model: it
runs the twin (`coldaisle.sim`) on a scenario built from the site, every job GPU at full draw, and reads
the hottest cold aisle each simulated second.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from coldaisle.errors import ConfigError
from coldaisle.plan.results import Constraint, PowerPlan
from coldaisle.plan.site import Site
from coldaisle.sim.resolve import resolve as resolve_scenario
from coldaisle.sim.scenario import Card, Facility, Job, Scenario
from coldaisle.sim.topology import Layout
from coldaisle.sim.twin import Twin
from coldaisle.telemetry.catalog import GpuSpec, gpu_spec

#: Share of TDP an 8-GPU H100 node draws while training (Latif et al. 2025, arXiv:2506.14551: "even
#: computationally intensive workloads operate at only 76% of the 10.2 kW TDP rating").
TYPICAL_FRACTION = 0.76
TYPICAL_SOURCE = "Latif et al. 2025, arXiv:2506.14551 (measured H100 training at 76% of rated power)"
#: Throughput ~ (cap / draw)^ALPHA for compute-bound training (clock falls with the cap). 1.0 is linear; a
#: 700 -> 600 W cap on H100 pretraining is reported to cost 10-15 % (a 14 % power cut), i.e. about linear.
ALPHA = 1.0
THROUGHPUT_SOURCE = ("assumption: throughput ~ (cap/draw)^1 for compute-bound training (factryze.ai, power "
                     "capping: H100 700->600 W costs 10-15 % on pretraining); memory-bound decode often loses "
                     "nothing (Ma et al. 2026, arXiv:2605.11999: H200 decode draws 137-300 W)")


def _per_unit(site: Site, gpus: int, card: GpuSpec, power_w: float, unit: str) -> tuple[np.ndarray, ...]:
    """(job GPUs, other GPUs, nodes) per rack or row, the job filling the site from the first node."""
    lay = Layout(site.topology)
    if gpus > lay.n_gpus:
        raise ConfigError(f"{gpus} GPUs do not fit the site {site.name!r} ({lay.n_gpus} GPUs)", field="gpus")
    idx = lay.gpu_rack if unit == "rack" else lay.gpu_row
    nodes_of = lay.node_rack if unit == "rack" else lay.node_row
    n = lay.n_racks if unit == "rack" else lay.n_rows
    job = np.bincount(idx[:gpus], minlength=n).astype(float)
    other = np.bincount(idx, minlength=n) - job
    nodes = np.bincount(nodes_of, minlength=n).astype(float)
    return job, other, nodes


def constraint(site: Site, gpus: int, card: GpuSpec, power_w: float, typical: float, unit: str) -> Constraint:
    """The tightest rack (PDU) or row (cooling): its demand and the per-GPU cap that keeps it."""
    job, other, nodes = _per_unit(site, gpus, card, power_w, unit)
    capacity = site.rack_pdu if unit == "rack" else site.row_cooling
    base = other * card.idle_power + nodes * site.topology.host_power
    full, typ = base + job * power_w, base + job * power_w * typical
    used = job > 0
    caps = np.where(used, (capacity - base) / np.maximum(job, 1), np.inf)
    cap = float(np.floor(caps.min()))
    name = f"{'rack PDU' if unit == 'rack' else 'row cooling'} ({capacity / 1e3:g} kW per {unit})"
    return Constraint(name=name, capacity_w=capacity, demand_tdp_w=float(full.max()), demand_typical_w=float(typ.max()),
                      cap_w=None if cap < card.min_power_limit else min(cap, power_w))


def _scenario(site: Site, key: str, card: GpuSpec, gpus: int, power_w: float, horizon_s: float) -> Scenario:
    """The twin scenario for this site: every job GPU computing at `power_w` (values already in base units)."""
    lay = Layout(site.topology)
    nodes = -(-gpus // site.topology.gpus_per_node)
    card_model = Card.model_construct(model=key, tdp=max(power_w, card.tdp), **site.card.model_dump())
    room = site.room.model_dump()
    facility = Facility.model_construct(setpoint=site.inlet_design, row_cooling=site.row_cooling, **room)
    job = Job.model_construct(name="plan", id=1, nodes=f"{lay.node_names[0]}..{lay.node_names[nodes - 1]}",
                              compute_power=power_w, spin_power=power_w, memory_per_gpu=0.0)
    return Scenario.model_construct(name=f"plan-{site.name}", start=datetime(2024, 1, 1, tzinfo=UTC),
                                    duration=horizon_s, step=1.0, record_every=60.0, card=card_model,
                                    topology=site.topology, facility=facility, jobs=[job])


def minutes_to_limit(site: Site, key: str, gpus: int, power_w: float, horizon_min: float = 120.0,
                     limit_c: float | None = None) -> tuple[float | None, float]:
    """Run the twin at full draw; minutes until the hottest cold aisle passes the limit (None: never), and its peak."""
    card = gpu_spec(key)
    limit = site.aisle_limit if limit_c is None else limit_c
    plan = resolve_scenario(_scenario(site, key, card, gpus, power_w, horizon_min * 60.0), {}, f"<site {site.name}>")
    twin = Twin(plan)
    peak = float(twin.state.aisle_c.max())
    while twin.t + twin.dt <= plan.duration_s + 1e-9:
        twin.step()
        hottest = float(twin.state.aisle_c.max())
        peak = max(peak, hottest)
        if hottest > limit:
            return twin.t / 60.0, peak
    return None, peak


def plan_power(site: Site, gpu: str, gpus: int, power_w: float | None = None, typical: float = TYPICAL_FRACTION,
               horizon_min: float = 120.0, limit_c: float | None = None) -> PowerPlan:
    """The whole power answer for `gpus` cards of `gpu` at `power_w` each (default: the card's TDP) on `site`."""
    card = gpu_spec(gpu)
    p = card.tdp if power_w is None else power_w
    if not 0 < p <= 5000:
        raise ConfigError(f"{p:g} W per GPU is not a card's power", field="power")
    if not 0 < typical <= 1:
        raise ConfigError(f"typical load {typical:g} must be a share of full draw in (0, 1]", field="typical_load")
    cons = (constraint(site, gpus, card, p, typical, "rack"), constraint(site, gpus, card, p, typical, "row"))
    over = [c for c in cons if c.demand_tdp_w > c.capacity_w]
    caps = [c.cap_w for c in over]
    cap = None if not over or None in caps else min(c for c in caps if c is not None)
    binding = min(over, key=lambda c: c.cap_w or 0.0).name if over else None
    lay = Layout(site.topology)
    hosts = lay.n_nodes * site.topology.host_power + (lay.n_gpus - gpus) * card.idle_power
    limit = site.aisle_limit if limit_c is None else limit_c
    minutes, peak = minutes_to_limit(site, gpu, gpus, p, horizon_min, limit)
    capped = minutes_to_limit(site, gpu, gpus, cap, horizon_min, limit)[0] if cap is not None else None
    return PowerPlan(
        site=site.name, gpu=gpu, gpus=gpus, nodes=-(-gpus // site.topology.gpus_per_node), gpu_power_w=p,
        typical_fraction=typical, cluster_tdp_w=gpus * p + hosts, cluster_typical_w=gpus * p * typical + hosts,
        constraints=cons, fits_at_full=not over, fits_at_typical=all(c.demand_typical_w <= c.capacity_w for c in cons),
        cap_w=cap, binding=binding, throughput_at_cap=None if cap is None else min(1.0, cap / p) ** ALPHA,
        throughput_source=THROUGHPUT_SOURCE, aisle_limit_c=limit, minutes_to_limit=minutes,
        minutes_to_limit_capped=capped, horizon_min=horizon_min, peak_aisle_c=peak,
        assumptions=(f"typical load {typical:.0%} of full draw ({TYPICAL_SOURCE})",
                     f"hosts {site.topology.host_power:g} W per node; the site's other GPUs idle at "
                     f"{card.idle_power:g} W", "minutes from the twin's room model (sim/physics.py), 1 s steps"),
    )
