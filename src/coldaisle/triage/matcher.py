"""The per-line matcher every log reader shares: candidates from a prefilter, confirmation by each regex."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coldaisle.triage.catalog import Catalog, Context, Match


class Matcher:
    """Classifies single lines; `first()` is what log reading uses, `match()` lists every signature."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.silent: tuple[int, ...] = ()  # signatures the prefilter leaves out: always confirmed in Python

    def candidates(self, line: str) -> list[int]:
        """Indices of patterns (signatures, then contexts) that may match (the prefilter); subclasses narrow this."""
        return list(range(len(self.catalog.signatures) + len(self.catalog.contexts)))

    def match(self, line: str) -> list[Match]:
        """Every signature matching `line`, in precedence order."""
        out = []
        for i in sorted({*self.candidates(line), *self.silent}):
            if i < len(self.catalog.signatures) and (m := self.catalog.signatures[i].regex.search(line)):
                out.append(self.catalog.resolve(self.catalog.signatures[i], m))
        return out

    def first(self, line: str, candidates: Sequence[int] | None = None, *, complete: bool = True) -> Match | None:
        """The winning match for `line` (first in precedence order), or None."""
        sigs = self.catalog.signatures
        found = candidates if candidates is not None else self.candidates(line)
        for i in sorted({*found, *self.silent}):
            if i < len(sigs) and (m := sigs[i].regex.search(line)) is not None:  # higher ids: contexts, internal
                match = self.catalog.resolve(sigs[i], m)
                if complete:
                    self.catalog.complete(match.fields)
                return match
        return None

    def contexts(self, line: str, candidates: Sequence[int] | None = None) -> list[tuple[Context, dict[str, Any]]]:
        """The context patterns matching `line`, with their typed fields."""
        n, ctxs = len(self.catalog.signatures), self.catalog.contexts
        found = candidates if candidates is not None else self.candidates(line)
        out = []
        for i in sorted(set(found)):
            if n <= i < n + len(ctxs) and (m := ctxs[i - n].regex.search(line)) is not None:
                out.append((ctxs[i - n], self.catalog.fields(m.groupdict())))
        return out
