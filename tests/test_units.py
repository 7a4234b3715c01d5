"""Quantities carry their unit: "700 W" parses, 700 does not, and a temperature is never read as a power."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from coldaisle.units import (
    DIMENSIONS,
    Bytes,
    Celsius,
    Seconds,
    UnitError,
    Watts,
    format_duration,
    parse_quantity,
)

EVERY_UNIT = [(dim, unit, factor) for dim, (_, units) in DIMENSIONS.items() for unit, factor in units.items()]


@pytest.mark.parametrize(("dimension", "unit", "factor"), EVERY_UNIT, ids=[f"{d}-{u}" for d, u, _ in EVERY_UNIT])
def test_every_unit_of_every_dimension_parses_to_base_units(dimension: str, unit: str, factor: float) -> None:
    assert parse_quantity(f"2.5 {unit}", dimension) == pytest.approx(2.5 * factor)
    assert parse_quantity(f"3{unit}", dimension) == pytest.approx(3 * factor)  # no space is fine too


@pytest.mark.parametrize("dimension", sorted(DIMENSIONS))
def test_each_dimensions_own_example_parses(dimension: str) -> None:
    example, _ = DIMENSIONS[dimension]
    assert parse_quantity(example, dimension) > 0


@pytest.mark.parametrize(("text", "dimension", "expected"), [
    ("700 W", "power", 700.0),
    ("1.2 kW", "power", 1200.0),
    ("80 GiB", "bytes", 80 * 2**30),
    ("80 GB", "bytes", 80e9),
    ("5 min", "duration", 300.0),
    ("2 h", "duration", 7200.0),
    ("250 ms", "duration", 0.25),
    ("85 °C", "temperature", 85.0),
    ("-5 C", "temperature", -5.0),
    ("1e3 W", "power", 1000.0),
    (".5 kW", "power", 500.0),
    ("  18 C  ", "temperature", 18.0),
    ("0.1 K/kW", "heat_rise", 0.1),
    ("2 C/min", "temperature_rate", 2 / 60),
    ("64 MiB/s", "bytes_rate", 64 * 2**20),
    ("500 /min", "rate", 500 / 60),
])
def test_known_quantities(text: str, dimension: str, expected: float) -> None:
    assert parse_quantity(text, dimension) == pytest.approx(expected)


@pytest.mark.parametrize("value", [0, 0.0, "0", " 0 ", "0 W"])
def test_zero_needs_no_unit(value: object) -> None:
    assert parse_quantity(value, "power") == 0.0


@pytest.mark.parametrize("value", [700, 700.5, "700", "-3"])
def test_a_missing_unit_is_refused_with_an_example(value: object) -> None:
    with pytest.raises(UnitError) as info:
        parse_quantity(value, "power")
    assert str(info.value) == f"{value!r} has no unit: write it as a power such as '700 W'"


def test_a_unit_of_another_dimension_names_both_and_lists_the_right_ones() -> None:
    with pytest.raises(UnitError) as info:
        parse_quantity("85 C", "power")
    assert str(info.value) == "'C' is not a unit of power (use one of: W, kW, MW)"
    with pytest.raises(UnitError, match=r"'W' is not a unit of temperature delta \(use one of: K, C\)"):
        parse_quantity("3 W", "temperature_delta")
    with pytest.raises(UnitError, match="'GB' is not a unit of duration"):
        parse_quantity("3 GB", "duration")


def test_unit_spellings_are_case_sensitive() -> None:
    """`mb` is not `MB`, and `Kb` is not `KiB`: a near miss is an error, not a guess."""
    for text in ("80 gib", "3 w", "10 Kb"):
        with pytest.raises(UnitError):
            parse_quantity(text, "bytes" if "b" in text.lower() else "power")


@pytest.mark.parametrize("value", ["W", "seven W", "7 W W", "7,5 W", "", "1.2.3 W"])
def test_unreadable_text_is_refused(value: str) -> None:
    with pytest.raises(UnitError, match=r"cannot read .* as a power such as '700 W'"):
        parse_quantity(value, "power")


@pytest.mark.parametrize("value", [True, None, [700], {"W": 700}])
def test_non_scalars_are_refused(value: object) -> None:
    with pytest.raises(UnitError, match="expected a power such as '700 W'"):
        parse_quantity(value, "power")


def test_an_unknown_dimension_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        parse_quantity("3 W", "voltage")


class Sample(BaseModel):
    power: Watts
    temperature: Celsius
    memory: Bytes
    window: Seconds = 10.0


def test_annotated_types_parse_in_models() -> None:
    s = Sample.model_validate({"power": "1.5 kW", "temperature": "85 C", "memory": "1 KiB"})
    assert (s.power, s.temperature, s.memory, s.window) == (1500.0, 85.0, 1024.0, 10.0)


def test_annotated_types_report_the_field_and_reason() -> None:
    with pytest.raises(ValidationError) as info:
        Sample.model_validate({"power": "85 C", "temperature": "85 C", "memory": "1 KiB"})
    err = info.value.errors()[0]
    assert err["loc"] == ("power",)
    assert "'C' is not a unit of power" in err["msg"]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (45, "45 s"), (59.6, "1 min"), (60, "1 min"), (200, "3 min 20 s"), (3599, "59 min 59 s"),
    (3600, "1 h 00 min"), (7500, "2 h 05 min"), (72 * 3600 + 14 * 60, "72 h 14 min"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
