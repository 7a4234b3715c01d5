"""Date arithmetic for log stamps: month names in any glibc locale, and wall-clock fields to UTC epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from importlib import resources

import yaml


@cache
def months() -> dict[str, int]:
    """Month abbreviations of every locale in months.yaml (glibc localedata), lower-case, without '.'."""
    text = resources.files("coldaisle.triage").joinpath("months.yaml").read_text(encoding="utf-8")
    return {str(k): int(v) for k, v in yaml.safe_load(text)["months"].items()}


def month(name: str) -> int | None:
    """1-12 for a month abbreviation in any known locale, or a number written as one; None otherwise."""
    name = name.rstrip(".").casefold()
    return int(name) if name.isdigit() and 1 <= int(name) <= 12 else months().get(name)


def seconds(hms: str, frac: str | None) -> float:
    parts = [int(x) for x in hms.split(":")] + [0]
    return parts[0] * 3600 + parts[1] * 60 + parts[2] + (float("0." + frac) if frac else 0.0)


def epoch(year: int, mon: int | None, day: int, hms: str, frac: str | None, tz: str | None = None) -> float | None:
    try:
        base = datetime(year, mon or 0, day, tzinfo=UTC).timestamp()
    except (ValueError, TypeError):
        return None
    offset = 0
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)
    return base + seconds(hms, frac) - offset
