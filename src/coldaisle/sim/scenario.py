"""Scenario files: a cluster, its room, its jobs and a timeline of faults, as validated YAML.

Every quantity carries its unit ("700 W"), unknown keys are refused, and any error names
the file, the line and the field. A scenario either loads completely or nothing runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coldaisle.config import load_model, parse_model
from coldaisle.sim.mixschema import FailureMix, LinkDown, NodeDown, RankCrash, ThermalInterface, XidFault
from coldaisle.units import (
    Bytes,
    Celsius,
    JoulesPerKelvin,
    KelvinPerKilowatt,
    KelvinPerWatt,
    PerSecond,
    Seconds,
    Watts,
    WattsPerKelvin,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CardPhysics(_Strict):
    """A GPU's thermal behaviour in the twin: heat capacity, resistance to the air, fan curve, throttling.

    The one definition of these constants: scenarios state them under `card:`, sites under `card:` too."""

    thermal_mass: JoulesPerKelvin = 1500.0
    resistance_full_fan: KelvinPerWatt = 0.03
    resistance_still_air: KelvinPerWatt = 0.15
    fan_min_pct: float = Field(30.0, ge=0, le=100)
    fan_ramp_from: Celsius = 35.0
    fan_full_at: Celsius = 70.0
    fan_time_constant: Seconds = 10.0
    fan_max_rpm: float = Field(18000.0, gt=0)
    throttle_slope: float = Field(0.1, gt=0, le=1, description="share of power shed per kelvin over slowdown")
    throttle_floor: float = Field(0.3, gt=0, le=1, description="lowest share of power a throttled GPU keeps")
    slowdown: Celsius | None = None
    shutdown: Celsius | None = None


class Card(CardPhysics):
    """The scenario's GPU: a catalog model plus the numbers this scenario states for it."""

    model: str = "h100-pcie-80gb"
    tdp: Watts | None = None
    idle_power: Watts | None = None
    min_power_limit: Watts | None = None


class Topology(_Strict):
    """Rows of racks of nodes of GPUs; nodes numbered from 1 across the whole cluster."""

    rows: int = Field(1, ge=1, le=64)
    racks_per_row: int = Field(1, ge=1, le=64)
    nodes_per_rack: int = Field(1, ge=1, le=64)
    gpus_per_node: int = Field(8, ge=1, le=16)
    shelves_per_rack: int = Field(1, ge=1, le=64)
    node_name: str = "node-gpu-{n:02d}"
    first_node: int = Field(1, ge=0)
    host_power: Watts = 600.0


class RoomPhysics(_Strict):
    """The room's air in the twin: heat capacity, mixing between rows, recirculation, control lag, PUE.

    The one definition of these constants: scenarios state them under `facility:`, sites under `room:`."""

    air_thermal_mass: JoulesPerKelvin = 500e3
    row_mixing: WattsPerKelvin = 10e3
    recirculation: KelvinPerKilowatt = 0.1
    control_time_constant: Seconds = 60.0
    pue_normal: float = Field(1.2, ge=1.0, le=5.0)
    pue_saturated: float = Field(1.9, ge=1.0, le=5.0)
    pue_design_load: float = Field(0.7, gt=0, lt=1, description="share of capacity above which PUE rises")


class Facility(RoomPhysics):
    """The room: per-row cooling and its setpoint, over the room's physics."""

    setpoint: Celsius = 18.0
    row_cooling: Watts = 100e3


class Sensor(_Strict):
    """A named reading: the hottest/mean GPU of a shelf or rack, a rack's inlet, or a row's cold aisle."""

    name: str
    kind: Literal["gpu_max", "gpu_mean", "inlet", "aisle"]
    row: int | None = None
    rack: int | None = None
    shelf: int | None = None


class Job(_Strict):
    """A distributed job: ranks on every GPU of its nodes, grouped into communicators."""

    name: str
    id: int = Field(ge=1)
    user: str = "research"
    process: str = "python3"
    nodes: list[str] | str
    start: str | int | datetime = "+0s"
    group_nodes: int | None = Field(None, ge=1, description="nodes per communicator (default: all)")
    pipeline_stages: int = Field(1, ge=1)
    stage_delay: Seconds = 1.0
    compute_power: Watts
    spin_power: Watts
    memory_per_gpu: Bytes
    steps_per_second: PerSecond = 1.0
    nccl_timeout: Seconds | None = None
    term_grace: Seconds = 5.0


class _Fault(_Strict):
    at: str | int | datetime


class PcieJitter(_Fault):
    """PCIe clock jitter on one GPU's link: AER errors and the rank there stops progressing."""

    fault: Literal["pcie_jitter"]
    node: str
    gpu: int = 0


class CollectiveDeadlock(_Fault):
    """A rank stops progressing with no hardware cause (e.g. a 0-byte NCCL packet)."""

    fault: Literal["collective_deadlock"]
    node: str
    gpu: int = 0


class KvGrowth(_Fault):
    """A long request grows one rank's KV cache until it hits the device, spills, hangs, and the GPU is lost."""

    fault: Literal["kv_growth"]
    node: str
    gpu: int = 0
    tokens: int = Field(gt=0)
    tokens_per_second: PerSecond
    bytes_per_token: Bytes
    spill_to_hang: Seconds = 120.0
    hang_to_lost: Seconds = 120.0


