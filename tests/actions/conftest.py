"""Shared setup for the action tests: captured data, real child processes (cleaned up by pid), a fake scontrol,
a local HTTP receiver, and a recording executor that implements the Executor protocol."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from coldaisle.actions.fleet import FleetUnreadable, NodeState
from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status

DATA = Path(__file__).resolve().parents[1] / "data" / "actions"


@pytest.fixture
def data() -> Path:
    """tests/data/actions."""
    return DATA


def state_of(pid: int) -> str | None:
    """The process's state letter, or None when /proc no longer lists it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def dead(pid: int) -> bool:
    """Gone, or a zombie waiting for its parent: either way it runs no more."""
    return state_of(pid) in (None, "Z")


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll `predicate` every 10 ms for up to `timeout_s`."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Spawner:
    """Starts real processes for a test and, afterwards, kills exactly those (and the groups it created)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.extra: list[int] = []

    def __call__(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
        self.started.append(p)
        return p

    dead = staticmethod(dead)
    state = staticmethod(state_of)
    wait_until = staticmethod(wait_until)

    def cleanup(self) -> None:
        for pid in self.extra:
            if not dead(pid):
                os.kill(pid, signal.SIGKILL)
        for p in self.started:
            if p.poll() is None:
                p.kill()
            p.wait(5)


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    """Spawner whose processes are SIGKILLed by pid after the test."""
    s = Spawner()
    yield s
    s.cleanup()


FAKE_SCONTROL = """#!{python}
import json, pathlib, sys, time
here = pathlib.Path(__file__).parent
with open(here / "calls.jsonl", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
delay = here / "delay"
if delay.exists():
    time.sleep(float(delay.read_text()))
if sys.argv[1:3] == ["show", "node"]:
    show = here / "show.txt"
    if not show.exists():
        sys.stderr.write("Node %s not found\\n" % sys.argv[-1])
        sys.exit(1)
    sys.stdout.write(show.read_text())
"""


@dataclass
class FakeScontrol:
    """An executable `scontrol` stand-in: prints show.txt for `show node`, records every argv."""

    dir: Path

    @property
    def path(self) -> str:
        return str(self.dir / "scontrol")

    def shows(self, captured: Path) -> None:
        (self.dir / "show.txt").write_text(captured.read_text())

    def delay(self, seconds: float) -> None:
        (self.dir / "delay").write_text(str(seconds))

    def calls(self) -> list[list[str]]:
        f = self.dir / "calls.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


@pytest.fixture
def scontrol(tmp_path: Path) -> FakeScontrol:
    """A fake scontrol executable in a temporary directory (run through the real subprocess.run)."""
    d = tmp_path / "slurm-bin"
    d.mkdir()
    script = d / "scontrol"
    script.write_text(FAKE_SCONTROL.format(python=sys.executable))
    script.chmod(0o755)
    return FakeScontrol(d)


@dataclass
class Receiver:
    """A local HTTP server that records POSTed JSON and answers from a script of status codes."""

    url: str
    posts: list[dict] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)  # answered in order; 200 once exhausted
    hang: threading.Event | None = None  # when set: every request waits on `release` (up to 10 s)
    release: threading.Event = field(default_factory=threading.Event)
    got: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An Alertmanager-like webhook receiver on 127.0.0.1."""
    rec = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec.posts.append(json.loads(body))
            rec.got.set()
            if rec.hang is not None:
                rec.release.wait(10)
            code = rec.codes.pop(0) if rec.codes else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    yield rec
    rec.release.set()
    server.shutdown()
    server.server_close()


class Recording:
    """An Executor for any kind that records what it was asked and answers DONE (or DRY_RUN)."""

    def __init__(self, kind: ActionKind, *, raises: bool = False) -> None:
        self.kind = kind
        self.raises = raises
        self.seen: list[tuple[Decision, bool]] = []

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        self.seen.append((decision, dry_run))
        if self.raises:
            raise RuntimeError("boom")
        status = Status.DRY_RUN if dry_run else Status.DONE
        return Outcome(decision, status, f"{'would have ' if dry_run else ''}done", decision.time)


@pytest.fixture
def recording() -> type[Recording]:
    """The Recording executor class."""
    return Recording


class MemoryFleet:
    """A DRAIN executor over an in-memory node table that lists its fleet as a scheduler does (actions/fleet.py).

    A stand-in for the scheduler in unit tests of the breaker's arithmetic; the real-Slurm tests run the same
    breaker against `scontrol` (tests/integration/test_fleet_breaker.py)."""

    kind = ActionKind.DRAIN

    def __init__(self, nodes: int, clock: Any, *, down: tuple[str, ...] = ()) -> None:
        self.clock = clock
        self.nodes: dict[str, dict[str, Any]] = {f"node-{i:02d}": {"unavailable": f"node-{i:02d}" in down,
                                                                    "ours": False, "since": None}
                                                 for i in range(nodes)}
        self.unreadable: str | None = None
        self.undone: list[str] = []

    def fleet(self) -> list[NodeState]:
        """Every node, or FleetUnreadable while `unreadable` is set."""
        if self.unreadable:
            raise FleetUnreadable(self.unreadable)
        return [NodeState(n, v["unavailable"], v["ours"], v["since"]) for n, v in self.nodes.items()]

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Drain (or undo our drain of) the target node."""
        node = self.nodes[decision.target.node]
        if dry_run:
            return Outcome(decision, Status.DRY_RUN, "would have drained", decision.time)
        if decision.restore:
            node.update(unavailable=False, ours=False, since=None)
            self.undone.append(decision.target.node)
            return Outcome(decision, Status.DONE, "resumed", decision.time)
        if node["unavailable"]:
            return Outcome(decision, Status.DONE, "already drained", decision.time)
        node.update(unavailable=True, ours=True, since=self.clock.time())
        return Outcome(decision, Status.DONE, "drained", decision.time)


@pytest.fixture
def memory_fleet() -> type[MemoryFleet]:
    """The MemoryFleet executor class."""
    return MemoryFleet
