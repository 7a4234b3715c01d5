"""Quantities with their unit written out, parsed once at the edge ("700 W", "80 GiB", "5 min").

Every number a user writes in a scenario or policy carries its unit, so "80 GB" and
"80 GiB" never blur and a temperature is never read as a power. Parsed values are
floats in base units (W, C, bytes, s, J/K, K/W, W/K, K/kW), matching the `_w`, `_c`,
`_bytes`, `_s` suffixes used in code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z/%°]*)\s*$")

#: dimension -> (example, {unit spelling: factor to base unit})
DIMENSIONS: dict[str, tuple[str, dict[str, float]]] = {
    "power": ("700 W", {"W": 1.0, "kW": 1e3, "MW": 1e6}),
    "temperature": ("85 C", {"C": 1.0, "°C": 1.0, "degC": 1.0}),
    "temperature_delta": ("3 K", {"K": 1.0, "C": 1.0}),
    "bytes": ("80 GiB", {
        "B": 1.0, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
        "KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40,
    }),
    "duration": ("10 s", {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}),
    "heat_capacity": ("1500 J/K", {"J/K": 1.0, "kJ/K": 1e3, "MJ/K": 1e6}),
    "thermal_resistance": ("0.03 K/W", {"K/W": 1.0, "C/W": 1.0}),
    "conductance": ("10 kW/K", {"W/K": 1.0, "kW/K": 1e3}),
    "heat_rise": ("0.1 K/kW", {"K/kW": 1.0, "C/kW": 1.0}),
    "rate": ("500 /s", {"/s": 1.0, "/min": 1 / 60.0, "/h": 1 / 3600.0}),
    "bytes_rate": ("64 MiB/s", {"B/s": 1.0, "KiB/s": 2.0**10, "MiB/s": 2.0**20, "GiB/s": 2.0**30,
                                 "MB/s": 1e6, "GB/s": 1e9}),
    "temperature_rate": ("2 C/min", {"C/s": 1.0, "C/min": 1 / 60.0, "K/s": 1.0, "K/min": 1 / 60.0}),
}


class UnitError(ValueError):
    """A quantity without its unit, or with a unit of another dimension."""


def parse_quantity(value: Any, dimension: str) -> float:
    """Parse "700 W" (or a dict-free scalar) into base units of `dimension`, or raise UnitError."""
    example, units = DIMENSIONS[dimension]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UnitError(f"expected a {dimension.replace('_', ' ')} such as '{example}', got {value!r}")
    if isinstance(value, (int, float)):
        if value == 0:
            return 0.0
        raise UnitError(f"{value!r} has no unit: write it as a {dimension.replace('_', ' ')} such as '{example}'")
    text = value.strip()
    m = _NUMBER.match(text)
    if not m:
        raise UnitError(f"cannot read {value!r} as a {dimension.replace('_', ' ')} such as '{example}'")
    number, unit = float(m.group(1)), m.group(2)
    if unit == "" and number == 0:
        return 0.0
    if unit == "":
        raise UnitError(f"{value!r} has no unit: write it as a {dimension.replace('_', ' ')} such as '{example}'")
    if unit not in units:
        known = ", ".join(units)
        raise UnitError(f"{unit!r} is not a unit of {dimension.replace('_', ' ')} (use one of: {known})")
    return number * units[unit]


def _validator(dimension: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        return parse_quantity(value, dimension)

    return check


Watts = Annotated[float, BeforeValidator(_validator("power"))]
Celsius = Annotated[float, BeforeValidator(_validator("temperature"))]
Kelvin = Annotated[float, BeforeValidator(_validator("temperature_delta"))]
Bytes = Annotated[float, BeforeValidator(_validator("bytes"))]
Seconds = Annotated[float, BeforeValidator(_validator("duration"))]
JoulesPerKelvin = Annotated[float, BeforeValidator(_validator("heat_capacity"))]
KelvinPerWatt = Annotated[float, BeforeValidator(_validator("thermal_resistance"))]
WattsPerKelvin = Annotated[float, BeforeValidator(_validator("conductance"))]
KelvinPerKilowatt = Annotated[float, BeforeValidator(_validator("heat_rise"))]
PerSecond = Annotated[float, BeforeValidator(_validator("rate"))]
BytesPerSecond = Annotated[float, BeforeValidator(_validator("bytes_rate"))]
CelsiusPerSecond = Annotated[float, BeforeValidator(_validator("temperature_rate"))]


def format_duration(seconds: float) -> str:
    """Render seconds compactly for humans: 45 s, 3 min 20 s, 2 h 05 min."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
