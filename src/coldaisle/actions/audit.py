"""The audit log: every Decision and Outcome as one JSON line, fsync'd, rotated by size.

An agent that kills, caps or drains must be able to show afterwards what it did and why, even
after a crash: each line is flushed and fsync'd before `write` returns. Writing never raises
(a full disk must not stop the daemon); failures go to `logging` and the `errors` counter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from coldaisle.actions.interface import Decision, Outcome
from coldaisle.telemetry.clock import Clock, RealClock

log = logging.getLogger(__name__)


class AuditLog:
    """Append-only JSON lines at `path`, rotated to path.1 ... path.N once `max_bytes` would be exceeded."""

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 50 * 1024 * 1024, backups: int = 5,
                 clock: Clock | None = None, durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable  # fsync every line; only a simulation, whose "crash" is a rerun, turns it off
        self.max_bytes = max_bytes
        self.backups = backups
        self.clock = clock or RealClock()
        self.errors = 0
        self.written = 0
        self._lock = threading.Lock()
        self._fh: IO[bytes] | None = None

    def decision(self, d: Decision) -> None:
        """Record what the engine decided, before anything is done about it."""
        self.write("decision", d.to_json())

    def outcome(self, o: Outcome) -> None:
        """Record what an executor did (or refused, or would have done)."""
        self.write("outcome", o.to_json())

    def note(self, text: str, **fields: Any) -> None:
        """Record something the runner did on its own (an escalation, a dropped decision)."""
        self.write("note", {"text": text, **fields})

    def write(self, kind: str, record: dict[str, Any]) -> None:
        """Append one record; never raises."""
        try:
            stamp = datetime.fromtimestamp(self.clock.time(), tz=UTC).isoformat(timespec="milliseconds")
            line = json.dumps({"kind": kind, "logged_at": stamp.replace("+00:00", "Z"), **record},
                              default=str, separators=(",", ":")).encode() + b"\n"
            with self._lock:
                try:
                    self._append(line)
                except OSError:
                    self._discard()  # reopen on the next write: the disk may come back
                    raise
                self.written += 1
        except Exception:  # the daemon keeps going; the failure is logged and counted
            self.errors += 1
            log.exception("audit log %s: could not write a %s record", self.path, kind)

    def _append(self, line: bytes) -> None:
        fh = self._open()
        if fh.tell() and fh.tell() + len(line) > self.max_bytes:
            self._rotate()
            fh = self._open()
        fh.write(line)
        fh.flush()
        if self.durable:
            os.fsync(fh.fileno())

    def _open(self) -> IO[bytes]:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 - held open across writes, closed in close()
        return self._fh

    def _rotate(self) -> None:
        """path -> path.1 -> ... -> path.N; the oldest falls off. Renames only, then the directory is synced."""
        self._close_file()
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
            return
        for i in range(self.backups - 1, 0, -1):
            src = self._backup(i)
            if src.exists():
                os.replace(src, self._backup(i + 1))
        os.replace(self.path, self._backup(1))
        _fsync_dir(self.path.parent)

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def _close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _discard(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()

    def close(self) -> None:
        """Close the file; a later write opens it again."""
        with self._lock:
            try:
                self._close_file()
            except OSError:
                self.errors += 1
                log.exception("audit log %s: close failed", self.path)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_dir(path: Path) -> None:
    """Make renames durable: fsync the directory that holds them."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: str | os.PathLike[str], *, backups: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the records of an audit file (oldest backups first when `backups`), for tests and tools."""
    p = Path(path)
    files = [p]
    if backups:
        olds = sorted(p.parent.glob(p.name + ".*"), key=lambda f: int(f.suffix[1:]) if f.suffix[1:].isdigit() else 0)
        files = [*reversed(olds), p]
    for f in files:
        if not f.exists():
            continue
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
