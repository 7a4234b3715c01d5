"""The drawing: sparklines, rule states, and whole screens of real Snapshots at several terminal widths."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from rich.console import Console

from coldaisle.top.render import BARS, render, rule_state, sparkline
from coldaisle.top.session import TopSession
from coldaisle.top.state import RuleRow, Snapshot


def _text(snap: Snapshot, width: int) -> str:
    console = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(render(snap, width))
    return console.export_text()


def _run(s: TopSession, n: int) -> Snapshot:
    snap = None
    for _ in range(n):
        snap = s.step()
    assert snap is not None
    return snap


def test_sparkline_scale_gaps_and_width() -> None:
    assert sparkline(np.array([0.0, 50.0, 100.0]), 0.0, 100.0, 3) == BARS[0] + BARS[4] + BARS[7]
    assert sparkline(np.array([-10.0, 1e9]), 0.0, 100.0, 2) == BARS[0] + BARS[-1]  # clipped to the scale
    assert sparkline(np.array([10.0, math.nan, 10.0]), 0.0, 10.0, 3) == BARS[-1] + " " + BARS[-1]
    assert sparkline(np.array([5.0]), 0.0, 10.0, 4) == "   " + BARS[4]  # right-aligned: the newest at the edge
    assert sparkline(np.arange(100.0), 0.0, 99.0, 5) == sparkline(np.arange(95.0, 100.0), 0.0, 99.0, 5)
    assert sparkline(np.array([3.0, 3.0]), 3.0, 3.0, 2) == BARS[0] * 2  # a flat scale does not divide by zero


@pytest.mark.parametrize(("row", "text"), [
    (RuleRow("r", "critical", "job", 10.0, 1, 0, 7.0), "pending (1), fires in 7 s"),
    (RuleRow("r", "critical", "job", 10.0, 3, 0, 0.4), "pending (3), fires in 1 s"),
    (RuleRow("r", "critical", "job", 10.0, 0, 2, None), "FIRING (2)"),
    (RuleRow("r", "critical", "job", 10.0, 1, 2, 5.0), "FIRING (2), pending (1)"),
    (RuleRow("r", "warning", "device", 5.0, 0, 0, None), "ok"),
])
def test_rule_state(row: RuleRow, text: str) -> None:
    assert rule_state(row).plain == text


def test_screen_shows_gpus_processes_pending_rule_and_actions(session: Callable[..., TopSession]) -> None:
    s = session(node="node-gpu-12", start="03:04:05")
    pending = _run(s, 8)  # 03:04:12: collective-hang pending since 03:04:11
    screen = _text(pending, 140)
    assert "coldaisle top node-gpu-12" in screen and "2024-05-21 03:04:12 UTC" in screen
    hang = next(line for line in screen.splitlines() if line.lstrip().startswith("collective-hang"))
    assert hang.split() == ["collective-hang", "job", "critical", "10", "s", "pending", "(1),", "fires", "in",
                            "9", "s"]
    want = [[str(g.info.index), f"{g.temperature_c:.0f}", "C"] for g in pending.gpus]
    gpu_lines = [line.split() for line in screen.splitlines() if line.split()[:3] in want]
    assert len(gpu_lines) == 4, screen
    assert all("700/700" in g and "74.0/79.6" in g and "100%" in g for g in gpu_lines)
    assert screen.count("omni-reasoning") >= 4 and "python3" in screen

    firing = next(x for x in (_run(s, 1) for _ in range(12))
                  if any(r.firing for r in x.rules if r.name == "collective-hang"))
    screen = _text(firing, 140)
    hang = next(line for line in screen.splitlines() if line.lstrip().startswith("collective-hang"))
    assert "FIRING (1)" in hang
    assert "sent SIGTERM to pid 12849" in screen  # the ladder's SIGTERM, newest actions first


@pytest.mark.parametrize("width", [80, 100, 160])
def test_every_column_survives_narrow_terminals(session: Callable[..., TopSession], width: int) -> None:
    snap = _run(session(node="node-gpu-12", start="03:04:05"), 20)
    screen = _text(snap, width)
    assert max(len(line.rstrip()) for line in screen.splitlines()) <= width
    actions = screen[screen.index("recent actions"):]
    header = actions.splitlines()[2].split()
    assert header[:5] == ["time", "rule", "action", "target", "status"]
    assert ("detail" in header) == (width >= 120)
    assert "03:04:21" in actions and "sigterm" in actions and "done" in actions


def test_lost_gpus_say_so(session: Callable[..., TopSession]) -> None:
    s = session(node="node-gpu-102", start="04:20:40", enforce=False)
    snap = _run(s, 8)
    screen = _text(snap, 120)
    assert screen.count("LOST") == 4, screen
    assert "gpu-lost-or-critical-xid" in screen and "dry_run" in screen
