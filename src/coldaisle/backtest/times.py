"""The command line's times and durations: `2024-05-21T03:00:00Z`, unix seconds, `now`, `now-7d`; `15s`, `1h30m`."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from coldaisle.errors import ColdaisleError

_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d|w)")


def duration(text: str, option: str) -> float:
    """`15s`, `15 s`, `1h30m` (Prometheus' spelling, or ours) in seconds; anything else names the option."""
    flat = text.strip()
    pos, total = 0, 0.0
    for m in _PART.finditer(flat):
        if flat[pos:m.start()].strip():
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not flat or flat[pos:].strip() or total <= 0:
        raise ColdaisleError(f"{option} {text!r} is not a duration", hint="e.g. 15s, 5m, 1h30m, 7d", exit_code=2)
    return total


def instant(text: str, option: str, *, now: float | None = None) -> float:
    """An ISO 8601 time (UTC unless it says otherwise), unix seconds, `now` or `now-7d`, as unix seconds."""
    flat = text.strip()
    current = time.time() if now is None else now
    if flat == "now":
        return current
    if flat.startswith("now-"):
        return current - duration(flat[4:], option)
    try:
        return float(flat)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(flat.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ColdaisleError(f"{option} {text!r} is not a time", exit_code=2,
                             hint="write 2024-05-21T03:00:00Z, unix seconds, now or now-7d") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def window(start: str, end: str, step: str) -> tuple[float, float, float]:
    """(start, end, step) in seconds from the options; an empty or backwards window is refused."""
    s, e, dt = instant(start, "--start"), instant(end, "--end"), duration(step, "--step")
    if e <= s:
        raise ColdaisleError(f"--end {end!r} is not after --start {start!r}", exit_code=2)
    return s, e, dt
