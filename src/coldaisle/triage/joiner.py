"""Multi-line records: the lines of one report joined into one event.

The scanner hands over only lines a signature or a context pattern flags, with their line numbers. An event
line opens a record; `lead` context lines seen just before it (an NVRM message's first line with the PCI
address, ibstat's `CA 'mlx5_0'` and `Port 1:` headers, a journal entry's `__REALTIME_TIMESTAMP=`) and `detail`
lines after it (an AER report's status and error bits, an oops's `CPU: N PID: N Comm: x`, an mlx5 health
dump, a GSP RPC history) join it; an event of the same class whose signature `joins` continues it (the
`PCIe Bus Error` line after `AER: ... error received`, SXid follow-ups). `boundary` lines (a journal entry's
start) close the record. Distances are in lines, so this runs on the sparse stream without seeing the rest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from coldaisle.telemetry.events import Severity
from coldaisle.triage.catalog import Catalog, Context, Match

MAX_TEXT = 40  # lines kept as a record's raw text (a long trace keeps its head)
_LEADS = 16


@dataclass(slots=True)
class Piece:
    """One flagged line: its number, text, winning signature (if any) and the context patterns it matched."""

    line: int
    text: str
    match: Match | None
    contexts: list[tuple[Context, dict[str, Any]]]
    stamp: Any = None  # the stamp a JSON wrapper carried (journald, Event JSON), else None


@dataclass(slots=True)
class Record:
    """One event being assembled from its lines."""

    head: Match
    first: Piece
    last: int
    fields: dict[str, Any]
    severity: Severity
    texts: list[str] = field(default_factory=list)
    leads: list[Piece] = field(default_factory=list)  # the lines before the event that joined it
    lines: int = 1  # log lines of the report itself (events and details; leads are not counted)
    events: int = 1

    @property
    def cls(self) -> str:
        """The record's class (its first event's)."""
        return self.head.cls

    def agrees(self, m: Match) -> bool:
        """Whether `m` may continue this record: same class, and the same values of its group_by fields."""
        return m.cls == self.cls and all(self.fields.get(k) == m.fields.get(k) for k in m.signature.spec.group_by
                                         if k in self.fields and k in m.fields)

    def add(self, piece: Piece, fields: dict[str, Any], severity: Severity = Severity.DEBUG) -> None:
        """Join a later line: its fields fill what is missing, its severity raises the record's."""
        for k, v in fields.items():
            self.fields.setdefault(k, v)
        self.severity = max(self.severity, severity)
        self.last = piece.line
        self.lines += 1
        if len(self.texts) < MAX_TEXT:
            self.texts.append(piece.text)


def _accepts(ctx: Context, cls: str) -> bool:
    return not ctx.spec.classes or cls in ctx.spec.classes


class Joiner:
    """Feeds flagged lines in file order; yields finished records in file order."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        spans = [c.spec.within for c in catalog.contexts] + [s.spec.joins for s in catalog.signatures]
        self.max_gap = max(spans, default=1)
        self.open: Record | None = None
        self.leads: deque[tuple[Piece, Context, dict[str, Any]]] = deque(maxlen=_LEADS)

    def feed(self, piece: Piece) -> Iterator[Record]:
        """Take one flagged line; yield the records it closes."""
        if self.open is not None and piece.line - self.open.last > self.max_gap:
            yield from self._flush()
        if any(c.spec.role == "boundary" for c, _ in piece.contexts):
            yield from self._flush()
            self.leads.clear()
            return
        if piece.match is not None:
            yield from self._event(piece, piece.match)
            return
        for ctx, fields in piece.contexts:
            role, rec = ctx.spec.role, self.open
            if role in ("detail", "both") and rec is not None and _accepts(ctx, rec.cls) \
                    and piece.line - rec.last <= ctx.spec.within:
                rec.add(piece, fields)
            elif role in ("lead", "both"):
                self.leads.append((piece, ctx, fields))

    def close(self) -> Iterator[Record]:
        """The record still open at the end of the file."""
        yield from self._flush()

    def _event(self, piece: Piece, m: Match) -> Iterator[Record]:
        spec, rec = m.signature.spec, self.open
        if rec is not None and spec.joins and piece.line - rec.last <= spec.joins and rec.agrees(m):
            rec.events += 1
            rec.add(piece, m.fields, m.severity)
            return
        if spec.needs and not any(ctx.spec.id in spec.needs and piece.line - p.line <= ctx.spec.within
                                  for p, ctx, _ in self.leads):
            return  # a line that means something only under its header (ibstat's `State: Down`)
        yield from self._flush()
        rec = Record(m, piece, piece.line, dict(m.fields), m.severity)
        for p, ctx, fields in reversed(self.leads):  # newest first: the nearest header wins
            if piece.line - p.line <= ctx.spec.within and _accepts(ctx, m.cls) and p not in rec.leads:
                for k, v in fields.items():
                    rec.fields.setdefault(k, v)
                rec.texts.insert(0, p.text)
                rec.leads.insert(0, p)
        rec.texts.append(piece.text)
        for _ctx, fields in piece.contexts:  # a context pattern on the event's own line
            for k, v in fields.items():
                rec.fields.setdefault(k, v)
        self.leads.clear()
        self.open = rec

    def _flush(self) -> Iterator[Record]:
        rec, self.open = self.open, None
        if rec is None:
            return
        self.catalog.normalize(rec.fields)
        self.catalog.complete(rec.fields)
        sig = rec.head.signature
        severity, meaning, action = self.catalog.severity(sig, rec.fields)
        rec.severity = max(rec.severity, severity)
        rec.head = Match(sig, self.catalog.cls(sig, rec.fields), rec.severity, rec.fields, meaning, action)
        yield rec
