"""PyTorch's Flight Recorder, dumped on request while the job is stuck, and read to name the straggler.

PyTorch keeps a ring of recent collectives per process group (NCCL and, in recent releases, gloo) with a
sequence number and a state (scheduled, started, completed). Its own dump comes only when NCCL's watchdog
times out, which a deadlocked job without timeouts never reaches. So a rank launched by `coldaisle run` runs
a small daemon thread (started by its first `coldaisle.progress()`, only when `torch.distributed` is loaded)
that waits for the supervisor's request file and writes `torch._C._distributed_c10d._dump_fr_trace_json()`
to `rank-<RANK>.json`. The thread needs no GIL-holding main thread: a rank blocked in a collective has
released the GIL.

Read side: the rank whose last collective sequence number is behind the others never entered the
collective they are waiting in: the straggler, named even where py-spy cannot attach.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIR_VAR = "COLDAISLE_FLIGHT_DIR"
REQUEST = "request"
_started = False


def start_dumper(env: Any = None) -> bool:
    """Start the dump-on-request thread once per process, when the supervisor asked for it and torch is in use."""
    global _started  # noqa: PLW0603 - once per process
    env = os.environ if env is None else env
    directory = env.get(DIR_VAR)
    if _started or not directory or "torch.distributed" not in sys.modules:
        return False
    _started = True
    rank = env.get("RANK", env.get("LOCAL_RANK", str(os.getpid())))
    try:  # tells the supervisor this rank will answer, so a job without torch costs it no waiting
        (Path(directory) / f"rank-{rank}.ready").touch()
    except OSError:
        return False
    t = threading.Thread(target=_serve, args=(Path(directory), rank), name="coldaisle-flight-recorder", daemon=True)
    t.start()
    return True


def _serve(directory: Path, rank: str, poll_s: float = 0.2) -> None:
    """Answer each new request (a change of the request file's mtime) with a fresh dump."""
    seen = _mtime(directory / REQUEST)
    while True:
        time.sleep(poll_s)
        now = _mtime(directory / REQUEST)
        if now != seen and now is not None:
            seen = now
            dump_to(directory / f"rank-{rank}.json")


def dump_to(path: Path) -> None:
    """This process's Flight Recorder as JSON (or why not), written under a temporary name and renamed."""
    try:
        import torch._C._distributed_c10d as c10d

        data = c10d._dump_fr_trace_json(includeCollectives=True)
        text = data.decode() if isinstance(data, bytes) else str(data)
    except Exception as exc:  # an old torch, no process group: say so in place of the dump
        text = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.rename(path)
    except OSError:
        tmp.unlink(missing_ok=True)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def request_dumps(directory: Path, timeout_s: float = 3.0) -> dict[str, bytes]:
    """Ask every rank that runs a dumper for a dump; wait (up to `timeout_s`) until each fresh one is there."""
    ranks = len(list(directory.glob("rank-*.ready")))
    if not ranks:
        return {}
    req = directory / REQUEST
    req.write_text(str(time.time_ns()), encoding="utf-8")
    asked = _mtime(req) or 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fresh = [p for p in directory.glob("rank-*.json") if (_mtime(p) or 0) >= asked]
        if len(fresh) >= ranks:
            break
        time.sleep(0.05)
    return {p.name: p.read_bytes() for p in sorted(directory.glob("rank-*.json")) if (_mtime(p) or 0) >= asked}


@dataclass(frozen=True, slots=True)
class RankTrace:
    """What one rank's dump says: its last collective and whether it completed."""

    rank: str
    last_seq: int  # highest collective_seq_id recorded (-1: none)
    last_op: str
    last_state: str


def read_trace(name: str, data: bytes) -> RankTrace | None:
    """One `rank-<R>.json` dump; None when it holds no entries (an error, an old torch)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    entries = [e for e in doc.get("entries", []) if not e.get("is_p2p")] if isinstance(doc, dict) else []
    if not entries:
        return None
    last = max(entries, key=lambda e: int(e.get("collective_seq_id", -1)))
    rank = name.removeprefix("rank-").removesuffix(".json")
    return RankTrace(rank, int(last.get("collective_seq_id", -1)), str(last.get("profiling_name", "?")),
                     str(last.get("state", "?")))


def behind(traces: list[RankTrace]) -> dict[str, Any]:
    """Evidence: each rank's last collective, and the ranks whose last one is behind the furthest rank's."""
    if not traces:
        return {}
    top = max(t.last_seq for t in traces)
    return {"flight_recorder": {t.rank: {"last_seq": t.last_seq, "op": t.last_op, "state": t.last_state}
                                for t in traces},
            "flight_recorder_behind": sorted((t.rank for t in traces if t.last_seq < top), key=_num)}


def _num(rank: str) -> tuple[int, str]:
    return (int(rank), rank) if rank.lstrip("-").isdigit() else (1 << 30, rank)
