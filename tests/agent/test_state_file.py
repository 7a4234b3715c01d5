"""The agent's state file: written from real twin Frames, read back whole, never half-written, never hanging."""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from pathlib import Path

import pytest

from coldaisle.agent.state import SCHEMA, AgentState, StateUnreadable, StateWriter, read_state
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.run import load_plan
from coldaisle.sim.twin import Twin

DATA = Path(__file__).resolve().parents[1] / "health" / "data"  # scenarios shared with the health tests


class _View:
    def __init__(self, name: str, pending: int, firing: int) -> None:
        self.name, self.pending, self.firing = name, pending, firing


def _until_lost(backend: SimBackend, writer: StateWriter, twin: Twin) -> None:
    for _ in range(40):
        frame = backend.sample()
        writer.write(frame, {"d_state_processes": [0.0]}, [_View("gpu-lost-or-critical-xid", 0, int(frame.lost.any())),
                                                           _View("quiet", 0, 0)], samples=1, errors=0)
        if frame.lost.any():
            return
        twin.clock.sleep(1.0)
    raise AssertionError("GPU 1 never fell off the bus")


def test_writer_snapshots_a_lost_gpu_and_its_xid(tmp_path: Path) -> None:
    twin = Twin(load_plan(str(DATA / "gpu-lost.yaml")))
    backend = SimBackend(twin, node="gpu-node-01")
    path = tmp_path / "run" / "state.json"
    writer = StateWriter(path, "gpu-node-01", interval_s=1.0, severities=lambda: {"gpu-lost-or-critical-xid":
                                                                                   "critical"}, wall=lambda: 1e9)
    _until_lost(backend, writer, twin)
    state = read_state(path)
    assert state.node == "gpu-node-01" and state.written_at == 1e9 and state.schema == SCHEMA
    assert [g.lost for g in state.gpus] == [False, True]
    assert math.isnan(state.gpus[1].temperature_c) and math.isfinite(state.gpus[0].temperature_c)
    assert [(x.device, x.xid) for x in state.xids] == [(1, 79)]
    assert [(r.name, r.severity, r.firing) for r in state.rules] == [("gpu-lost-or-critical-xid", "critical", 1)]
    assert state.host == {"d_state_processes": 0.0}
    raw = json.loads(path.read_text())
    assert raw["gpus"][1]["temperature_c"] is None  # NaN is null in JSON, and NaN again when read
    assert os.listdir(path.parent) == ["state.json"]  # the temporary file was renamed, not left behind
    assert path.stat().st_mode & 0o777 == 0o644
    assert AgentState.from_json(state.to_json()) == AgentState.from_json(raw)


def test_an_unwritable_directory_is_counted_not_raised(tmp_path: Path) -> None:
    twin = Twin(load_plan(str(DATA / "healthy-node.yaml")))
    blocker = tmp_path / "file"
    blocker.write_text("")
    writer = StateWriter(blocker / "state.json", "n", interval_s=1.0, severities=dict)
    writer.write(SimBackend(twin, node="gpu-node-01").sample(), {}, [], samples=1, errors=0)
    assert writer.failures == 1


@pytest.mark.parametrize(("content", "words"), [
    (None, "does not exist"),
    (b"{not json", "cannot be read"),
    (b'{"schema": "coldaisle.state/0"}', "malformed: ValueError: schema is 'coldaisle.state/0'"),
    (b'{"schema": "coldaisle.state/1", "node": "n"}', "malformed: KeyError"),
])
def test_bad_state_files_are_unknown_with_the_reason(tmp_path: Path, content: bytes | None, words: str) -> None:
    path = tmp_path / "state.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StateUnreadable) as exc:
        read_state(path)
    assert words in exc.value.message and exc.value.exit_code == 3


def test_a_read_that_hangs_gives_up_after_the_timeout(tmp_path: Path) -> None:
    fifo = tmp_path / "state.json"
    os.mkfifo(fifo)  # open() blocks until a writer appears: a hung filesystem, for real
    t0 = time.monotonic()
    try:
        with pytest.raises(StateUnreadable, match=r"took longer than 0\.3 s"):
            read_state(fifo, timeout_s=0.3)
        assert time.monotonic() - t0 < 2.0
    finally:  # release the reader thread still blocked in open()
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    deadline = time.monotonic() + 2
    while any(t.name == "coldaisle-state-read" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "coldaisle-state-read" for t in threading.enumerate())
