"""Flight Recorder dumps (real ones, from torch 2.13 on gloo) read into the straggler evidence."""

from __future__ import annotations

import json
from pathlib import Path

from coldaisle.guard.flight import behind, read_trace, request_dumps

DATA = Path(__file__).parents[1] / "data" / "guard"


def test_the_rank_behind_on_collectives_is_named() -> None:
    traces = [read_trace(p.name.removeprefix("fr-gloo-"), p.read_bytes()) for p in sorted(DATA.glob("fr-gloo-*.json"))]
    assert all(t is not None for t in traces)
    ev = behind([t for t in traces if t is not None])
    assert ev["flight_recorder_behind"] == ["1"]
    assert ev["flight_recorder"]["0"]["op"] == "gloo:all_reduce"
    assert ev["flight_recorder"]["0"]["last_seq"] == ev["flight_recorder"]["1"]["last_seq"] + 1


def test_dumps_without_entries_or_not_json_are_skipped() -> None:
    assert read_trace("rank-0.json", b'{"error": "RuntimeError: no process group"}') is None
    assert read_trace("rank-0.json", b"\x00garbage") is None
    assert read_trace("rank-0.json", json.dumps({"entries": []}).encode()) is None
    assert behind([]) == {}


def test_no_dumper_means_no_waiting(tmp_path: Path) -> None:
    import time

    t0 = time.monotonic()
    assert request_dumps(tmp_path, timeout_s=5.0) == {}
    assert time.monotonic() - t0 < 0.5 and not (tmp_path / "request").exists()
