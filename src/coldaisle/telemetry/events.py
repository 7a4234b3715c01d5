"""Event: one thing that happened, as the simulator emits it, triage parses it and the agent audits it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    """How much an event matters; ordered so `max()` finds the worst."""

    DEBUG = 0
    INFO = 1
    WARNING = 2
    ERROR = 3
    CRITICAL = 4


@dataclass(frozen=True, slots=True)
class Event:
    """One occurrence: UTC time, host, source (kernel, nccl, sensor...), class, severity, fields, raw line."""

    time: float
    host: str
    source: str
    cls: str
    severity: Severity
    fields: dict[str, Any] = field(default_factory=dict)
    raw: str = ""

    @property
    def utc(self) -> datetime:
        """The event time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time, tz=UTC)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (ISO-8601 UTC time, severity by name)."""
        return {
            "time": self.utc.isoformat().replace("+00:00", "Z"),
            "host": self.host,
            "source": self.source,
            "class": self.cls,
            "severity": self.severity.name.lower(),
            "fields": dict(self.fields),
            "raw": self.raw,
        }
