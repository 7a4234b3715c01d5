"""The fast path: every signature compiled into one Hyperscan (Vectorscan-compatible) database.

Each pattern P is compiled as `(?:P).*$` in multi-line mode, so a matching line reports exactly once per
signature, at its own end: the scanner walks a buffer of many lines in C and Python only sees the offsets of
matching lines. Patterns use HS_FLAG_PREFILTER (Hyperscan may over-match, never under-match); Python's `re`
then confirms the match and extracts the fields. The same pass flags invalid UTF-8 and NUL bytes (single
match per buffer), so damaged input is counted without decoding it. The compiled database is cached on disk
by content hash. Without the `hyperscan` wheel the same API runs on `re`, slower.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from coldaisle.errors import ConfigError
from coldaisle.triage.catalog import Catalog
from coldaisle.triage.matcher import Matcher
from coldaisle.triage.prefilter import hs_pattern as _hs_pattern

try:  # the wheel bundles the library; a platform without one falls back to Python's re
    import hyperscan as _hs
except ImportError:  # pragma: no cover - exercised where no wheel exists
    _hs = None

WINDOW = 4 << 20  # bytes scanned per call; a longer line is scanned in pieces of this size
# journald stores a non-UTF-8 MESSAGE as an array of byte values, which no text pattern can see: such
# records are always handed to Python (which decodes them).
_JOURNAL = rb'"MESSAGE"\s*:\s*\[.*$'
# Byte sequences that are never valid UTF-8 (a stray lead or continuation byte, a truncated sequence).
_BAD_UTF8 = (rb"[\xC0\xC1\xF5-\xFF]", rb"[\xC2-\xDF][\x00-\x7F\xC0-\xFF]",
             rb"[\xE0-\xEF][\x80-\xBF]?[\x00-\x7F\xC0-\xFF]", rb"[\xF0-\xF4][\x80-\xBF]{0,2}[\x00-\x7F\xC0-\xFF]",
             rb"[\x00-\x7F][\x80-\xBF]")
_NUL = rb"\x00"
# Benign chatter that is most of a verbose log (NCCL_DEBUG=INFO): left out of the automaton so such lines
# never reach Python; a line flagged by another signature is still checked against them first (precedence).
SILENT = frozenset({"nccl_info"})
OnMatch = Callable[[int, int, int, int, Any], Any]


def engine_name() -> str:
    """Which engine prefilters lines ("hyperscan" or "re")."""
    return "hyperscan" if _hs is not None else "re"


def _specs(catalog: Catalog) -> list[tuple[str, bool, bool]]:
    """(pattern, ignore_case, silent) of every pattern id: the signatures, then the context lines."""
    return [*((s.spec.pattern, s.spec.ignore_case, s.spec.cls in SILENT) for s in catalog.signatures),
            *((c.spec.pattern, c.spec.ignore_case, False) for c in catalog.contexts)]


def specials(catalog: Catalog) -> tuple[int, int, int]:
    """Ids of the internal patterns: a journal byte-array record, invalid UTF-8, a NUL byte."""
    n = len(catalog.signatures) + len(catalog.contexts)
    return n, n + 1, n + 2


def _expressions(catalog: Catalog) -> tuple[list[bytes], list[int], list[int]]:
    """(expressions, ids, flags): signatures and contexts, then journal, bad UTF-8 and NUL (`specials`)."""
    journal, bad, nul = specials(catalog)
    specs = _specs(catalog)
    keep = [i for i, (_, _, silent) in enumerate(specs) if not silent]
    base = _hs.HS_FLAG_MULTILINE | _hs.HS_FLAG_PREFILTER
    exprs = [_hs_pattern(specs[i][0]) for i in keep] + [_JOURNAL, *_BAD_UTF8, _NUL]
    ids = [*keep, journal, *[bad] * len(_BAD_UTF8), nul]
    flags = [base | (_hs.HS_FLAG_CASELESS if specs[i][1] else 0) for i in keep]
    flags += [_hs.HS_FLAG_MULTILINE] + [_hs.HS_FLAG_SINGLEMATCH] * (len(_BAD_UTF8) + 1)
    return exprs, ids, flags


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "coldaisle"


def _database(catalog: Catalog) -> Any:
    exprs, ids, flags = _expressions(catalog)
    key = hashlib.sha256(repr((_hs.__version__, exprs, ids, flags)).encode()).hexdigest()[:20]
    cached = _cache_dir() / f"triage-{key}.hsdb"
    with contextlib.suppress(OSError, _hs.error, ValueError, TypeError):
        db = _hs.loadb(cached.read_bytes(), mode=_hs.HS_MODE_BLOCK)
        db.scratch = _hs.Scratch(db)
        return db
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    try:
        db.compile(expressions=exprs, ids=ids, elements=len(exprs), flags=flags)
    except _hs.error as exc:
        bad = _first_bad(catalog)
        file, _, line = getattr(bad, "origin", "").rpartition(":") if bad else ("", "", "0")
        raise ConfigError(f"the scanner cannot compile pattern {getattr(getattr(bad, 'spec', None), 'id', '?')!r}: "
                          f"{exc}", file=file or None, line=int(line or 0) or None, field="pattern") from None
    with contextlib.suppress(OSError):  # a read-only home only costs the next run the compile
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".triage-")
        with os.fdopen(fd, "wb") as f:
            f.write(_hs.dumpb(db))
        os.replace(tmp, cached)
    return db


def _first_bad(catalog: Catalog) -> Any:
    for s in [*catalog.signatures, *catalog.contexts]:
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
        self.patterns = specials(catalog)[0]

    def candidates(self, line: str) -> list[int]:
        """Signatures whose prefilter matches `line` (silent ones are confirmed by first())."""
        found: list[int] = []
        self.db.scan(line.encode("utf-8", "surrogateescape"),
                     match_event_handler=lambda i, _f, _t, _fl, _c: found.append(i))
        return sorted(i for i in set(found) if i < self.patterns)

    def scan_block(self, buf: bytes | memoryview, on_match: OnMatch) -> None:
        """Call on_match(id, from, to, flags, ctx) for every (signature, line end) in `buf`."""
        self.db.scan(buf, match_event_handler=on_match)


class ReMatcher(Matcher):
    """The same API on Python's re alone (slower), for platforms without a Hyperscan wheel."""

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        never = re.compile(rb"(?!)")
        self._res = [never if silent else re.compile(_hs_pattern(p), re.MULTILINE | (re.IGNORECASE if ic else 0))
                     for p, ic, silent in _specs(catalog)]
        self._res.append(re.compile(_JOURNAL, re.MULTILINE))
        self._once = [(len(self._res), re.compile(b"|".join(_BAD_UTF8))), (len(self._res) + 1, re.compile(_NUL))]

    def scan_block(self, buf: bytes | memoryview, on_match: OnMatch) -> None:
        """Like Hyperscan's block scan: one callback per (pattern, matching line end)."""
        buf = bytes(buf)
        ends: list[tuple[int, int]] = []
        for i, rx in enumerate(self._res):
            ends += [(m.end(), i) for m in rx.finditer(buf)]
        ends += [(m.end(), i) for i, rx in self._once if (m := rx.search(buf))]
        for end, i in sorted(ends):
            on_match(i, 0, end, 0, None)


