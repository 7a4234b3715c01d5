"""A catalog regex as the multi-pattern scanner runs it over a block of many lines.

Hyperscan (and the `re` fallback) scan 4 MiB at once, so a pattern must never match across a newline: `\\s`
loses the newline and negated classes exclude it. Each pattern is extended to the end of its line so a
matching line reports once, at its end; an inner `$` is dropped there (Hyperscan refuses embedded end
anchors; the prefilter may then over-match, and Python's `re` confirms every flagged line).
"""

from __future__ import annotations

import re

_GROUP = re.compile(r"\(\?P<\w+>")
_TOKEN = re.compile(r"\\.|\[\^?\]?(?:\\.|[^\]])*\]|.", re.DOTALL)  # an escape, a bracket class or one character


def _line_token(t: str) -> str:
    """One token kept inside its line: `\\s` without the newline, negated classes that exclude it, no `$`."""
    if t == "$":
        return ""  # an end anchor inside the pattern: the prefilter may over-match, Python confirms
    if t == "\\s":
        return "[ \\t\\r\\f\\v]"
    if t.startswith("["):
        body = t.replace("\\s", " \\t\\r\\f\\v")
        return "[^\\n" + body[2:] if body.startswith("[^") else body
    return t


def _anchored(tokens: list[str]) -> bool:
    """Whether the pattern ends with `$` and has no alternation at its top level (the `$` binds it all)."""
    depth = 0
    for t in tokens:
        depth += t.startswith("(") - (t == ")")
        if t == "|" and depth == 0:
            return False
    return bool(tokens) and tokens[-1] == "$"


def hs_pattern(pattern: str) -> bytes:
    """A catalog regex as Hyperscan takes it: groups unnamed, every match kept inside one line (a block scan
    sees many), and extended to the end of its line so each matching line reports once, at its end."""
    tokens = _TOKEN.findall(_GROUP.sub("(", pattern))
    body = "".join(_line_token(t) for t in tokens)
    return f"(?:{body})$".encode() if _anchored(tokens) else f"(?:{body}).*$".encode()
