"""Source plug-ins, one per `SourceKind`, and the sniffing that picks one for a file's first bytes."""

from __future__ import annotations

from coldaisle.triage.interface import Source, SourceKind
from coldaisle.triage.sources.nvsmi import NvidiaSmiSource
from coldaisle.triage.sources.sensors import SensorCsvSource, looks_like_sensor_csv
from coldaisle.triage.sources.text import TextSource

SOURCES: dict[SourceKind, type[Source]] = {
    SourceKind.TEXT: TextSource,
    SourceKind.JSON_LINES: TextSource,
    SourceKind.NVIDIA_SMI: NvidiaSmiSource,
    SourceKind.SENSOR_CSV: SensorCsvSource,
}


def sniff(head: bytes) -> SourceKind:
    """The kind of file whose decompressed content starts with `head`."""
    text = head[:8192].decode("utf-8", "replace")
    first = text.lstrip().split("\n", 1)[0]
    if "NVSMI LOG" in text[:4096]:
        return SourceKind.NVIDIA_SMI
    if first.startswith("{"):
        return SourceKind.JSON_LINES
    if looks_like_sensor_csv(first):
        return SourceKind.SENSOR_CSV
    return SourceKind.TEXT


def source_for(kind: SourceKind) -> Source:
    """A fresh source instance for `kind`."""
    return SOURCES[kind]()
