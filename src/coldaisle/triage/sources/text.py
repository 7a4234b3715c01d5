"""Line logs: kernel (dmesg, syslog, journalctl short-*, -o json/export/json-pretty), NCCL, PyTorch, vLLM, Slurm,
DCGM, tool output (ibstat, nvidia-smi -q excerpts, kubectl) and container logs.

The whole file goes through the multi-pattern scanner; only lines it flags (a signature or a context pattern)
are decoded, confirmed, joined into multi-line records (`joiner.py`), stamped and turned into `Hit`s. JSON
lines are unwrapped first (`journalctl -o json`, coldaisle's Event log, Docker's `{"log": ...}`, tools that
log a kernel line in a `line`/`msg` field): the message is matched and the record's own time and host kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from coldaisle.telemetry.events import Severity
from coldaisle.triage.catalog import Match
from coldaisle.triage.interface import FileContext, Hit, Source, SourceKind, StampClock
from coldaisle.triage.joiner import Joiner, Piece, Record
from coldaisle.triage.scanner import scan_lines
from coldaisle.triage.stamps import Stamp, parse

RAW_MAX = 2000  # characters of an event's lines kept as evidence
_MESSAGE_KEYS = ("log", "line", "message", "msg")  # Docker json-file, gpud, structured loggers


def _journal(rec: dict[str, Any]) -> tuple[str, Stamp]:
    msg = rec.get("MESSAGE", "")
    if isinstance(msg, list):  # journald stores non-UTF-8 messages as byte arrays
        msg = bytes(int(b) & 0xFF for b in msg).decode("utf-8", "replace")
    ident = rec.get("SYSLOG_IDENTIFIER")
    if ident and ident != "kernel":  # as `journalctl -o short` shows it: `systemd-networkd[1410]: ib1: Lost carrier`
        msg = f"{ident}[{rec['_PID']}]: {msg}" if rec.get("_PID") else f"{ident}: {msg}"
    return str(msg), journal_stamp(rec.get("__REALTIME_TIMESTAMP"), rec.get("__MONOTONIC_TIMESTAMP"),
                                   rec.get("_TRANSPORT"), rec.get("_HOSTNAME", ""))


def journal_stamp(real: Any, mono: Any, transport: Any, host: Any) -> Stamp:
    """A journal entry's stamp: realtime microseconds, and the monotonic clock for kernel messages."""
    t = int(real) / 1e6 if str(real).isdigit() else None
    up = int(mono) / 1e6 if str(mono).isdigit() and transport == "kernel" else None
    return Stamp(StampClock.UTC if t is not None else StampClock.NONE, t, up, str(host or ""))


def _iso_time(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _event(rec: dict[str, Any]) -> tuple[str, Stamp]:
    t = _iso_time(rec["time"])
    return str(rec.get("raw", "")), Stamp(StampClock.UTC if t is not None else StampClock.NONE, t, None,
                                          str(rec["host"]))


def _record(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def unwrap(line: str) -> tuple[str, Stamp | None]:
    """The message and stamp inside a JSON log record, or the line itself (stamp None) when it is not one."""
    rec = _record(line)
    if rec is None:
        return line, None
    if "MESSAGE" in rec:
        return _journal(rec)
    if "raw" in rec and "time" in rec and "host" in rec:
        return _event(rec)
    key = next((k for k in _MESSAGE_KEYS if isinstance(rec.get(k), str)), None)
    t = _iso_time(rec["time"]) if key == "log" and "time" in rec else None  # Docker stamps the record
    return (rec[key], Stamp(StampClock.UTC, t) if t is not None else None) if key else (line, None)


def make_hit(text: str, match: Match, stamp: Stamp, ctx: FileContext, line_no: int, lines: int = 1) -> Hit:
    """A Hit from a confirmed match: the host the line names wins over the one its path implies."""
    fields = match.fields
    host = str(fields.get("node") or fields.get("host") or stamp.host or ctx.host or "-")
    if match.cls == "nccl_init" and "ip" in fields:
        ctx.ip_hosts[str(fields["ip"])] = host
    return Hit(host=host, source=match.signature.spec.source, cls=match.cls, severity=match.severity,
               fields=fields, raw=text[:RAW_MAX], file=ctx.path, line=line_no, signature=match.signature.id,
               time=stamp.time, uptime=stamp.uptime, clock=stamp.clock, year_guessed=stamp.year_guessed,
               lines=lines, alarm=match.severity >= Severity.WARNING)


def _record_hit(rec: Record, ctx: FileContext) -> Hit:
    """A joined record as one Hit: the head line's stamp (or its journal entry's), every line as evidence."""
    private = {k: rec.fields.pop(k) for k in [k for k in rec.fields if k.startswith("_")]}
    stamp = rec.first.stamp or parse(rec.first.text, ctx.default_year)
    for lead in rec.leads if stamp.clock == StampClock.NONE else ():  # a wrapped message: its first line's stamp
        if (s := lead.stamp or parse(lead.text, ctx.default_year)).clock != StampClock.NONE:
            stamp = Stamp(s.clock, s.time, s.uptime, stamp.host or s.host, s.year_guessed)
            break
    if stamp.time is None and "_realtime" in private:
        stamp = journal_stamp(private["_realtime"], private.get("_monotonic"), private.get("_transport"),
                              private.get("_hostname", stamp.host))
    elif "_hostname" in private and not stamp.host:
        stamp = Stamp(stamp.clock, stamp.time, stamp.uptime, str(private["_hostname"]), stamp.year_guessed)
    head = rec.head
    match = Match(head.signature, head.cls, rec.severity, rec.fields, head.meaning, head.action)
    return make_hit("\n".join(rec.texts), match, stamp, ctx, rec.first.line, rec.lines)


class TextSource(Source):
    """Any line-oriented log; the scanner prefilters, the catalog classifies, the joiner assembles records."""

    kind = SourceKind.TEXT

    def hits(self, chunks: Iterator[bytes], ctx: FileContext) -> Iterator[Hit]:
        """Hits for the records of the lines the scanner flags, in file order."""
        counts = {"lines": 0, "long_lines": 0, "bad_utf8": 0, "nul": 0}
        matcher = ctx.matcher
        joiner = Joiner(matcher.catalog)
        n = len(matcher.catalog.signatures)
        try:
            for line_no, raw, ids in scan_lines(chunks, matcher, counts):  # type: ignore[arg-type]
                text, stamp = unwrap(raw.decode("utf-8", "replace"))
                cand = ids if stamp is None else matcher.candidates(text)
                match = matcher.first(text, cand, complete=False)
                contexts = matcher.contexts(text, cand) if any(i >= n for i in cand) else []
                if match is None and not contexts:
                    continue
                ctx.stats.matched_lines += match is not None
                for rec in joiner.feed(Piece(line_no, text, match, contexts, stamp)):
                    yield _record_hit(rec, ctx)
            for rec in joiner.close():
                yield _record_hit(rec, ctx)
        finally:
            s = ctx.stats
            s.lines += counts["lines"]
            s.long_lines += counts["long_lines"]
            s.invalid_utf8_blocks += counts["bad_utf8"]
            s.binary_files += 1 if counts["nul"] else 0
