"""Tee a job's stdout and stderr to ours while keeping its last lines for the incident bundle."""

from __future__ import annotations

import threading
from collections import deque
from typing import BinaryIO


class OutputTee:
    """One reader thread per stream: each line goes to its sink at once and into a bounded ring."""

    def __init__(self, max_lines: int = 200) -> None:
        self._ring: deque[tuple[str, bytes]] = deque(maxlen=max_lines)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def follow(self, name: str, source: BinaryIO, sink: BinaryIO | None) -> None:
        """Start copying `source` (a pipe) to `sink` line by line until the pipe closes."""
        thread = threading.Thread(target=self._pump, args=(name, source, sink), daemon=True,
                                  name=f"coldaisle-tee-{name}")
        thread.start()
        self._threads.append(thread)

    def _pump(self, name: str, source: BinaryIO, sink: BinaryIO | None) -> None:
        """Copy until EOF; a broken sink must not stop the ring (the evidence matters more)."""
        with source:
            for line in iter(source.readline, b""):
                with self._lock:
                    self._ring.append((name, line))
                if sink is not None:
                    try:
                        sink.write(line)
                        sink.flush()
                    except (OSError, ValueError):
                        sink = None

    def join(self, timeout_s: float) -> None:
        """Wait for the pipes to drain (they close when the last process holding them is gone)."""
        for thread in self._threads:
            thread.join(timeout_s)

    def last_lines(self) -> list[str]:
        """The kept lines, oldest first, as `[stream] text` for the bundle's output.log."""
        with self._lock:
            kept = list(self._ring)
        return [f"[{name}] {line.decode(errors='replace').rstrip(chr(10))}" for name, line in kept]
