"""The fast path: every signature compiled into one Hyperscan (Vectorscan-compatible) database.

Each pattern P is compiled as `(?:P).*$` in multi-line mode, so a matching line reports exactly once per
signature, at its own end: the scanner walks a buffer of many lines in C and Python only sees the offsets of
matching lines. Patterns use HS_FLAG_PREFILTER (Hyperscan may over-match, never under-match); Python's `re`
then confirms the match and extracts the fields. Without the `hyperscan` wheel the same API runs on `re`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from coldaisle.errors import ConfigError
from coldaisle.triage.catalog import Catalog, Matcher

try:  # the wheel bundles the library; a platform without one falls back to Python's re
    import hyperscan as _hs
except ImportError:  # pragma: no cover - exercised where no wheel exists
    _hs = None

WINDOW = 4 << 20  # bytes scanned per call; a longer line is scanned in pieces of this size
# journald stores a non-UTF-8 MESSAGE as an array of byte values, which no text pattern can see: such
# records are always handed to Python (which decodes them), through one extra internal pattern.
_JOURNAL_BYTES = rb'"MESSAGE"\s*:\s*\[.*$'
_GROUP = re.compile(r"\(\?P<\w+>")


def engine_name() -> str:
    """Which engine prefilters lines ("hyperscan" or "re")."""
    return "hyperscan" if _hs is not None else "re"


def _hs_pattern(pattern: str) -> bytes:
    """A catalog regex as Hyperscan takes it: groups unnamed, and extended to the end of its line."""
    return f"(?:{_GROUP.sub('(', pattern)}).*$".encode()


def _database(catalog: Catalog) -> Any:
    sigs = catalog.signatures
    flags = [_hs.HS_FLAG_MULTILINE | _hs.HS_FLAG_PREFILTER | (_hs.HS_FLAG_CASELESS if s.spec.ignore_case else 0)
             for s in sigs]
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    try:
        db.compile(expressions=[*(_hs_pattern(s.spec.pattern) for s in sigs), _JOURNAL_BYTES],
                   ids=list(range(len(sigs) + 1)), elements=len(sigs) + 1, flags=[*flags, _hs.HS_FLAG_MULTILINE])
    except _hs.error as exc:
        bad = _first_bad(sigs)
        file, _, line = bad.origin.rpartition(":") if bad else ("", "", "0")
        raise ConfigError(f"the scanner cannot compile this pattern: {exc}", file=file or None,
                          line=int(line) or None, field="pattern") from None
    return db


def _first_bad(sigs: Iterable[Any]) -> Any:
    for s in sigs:
        try:
            _hs.Database(mode=_hs.HS_MODE_BLOCK).compile(expressions=[_hs_pattern(s.spec.pattern)],
                                                         flags=_hs.HS_FLAG_MULTILINE | _hs.HS_FLAG_PREFILTER)
        except _hs.error:
            return s
    return None


class HyperscanMatcher(Matcher):
    """The per-line matcher with Hyperscan as the prefilter; also scans whole buffers of lines."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self.db = _database(catalog)

    def candidates(self, line: str) -> list[int]:
        """Signatures whose prefilter matches `line`."""
        found: list[int] = []
        self.db.scan(line.encode("utf-8", "surrogateescape"),
                     match_event_handler=lambda i, _f, _t, _fl, _c: found.append(i))
        return sorted(i for i in set(found) if i < len(self.catalog.signatures))

    def scan_block(self, buf: bytes, on_match: Callable[..., Any]) -> None:
        """Call on_match(id, from, to, flags, ctx) for every (signature, line end) in `buf`."""
        self.db.scan(buf, match_event_handler=on_match)


class ReMatcher(Matcher):
    """The same API on Python's re alone (slower), for platforms without a Hyperscan wheel."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self._res = [re.compile(_hs_pattern(s.spec.pattern), re.MULTILINE | (re.IGNORECASE if s.spec.ignore_case
                                                                             else 0)) for s in catalog.signatures]
        self._res.append(re.compile(_JOURNAL_BYTES, re.MULTILINE))

    def scan_block(self, buf: bytes, on_match: Callable[..., Any]) -> None:
        """Like Hyperscan's block scan: one callback per (signature, matching line end)."""
        ends: list[tuple[int, int]] = []
        for i, rx in enumerate(self._res):
            ends += [(m.end(), i) for m in rx.finditer(buf)]
        for end, i in sorted(ends):
            on_match(i, 0, end, 0, None)


def build_matcher(catalog: Catalog) -> HyperscanMatcher | ReMatcher:
    """The fastest matcher this platform offers over `catalog`."""
    return HyperscanMatcher(catalog) if _hs is not None else ReMatcher(catalog)


def scan_lines(chunks: Iterable[bytes], matcher: HyperscanMatcher | ReMatcher,
               counts: dict[str, int]) -> Iterator[tuple[int, bytes, list[int]]]:
    """(line number, line bytes, candidate signature ids) for each prefiltered line of a byte stream.

    Lines are cut at b"\\n" (a trailing b"\\r" is dropped); a line longer than WINDOW is scanned in pieces
    and counted in counts["long_lines"]; counts["lines"] gets every line read, counts["bad_utf8"] and
    counts["nul"] the blocks holding invalid UTF-8 or NUL bytes.
    """
    carry, line_no, in_long = b"", 0, False
    for chunk in chunks:
        buf = carry + chunk if carry else chunk
        end = buf.rfind(b"\n") + 1
        if end == 0 and len(buf) < WINDOW:
            carry = buf
            continue
        if end == 0:  # one very long line: scan this piece now, keep reading the same line
            counts["long_lines"] += 0 if in_long else 1
            in_long = True
            yield from _hits(buf, line_no, matcher, counts)
            carry = b""
            continue
        in_long = False
        yield from _hits(buf[:end], line_no, matcher, counts)
        lines = buf.count(b"\n", 0, end)
        counts["lines"] += lines
        line_no += lines
        carry = buf[end:]
    if carry:
        counts["lines"] += 1
        yield from _hits(carry, line_no, matcher, counts)


def _check(block: bytes, counts: dict[str, int]) -> None:
    """Count blocks that are not clean text (cheap: ASCII blocks skip the UTF-8 check)."""
    if not block.isascii():
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            counts["bad_utf8"] += 1
    if b"\0" in block:
        counts["nul"] += 1


def _hits(block: bytes, first_line: int, matcher: HyperscanMatcher | ReMatcher,
          counts: dict[str, int]) -> Iterator[tuple[int, bytes, list[int]]]:
    _check(block, counts)
    ends: list[tuple[int, int]] = []
    matcher.scan_block(block, lambda i, _f, to, _fl, _c: ends.append((to, i)))
    if not ends:
        return
    ends.sort()
    last, line_no, k = 0, first_line, 0
    while k < len(ends):
        to, ids = ends[k][0], []
        while k < len(ends) and ends[k][0] == to:
            ids.append(ends[k][1])
            k += 1
        start = block.rfind(b"\n", 0, to) + 1
        line_no += block.count(b"\n", last, start)
        last = start
        line = block[start:to]
        yield line_no + 1, line[:-1] if line.endswith(b"\r") else line, ids