class GpuLost(_Fault):
    """A GPU falls off the bus (Xid 79 by default)."""

    fault: Literal["gpu_lost"]
    node: str
    gpu: int = 0
    xid: int = 79


class FanFailure(_Fault):
    """One GPU's fan stops."""

    fault: Literal["fan_failure"]
    node: str
    gpu: int = 0


class FanFailures(_Fault):
    """`count` fans fail at random (seeded) times between `at` and `until` in the given rows."""

    fault: Literal["fan_failures"]
    until: str | int | datetime
    count: int = Field(ge=1)
    rows: list[int]


class CoolingFailure(_Fault):
    """A row's cooling drops to `remaining` capacity."""

    fault: Literal["cooling_failure"]
    row: int
    remaining: Watts = 0.0


class PortableCooling(_Fault):
    """People add temporary cooling to a row (the report's industrial floor fans)."""

    fault: Literal["portable_cooling"]
    row: int
    capacity: Watts


class BootstrapTimeout(_Fault):
    """NCCL bootstrap from `node` to `peer` times out; the communicator holding both fails to start."""

    fault: Literal["nccl_bootstrap_timeout"]
    node: str
    peer: str
    port: int = Field(54321, ge=1, le=65535)


class EmergencyPowerOff(_Fault):
    """A person cuts a rack's power, optionally only if one of its GPUs is above a temperature."""

    fault: Literal["emergency_power_off"]
    rack: int
    if_any_gpu_above: Celsius | None = None
    by: str = "sre"


class CancelJob(_Fault):
    """A person cancels a job (scancel) if it is still running."""

    fault: Literal["cancel_job"]
    job: str
    by: str = "sre"


Fault = Annotated[
    PcieJitter | CollectiveDeadlock | KvGrowth | GpuLost | FanFailure | FanFailures | CoolingFailure
    | PortableCooling | BootstrapTimeout | EmergencyPowerOff | CancelJob
    | XidFault | LinkDown | NodeDown | ThermalInterface | RankCrash,
    Field(discriminator="fault"),
]


class Expectation(_Strict):
    """What a protected run must show (checked by `coldaisle sim test`); each key is one check."""

    name: str = ""
    max_temperature: Celsius | None = None  # no GPU ever above this
    no_gpu_above_slowdown: bool = False
    job_stopped: str | None = None  # this job has no process left ...
    within: Seconds | None = None  # ... within this long ...
    after: str | int | datetime | None = None  # ... of this time
    node_drained: str | None = None  # this node is drained (by `before`, if given)
    before: str | int | datetime | None = None
    no_decisions: bool = False  # the policy took no action at all (no false alarm)
    max_gpus_lost: int | None = Field(None, ge=0)


class Scenario(_Strict):
    """A whole scenario file."""

    name: str
    description: str = ""
    start: datetime
    duration: Seconds = 3600.0
    step: Seconds = 1.0
    max_step: Seconds = 600.0  # the longest step while nothing changes (sim.stepper); `max_step: 1 s` steps fixed
    record_every: Seconds = 10.0
    seed: int = 0
    card: Card = Card()
    topology: Topology = Topology()
    facility: Facility = Facility()
    sensors: list[Sensor] = []
    jobs: list[Job] = []
    timeline: list[Fault] = []
    failures: FailureMix | None = None  # the failure-mix kind: faults drawn from rates against a training job
    rank_events: Literal["each", "summary"] = "each"  # per-rank exits and NCCL traces, or one per communicator
    expect: list[Expectation] = []

    @property
    def start_epoch(self) -> float:
        """The scenario's start as UTC epoch seconds (naive times are UTC)."""
        start = self.start if self.start.tzinfo else self.start.replace(tzinfo=UTC)
        return start.timestamp()


def load_scenario(path: str | Path) -> tuple[Scenario, Any]:
    """Load and fully check a scenario; returns it with its resolved plan (see sim.resolve)."""
    from coldaisle.sim.resolve import resolve

    scenario, lines = load_model(path, Scenario, with_lines=True)
    return scenario, resolve(scenario, lines, str(path))


def parse_scenario(text: str, file: str = "<scenario>") -> tuple[Scenario, Any]:
    """Like load_scenario, from text."""
    from coldaisle.sim.resolve import resolve

    scenario, lines = parse_model(text, file, Scenario, with_lines=True)
    return scenario, resolve(scenario, lines, file)


def scenario_dir() -> Path:
    """The scenarios shipped with coldaisle (the repo's scenarios/ folder, or the installed copy)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "scenarios", here.parent / "scenarios"):
        if candidate.is_dir():
            return candidate
    return here.parents[3] / "scenarios"


def find_scenario(name_or_path: str) -> Path:
    """A path as given, or a shipped scenario by name (`prometheus-unbound`)."""
    p = Path(name_or_path)
    if p.exists() or p.suffix in (".yaml", ".yml"):
        return p
    return scenario_dir() / f"{name_or_path}.yaml"
