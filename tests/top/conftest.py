"""`coldaisle top` test helpers: a TopSession on the twin that steps as fast as the CPU allows."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from coldaisle.top.session import TopOptions, TopSession


@pytest.fixture
def session() -> Iterator[Callable[..., TopSession]]:
    """`open(**TopOptions fields)` -> a TopSession on prometheus-unbound (speed 1e6: no real waiting); closed after."""
    opened: list[TopSession] = []

    def open_(**kw: object) -> TopSession:
        o = TopOptions(**{"backend": "sim", "scenario": "prometheus-unbound", "speed": 1e6, **kw})  # type: ignore[arg-type]
        s = TopSession(o)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()
