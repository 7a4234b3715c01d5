"""Injected time: everything that waits or measures a duration takes a Clock.

`RealClock` is the wall and monotonic clock of the host. `SimClock` is advanced by
`sleep()` (or by the twin), so a 72-hour incident runs in seconds through the very
code that runs in production.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Wall time (UTC epoch seconds), monotonic seconds and a sleep that may be simulated."""

    def time(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` (a simulated clock advances instead of waiting)."""
        ...

    def wait(self, seconds: float, stop: threading.Event | None = None) -> None:
        """`sleep`, cut short when `stop` is set (a daemon's loop waits this way, so SIGTERM ends it at once)."""
        ...


class RealClock:
    """The host's clocks."""

    def time(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        return _time.time()

    def monotonic(self) -> float:
        """The host's monotonic clock."""
        return _time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block the calling thread."""
        if seconds > 0:
            _time.sleep(seconds)

    def wait(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Block until `seconds` pass or `stop` is set."""
        if stop is None:
            self.sleep(seconds)
        elif seconds > 0:
            stop.wait(seconds)


class SimClock:
    """A clock that only moves when told to; `sleep()` advances it and runs the listeners."""

    def __init__(self, start_wall: float = 0.0) -> None:
        self._start_wall = float(start_wall)
        self._elapsed = 0.0
        self._listeners: list[Callable[[float], None]] = []

    def time(self) -> float:
        """Simulated seconds since the Unix epoch, UTC."""
        return self._start_wall + self._elapsed

    def monotonic(self) -> float:
        """Simulated seconds since the clock was created."""
        return self._elapsed

    def on_advance(self, listener: Callable[[float], None]) -> None:
        """Call `listener(new_monotonic)` each time the clock advances (the twin steps here)."""
        self._listeners.append(listener)

    def advance_to(self, monotonic: float) -> None:
        """Move to `monotonic` seconds since start (never backwards) and notify listeners."""
        if monotonic < self._elapsed:
            raise ValueError(f"a clock cannot go backwards ({monotonic} < {self._elapsed})")
        for listener in self._listeners:
            listener(monotonic)
        self._elapsed = monotonic

    def sleep(self, seconds: float) -> None:
        """Advance simulated time by `seconds` without waiting."""
        if seconds > 0:
            self.advance_to(self._elapsed + seconds)

    def wait(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Simulated time never blocks: advance, unless asked to stop."""
        if stop is None or not stop.is_set():
            self.sleep(seconds)
