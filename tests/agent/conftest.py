"""Agent test helpers: a Frame from the twin, and the real Prometheus of tests/promserver.py as a fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from coldaisle.sim.backend import SimBackend
from coldaisle.sim.run import load_plan
from coldaisle.sim.twin import Twin
from promserver import PrometheusServer, free_port, prometheus_server

__all__ = ["PrometheusServer", "free_port", "prometheus_server"]


@pytest.fixture
def twin() -> Twin:
    """healthy-training ten minutes in: the job started at +5 min, so every GPU has a process."""
    tw = Twin(load_plan("healthy-training"))
    tw.clock.sleep(600)
    return tw


@pytest.fixture
def node_backend(twin: Twin) -> SimBackend:
    """The eight GPUs of train-01."""
    return SimBackend(twin, "train-01")


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., PrometheusServer]]:
    """`start(targets, **kw)` -> PrometheusServer; every server started is stopped at teardown."""
    with ExitStack() as stack:
        yield lambda targets, **kw: stack.enter_context(prometheus_server(targets, **kw))
