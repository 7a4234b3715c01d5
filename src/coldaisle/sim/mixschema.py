"""The failure-mix scenario kind, as validated YAML: fault kinds a fleet's failures map to, and the `failures:` block.

A `failures:` block names the training job it interrupts, how it checkpoints and restarts, and a `mix` of
categories (Llama 3's Table 5 components: sim/failure_categories.yaml), each with a rate per GPU-day,
node-day or switch-day; sim.failmix checks the rates and draws the faults with the block's seed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from coldaisle.units import Seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _At(_Strict):
    at: str | int | datetime


class XidFault(_At):
    """A GPU reports an Xid that kills the process on it (48 double-bit ECC, 94/95 contained/uncontained ECC,
    119/120 GSP...); ECC and GSP errors leave the GPU needing a reset (a row remapping pending)."""

    fault: Literal["xid"]
    node: str
    gpu: int = 0
    xid: int = Field(ge=1, le=999)


class LinkDown(_At):
    """A NIC, cable or switch port fails: `span` nodes from `node` (a leaf switch's) lose their fabric link, NCCL
    reports transport errors and the ranks there exit."""

    fault: Literal["link_down"]
    node: str
    span: int = Field(1, ge=1)


class NodeDown(_At):
    """A host fails or is taken for unplanned maintenance (PSU, SSD, CPU, DIMM, chassis): it powers off."""

    fault: Literal["node_down"]
    node: str
    reason: str = "host failure"


class ThermalInterface(_At):
    """A GPU's thermal interface or sensor fails: its heat path to the air conducts `factor` times worse, so it
    overheats past slowdown, throttles, and shuts down."""

    fault: Literal["thermal_interface"]
    node: str
    gpu: int = 0
    factor: float = Field(15.0, gt=1.0, le=1000.0)


class RankCrash(_At):
    """A rank exits with an error and no hardware signal (a software bug, silent data corruption caught by a
    loss check, a failed dependency)."""

    fault: Literal["rank_crash"]
    node: str
    gpu: int = 0
    reason: str = "RuntimeError"


class MixEntry(_Strict):
    """One category of the mix: a component of Table 5 and how often it fails."""

    category: str
    rate: str | float = Field(description='"1.67e-4 /gpu-day", "/node-day" or "/switch-day"')


class FailureMix(_Strict):
    """The failure-mix kind: a training job, its checkpoints and restarts, and the faults drawn against it."""

    job: str
    seed: int = 0
    checkpoint_every: Seconds = 1800.0
    restart: Seconds = 600.0  # requeue, reload the last checkpoint, initialise NCCL
    swap: Seconds = 300.0  # bring a spare in for each unusable node (down, GPU lost or needing a reset, drained)
    nodes_per_switch: int = Field(16, ge=1, le=4096)
    agent_quiet_every: Seconds = 60.0  # protected runs: how often the agent samples while nothing happens
    mix: list[MixEntry] = []
