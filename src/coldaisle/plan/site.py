"""A site description: racks, PDU capacity, row cooling and the inlet design temperature, as validated YAML.

The room constants (air thermal mass, mixing, recirculation) and card physics are the twin's own
`RoomPhysics` and `CardPhysics` (sim/scenario.py, defined once), so the minutes-to-overheat answer comes from
the same model `coldaisle sim` replays, not a second one.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from coldaisle.config import load_model
from coldaisle.sim.scenario import CardPhysics, RoomPhysics, Topology
from coldaisle.units import Celsius, Watts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Site(_Strict):
    """Where the cluster runs: topology, power and cooling limits, design temperatures."""

    name: str
    description: str = ""
    topology: Topology
    rack_pdu: Watts = Field(gt=0, description="usable PDU capacity per rack (after derating)")
    row_cooling: Watts = Field(gt=0, description="cooling capacity per row")
    inlet_design: Celsius = Field(18.0, description="cold-aisle supply temperature the cooling holds")
    aisle_limit: Celsius = Field(40.0, description="cold-aisle temperature that must not be passed")
    room: RoomPhysics = RoomPhysics()
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
