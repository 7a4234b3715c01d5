"""Line logs: kernel (dmesg, syslog, journalctl short-* and -o json), NCCL, PyTorch/DeepSpeed/vLLM, Slurm, DCGM.

The whole file goes through the multi-pattern scanner; only lines it flags are decoded, confirmed by the
winning signature's regex, stamped and turned into `Hit`s. JSON lines (`journalctl -o json`, coldaisle's own
Event log) are unwrapped first: the message is matched, the record's own time and host are kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from coldaisle.triage.catalog import Match
from coldaisle.triage.interface import FileContext, Hit, Source, SourceKind, StampClock
from coldaisle.triage.scanner import scan_lines
from coldaisle.triage.stamps import Stamp, parse

RAW_MAX = 2000  # characters of a matching line kept as evidence


def _journal(rec: dict[str, Any]) -> tuple[str, Stamp]:
    msg = rec.get("MESSAGE", "")
    if isinstance(msg, list):  # journald stores non-UTF-8 messages as byte arrays
        msg = bytes(int(b) & 0xFF for b in msg).decode("utf-8", "replace")
    real = rec.get("__REALTIME_TIMESTAMP")
    mono = rec.get("__MONOTONIC_TIMESTAMP")
    t = int(real) / 1e6 if str(real).isdigit() else None
    up = int(mono) / 1e6 if str(mono).isdigit() and rec.get("_TRANSPORT") == "kernel" else None
    return str(msg), Stamp(StampClock.UTC if t is not None else StampClock.NONE, t, up, str(rec.get("_HOSTNAME", "")))


def _event(rec: dict[str, Any]) -> tuple[str, Stamp]:
    try:
        t: float | None = datetime.fromisoformat(str(rec["time"]).replace("Z", "+00:00")).timestamp()
    except ValueError:
        t = None
    clock = StampClock.UTC if t is not None else StampClock.NONE
    return str(rec.get("raw", "")), Stamp(clock, t, None, str(rec["host"]))


def unwrap(line: str) -> tuple[str, Stamp | None]:
    """The message and stamp inside a JSON log record, or the line itself (stamp None) when it is not one."""
    if not line.startswith("{"):
        return line, None
    try:
        rec = json.loads(line)
    except ValueError:
        return line, None
    if not isinstance(rec, dict):
        return line, None
    if "MESSAGE" in rec:
        return _journal(rec)
    if "raw" in rec and "time" in rec and "host" in rec:
        return _event(rec)
    return line, None


def make_hit(text: str, match: Match, stamp: Stamp, ctx: FileContext, line_no: int) -> Hit:
    """A Hit from a confirmed match: the host the line names wins over the one its path implies."""
    fields = match.fields
    host = str(fields.get("node") or fields.get("host") or stamp.host or ctx.host or "-")
    if match.cls == "nccl_init" and "ip" in fields:
        ctx.ip_hosts[str(fields["ip"])] = host
    return Hit(host=host, source=match.signature.spec.source, cls=match.cls, severity=match.severity,
               fields=fields, raw=text[:RAW_MAX], file=ctx.path, line=line_no, signature=match.signature.id,
               time=stamp.time, uptime=stamp.uptime, clock=stamp.clock, year_guessed=stamp.year_guessed)


class TextSource(Source):
    """Any line-oriented log; the scanner prefilters, the catalog classifies."""

    kind = SourceKind.TEXT

    def hits(self, chunks: Iterator[bytes], ctx: FileContext) -> Iterator[Hit]:
        """Hits for the lines the scanner flags, in file order."""
        counts = {"lines": 0, "long_lines": 0, "bad_utf8": 0, "nul": 0}
        matcher = ctx.matcher
        try:
            for line_no, raw, ids in scan_lines(chunks, matcher, counts):  # type: ignore[arg-type]
                text, stamp = unwrap(raw.decode("utf-8", "replace"))
                match = matcher.first(text, ids if stamp is None else None)
                if match is None:
                    continue
                ctx.stats.matched_lines += 1
                yield make_hit(text, match, stamp or parse(text, ctx.default_year), ctx, line_no)
        finally:
            s = ctx.stats
            s.lines += counts["lines"]
            s.long_lines += counts["long_lines"]
            s.invalid_utf8_blocks += counts["bad_utf8"]
            s.binary_files += 1 if counts["nul"] else 0