def build_matcher(catalog: Catalog) -> HyperscanMatcher | ReMatcher:
    """The fastest matcher this platform offers over `catalog`."""
    m = HyperscanMatcher(catalog) if _hs is not None else ReMatcher(catalog)
    m.silent = tuple(i for i, s in enumerate(catalog.signatures) if s.spec.cls in SILENT)
    return m


def scan_lines(chunks: Iterable[bytes], matcher: HyperscanMatcher | ReMatcher,
               counts: dict[str, int]) -> Iterator[tuple[int, bytes, list[int]]]:
    """(line number, line bytes, candidate signature ids) for each prefiltered line of a byte stream.

    Lines are cut at b"\\n" (a trailing b"\\r" is dropped); a line longer than WINDOW is scanned in pieces
    and counted in counts["long_lines"]; counts["lines"] gets every line read, counts["bad_utf8"] and
    counts["nul"] the scanned buffers holding invalid UTF-8 or NUL bytes.
    """
    carry, in_long = b"", False
    state = {"line": 0}  # lines before the buffer being scanned
    for chunk in chunks:
        begin = 0
        if carry:  # finish the line the last chunk left open (a small copy), then scan this chunk in place
            nl = chunk.find(b"\n")
            if nl < 0:
                carry += chunk
                if len(carry) >= WINDOW:  # one very long line: scan this piece now, keep reading the line
                    counts["long_lines"] += 0 if in_long else 1
                    in_long = True
                    yield from _hits(carry, 0, len(carry), False, state, matcher, counts)
                    carry = b""
                continue
            line = carry + chunk[:nl + 1]
            yield from _hits(line, 0, len(line), True, state, matcher, counts)
            begin, in_long = nl + 1, False
        end = chunk.rfind(b"\n") + 1
        if end > begin:
            yield from _hits(chunk, begin, end, True, state, matcher, counts)
            in_long = False
        carry = chunk[max(begin, end):]
    if carry:
        yield from _hits(carry, 0, len(carry), False, state, matcher, counts)
        state["line"] += 1
    counts["lines"] += state["line"]


def _hits(buf: bytes, begin: int, end: int, whole: bool, state: dict[str, int],
          matcher: HyperscanMatcher | ReMatcher, counts: dict[str, int]) -> Iterator[tuple[int, bytes, list[int]]]:
    """Matching lines of buf[begin:end], scanned in place; `whole` when it ends with a complete line."""
    n, bad, nul = specials(matcher.catalog)
    ends: list[tuple[int, int]] = []
    flags: set[int] = set()

    def on_match(i: int, _f: int, to: int, _fl: int, _c: Any) -> None:
        if i > n:
            flags.add(i)
        elif not whole or to < end - begin:  # `$` also matches at the very end, after the last newline
            ends.append((to + begin, i))

    matcher.scan_block(memoryview(buf)[begin:end] if begin or end < len(buf) else buf, on_match)
    counts["bad_utf8"] += bad in flags
    counts["nul"] += nul in flags
    ends.sort()
    last, line_no, k = begin, state["line"], 0
    while k < len(ends):
        to, ids = ends[k][0], []
        while k < len(ends) and ends[k][0] == to:
            ids.append(ends[k][1])
            k += 1
        start = max(buf.rfind(b"\n", begin, to) + 1, begin)
        line_no += buf.count(b"\n", last, start)
        last = start
        line = buf[start:to]
        yield line_no + 1, line[:-1] if line.endswith(b"\r") else line, ids
    if whole:  # count the rest; a long line's pieces count once, when the line ends
        state["line"] = line_no + buf.count(b"\n", last, end)
