"""Event order across hosts whose clocks disagree: times corrected by each host's estimated skew.

The timeline estimates every host's skew from events many hosts log together (a watchdog storm); root-cause
rules compare times through `When`, so a node whose clock runs 40 s fast is not mistaken for the last to fail.
The hits themselves keep the times their lines printed unless `--align-clocks` asked to rewrite them.
"""

from __future__ import annotations

from collections.abc import Iterable

from coldaisle.triage.interface import Hit


class When:
    """Corrected time, order and precedence of hits, given each host's trusted skew (seconds ahead)."""

    def __init__(self, skews: dict[str, float] | None = None) -> None:
        self.skews = {h: s for h, s in (skews or {}).items() if s}

    def t(self, h: Hit) -> float | None:
        """The hit's UTC time on the common clock (None when it has none)."""
        return None if h.time is None else h.time - self.skews.get(h.host, 0.0)

    def key(self, h: Hit) -> tuple[int, str, float, int]:
        """Dated hits by corrected time; then each host's relative (uptime) hits; then undated in file order."""
        if (t := self.t(h)) is not None:
            return (0, "", t, h.order)
        if h.uptime is not None:
            return (1, h.host, h.uptime, h.order)
        return (2, h.host, 0.0, h.order)

    def ordered(self, hits: Iterable[Hit]) -> list[Hit]:
        """`hits` in corrected order."""
        return sorted(hits, key=self.key)

    def first(self, hits: Iterable[Hit]) -> float | None:
        """The earliest corrected time among `hits`."""
        times = [t for h in hits if (t := self.t(h)) is not None]
        return min(times) if times else None

    def before(self, a: Hit, b: Hit) -> bool | None:
        """Whether a happened before b, when their clocks allow saying so."""
        ta, tb = self.t(a), self.t(b)
        if ta is not None and tb is not None:
            return ta <= tb
        if a.uptime is not None and b.uptime is not None and a.host == b.host:
            return a.uptime <= b.uptime
        if a.file == b.file:
            return a.order <= b.order
        return None
