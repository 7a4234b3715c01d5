"""`nvidia-smi -q` dumps: sections flattened to `nvidia-smi: GPU <bus id>: Section/Key: Value` lines.

The dump is indented key/value text whose meaning depends on its section ("Pending : Yes" under "Remapped
Rows"); flattening gives every value its path so ordinary catalog patterns classify it. The dump's
`Timestamp` is the time of every line, and `GPU Current Temp` readings become temperature samples.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

from coldaisle.triage.interface import FileContext, Hit, Sample, Source, SourceKind, StampClock
from coldaisle.triage.sources.text import make_hit
from coldaisle.triage.stamps import Stamp

_KV = re.compile(r"^(?P<indent> *)(?P<key>[^:]+?)\s*:\s*(?P<value>.*?)\s*$")
_GPU = re.compile(r"^GPU (?P<pci>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*$")
_TEMP = re.compile(r"^(?P<c>-?\d+(?:\.\d+)?) C$")


def _timestamp(value: str) -> float | None:
    try:
        return datetime.strptime(value.strip(), "%a %b %d %H:%M:%S %Y").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


class NvidiaSmiSource(Source):
    """Reads `nvidia-smi -q` output (one or many dumps, e.g. from a loop)."""

    kind = SourceKind.NVIDIA_SMI

    def hits(self, chunks: Iterator[bytes], ctx: FileContext) -> Iterator[Hit]:
        """One Hit per flattened key/value line a signature classifies."""
        text = b"".join(chunks).decode("utf-8", "replace")
        when: float | None = None
        gpu, stack = "", []  # stack of (indent, section name)
        for line_no, line in enumerate(text.splitlines(), start=1):
            ctx.stats.lines += 1
            if m := _GPU.match(line):
                gpu, stack = m["pci"].lower(), []
                continue
            indent = len(line) - len(line.lstrip(" "))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            m = _KV.match(line)
            if m is None:
                if line.strip() and not line.strip().startswith("="):
                    stack.append((indent, line.strip()))
                continue
            key, value = m["key"].strip(), m["value"]
            if key == "Timestamp":
                when = _timestamp(value)
                continue
            path = "/".join([*(name for _, name in stack), key])
            yield from self._line(f"nvidia-smi: GPU {gpu}: {path}: {value}", path, value, when, gpu, ctx, line_no)

    def _line(self, flat: str, path: str, value: str, when: float | None, gpu: str, ctx: FileContext,
              line_no: int) -> Iterator[Hit]:
        if path.endswith("GPU Current Temp") and when is not None and (t := _TEMP.match(value)):
            ctx.samples.append(Sample(when, f"{ctx.host or '-'} {gpu}", float(t["c"])))
        match = ctx.matcher.first(flat)
        if match is not None:
            ctx.stats.matched_lines += 1
            stamp = Stamp(StampClock.UTC if when is not None else StampClock.NONE, when)
            yield make_hit(flat, match, stamp, ctx, line_no)
