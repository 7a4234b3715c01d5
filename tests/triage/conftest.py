"""Shared fixtures: the shipped catalog's matcher, test data paths, and the twin's logs (made once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldaisle.triage.catalog import Matcher, load_catalog

DATA = Path(__file__).resolve().parents[1] / "data" / "triage"


@pytest.fixture(scope="session")
def matcher() -> Matcher:
    return load_catalog().matcher()


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA
