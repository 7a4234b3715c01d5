"""A site description: racks, PDU capacity, row cooling and the inlet design temperature, as validated YAML.

The room constants (air thermal mass, mixing, recirculation) and card physics are the twin's own
`Facility` and `Card` fields with the twin's defaults, so the minutes-to-overheat answer comes from the
same model `coldaisle sim` replays, not a second one.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from coldaisle.config import load_model
from coldaisle.sim.scenario import Topology
from coldaisle.units import Celsius, JoulesPerKelvin, KelvinPerKilowatt, KelvinPerWatt, Seconds, Watts, WattsPerKelvin


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Room(_Strict):
    """The twin's room constants (sim.scenario.Facility without setpoint and cooling, stated at site level)."""

    air_thermal_mass: JoulesPerKelvin = 500e3
    row_mixing: WattsPerKelvin = 10e3
    recirculation: KelvinPerKilowatt = 0.1
    control_time_constant: Seconds = 60.0
    pue_normal: float = Field(1.2, ge=1.0, le=5.0)
    pue_saturated: float = Field(1.9, ge=1.0, le=5.0)


class CardPhysics(_Strict):
    """The twin's per-GPU thermal constants (sim.scenario.Card without the model and its powers)."""

    thermal_mass: JoulesPerKelvin = 1500.0
    resistance_full_fan: KelvinPerWatt = 0.03
    resistance_still_air: KelvinPerWatt = 0.15
    fan_min_pct: float = Field(30.0, ge=0, le=100)
    fan_ramp_from: Celsius = 35.0
    fan_full_at: Celsius = 70.0
    slowdown: Celsius | None = None
    shutdown: Celsius | None = None


class Site(_Strict):
    """Where the cluster runs: topology, power and cooling limits, design temperatures."""

    name: str
    description: str = ""
    topology: Topology
    rack_pdu: Watts = Field(gt=0, description="usable PDU capacity per rack (after derating)")
    row_cooling: Watts = Field(gt=0, description="cooling capacity per row")
    inlet_design: Celsius = Field(18.0, description="cold-aisle supply temperature the cooling holds")
    aisle_limit: Celsius = Field(40.0, description="cold-aisle temperature that must not be passed")
    room: Room = Room()
    card: CardPhysics = CardPhysics()


def site_dir() -> Path:
    """The example sites shipped with coldaisle."""
    return Path(str(files("coldaisle.plan") / "sites"))


def load_site(name_or_path: str | Path) -> Site:
    """A site file, or a shipped example by name (`dc4-incident`); errors name file, line and field."""
    p = Path(name_or_path)
    if not p.exists() and p.suffix not in (".yaml", ".yml"):
        p = site_dir() / f"{name_or_path}.yaml"
    site: Site = load_model(p, Site)
    return site
