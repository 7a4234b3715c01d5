"""Backtest fixtures: a real Prometheus holding an OpenMetrics file (promdata.backfilled)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from promdata import backfilled


@pytest.fixture
def prometheus_with() -> Iterator[Callable[[Path], Any]]:
    """`start(openmetrics_file)` -> a PrometheusServer holding it; every server is stopped at teardown."""
    with ExitStack() as stack:
        yield lambda path: stack.enter_context(backfilled(path))
