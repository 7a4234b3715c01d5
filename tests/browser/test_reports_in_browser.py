"""The HTML reports (demo, triage, plan, a run bundle) open in headless Chromium with no console errors; each is
screenshot.

Each report is made by the real CLI from the simulator's own data, loaded from file:// in a fresh tab, and checked
for console errors and assertions, uncaught exceptions and browser log errors (a missing resource, a blocked
request: the reports are self-contained, so there should be no request at all). The screenshots are written to
the test's folder (and, with COLDAISLE_SCREENSHOTS=DIR, copied there for people to look at).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from chromium_cdp import Chromium

COLDAISLE = shutil.which("coldaisle") or str(Path(sys.executable).with_name("coldaisle"))
FACTS = {"svgs": "document.querySelectorAll('svg').length",
         "text": "document.body.innerText",
         "requests": "performance.getEntriesByType('resource').map(e => e.name)",
         "height": "document.documentElement.scrollHeight"}


def _cli(cwd: Path, *args: str) -> None:
    res = subprocess.run([COLDAISLE, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"}, check=False)
    assert res.returncode == 0, f"coldaisle {' '.join(args)} exited {res.returncode}:\n{res.stderr[-3000:]}"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> HTML file, each written by the real command."""
    d = tmp_path_factory.mktemp("reports")
    _cli(d, "demo", "--until", "+30min", "--html", "demo.html")
    _cli(d, "sim", "run", "prometheus-unbound", "--until", "+90min", "--logs", "logs")
    _cli(d, "triage", "logs", "--html", "triage.html")
    _cli(d, "plan", "--model", "llama-3.1-8b", "--gpu", "h100-sxm-80gb", "--gpus", "8", "--tp", "8",
         "--html", "plan.html")
    # a run bundle: a job whose GPUs spin in the 03:04 deadlock on the twin is stopped as a hang (exit 70)
    run = subprocess.run([COLDAISLE, "run", "--backend", "sim", "--sim-node", "node-gpu-12", "--sim-start",
                          "03:03:55", "--hang-timeout", "5", "--grace", "2", "--no-preflight", "--bundle", "bundle",
                          "--", "sleep", "100"], cwd=d, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 70, run.stderr[-3000:]
    return {**{name: d / f"{name}.html" for name in ("demo", "triage", "plan")}, "bundle": d / "bundle" / "report.html"}


def _screenshot_ok(png: Path, min_height: int) -> None:
    """A real picture: a PNG as wide as the window, as tall as the page, and not one flat colour."""
    img = matplotlib.image.imread(png)
    assert img.ndim == 3 and img.shape[1] == 1280 and img.shape[0] >= min_height, img.shape
    assert float(np.std(img[..., :3])) > 0.02  # a blank page would be (nearly) uniform


def _keep(png: Path) -> None:
    out = os.environ.get("COLDAISLE_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(out) / png.name)


@pytest.mark.browser
@pytest.mark.parametrize(("name", "must_say"), [
    ("demo", ["node-gpu-88"]),
    ("triage", ["node-gpu-88"]),
    ("plan", ["llama"]),
    ("bundle", ["collective spin", "GPU power"]),
])
def test_report_opens_without_errors(chromium: Chromium, reports: dict[str, Path], tmp_path: Path, name: str,
                                     must_say: list[str]) -> None:
    shot = tmp_path / f"{name}.png"
    page = chromium.open(reports[name].as_uri(), screenshot=shot, facts=FACTS)
    assert page.errors == [], f"{name}: {page.errors}"
    assert page.title, f"{name}: the page has no title"
    assert page.facts["svgs"] >= 1, f"{name}: no inline SVG plot rendered"
    assert page.facts["requests"] == [], f"{name}: not self-contained, it fetched {page.facts['requests']}"
    for text in must_say:
        assert text.lower() in page.facts["text"].lower(), f"{name} does not mention {text}"
    _screenshot_ok(shot, min(int(page.facts["height"]), 900))
    _keep(shot)


@pytest.mark.browser
def test_the_checker_catches_a_broken_page(chromium: Chromium, tmp_path: Path) -> None:
    """The same checks on a page with a console error, an uncaught exception and a missing image must fail."""
    bad = tmp_path / "broken.html"
    bad.write_text("<!doctype html><title>broken</title><p>x</p><img src='missing.png'>"
                   "<script>console.error('boom'); null.f();</script>")
    page = chromium.open(bad.as_uri(), facts=FACTS)
    text = "\n".join(page.errors)
    assert "console: boom" in text
    assert "exception: TypeError" in text
    assert "missing.png" in text
