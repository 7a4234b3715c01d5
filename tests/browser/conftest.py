"""Browser test helpers: one headless Chromium (Debian `chromium`) per module, stopped afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from chromium_cdp import Chromium  # beside this file; pytest puts the folder on sys.path (no packages here)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """A headless Chromium with a fresh profile; a missing browser fails (CI installs it)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is not installed; run scripts/install-test-deps.sh (Debian package `chromium`)",
                    pytrace=False)
    browser = Chromium(binary)
    try:
        yield browser
    finally:
        browser.close()
