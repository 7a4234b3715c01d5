"""systemd's notify protocol over the stdlib socket: READY=1 at start, WATCHDOG=1 from the sampling loop.

`Type=notify` + `WatchdogSec=` in the unit: systemd restarts the agent when the WATCHDOG=1 pings stop.
They are sent from the tick callback, so a loop that stops ticking (wedged in a driver call that outlived
its deadline, a deadlock, a runaway GC) stops pinging and is restarted; a hung GPU does not wedge the loop
(NVML calls run under deadlines), so it does not cause restarts. The protocol is one datagram per message
to the AF_UNIX socket in $NOTIFY_SOCKET (a leading `@` names an abstract socket); without that variable
every call is a no-op, so the agent runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from coldaisle.telemetry.clock import Clock, RealClock


class SdNotify:
    """One notify socket; `ready()`, `tick()` (rate-limited WATCHDOG=1), `status()`, `stopping()`."""

    def __init__(self, address: str | None, *, watchdog_s: float | None = None, clock: Clock | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s
        self.clock = clock or RealClock()
        self.sent: list[str] = []  # every message sent, for the audit note and tests
        self.errors = 0
        self._last_ping = float("-inf")
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, pid: int | None = None,
                 clock: Clock | None = None) -> SdNotify:
        """From NOTIFY_SOCKET and WATCHDOG_USEC (honoured only when WATCHDOG_PID is absent or ours)."""
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_s = None
        usec, wpid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not wpid or wpid == str(os.getpid() if pid is None else pid)):
            watchdog_s = int(usec) / 1e6
        return cls(address, watchdog_s=watchdog_s, clock=clock)

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return bool(self.address)

    def notify(self, message: str) -> bool:
        """Send one datagram; False (and counted) on any socket error, never raises."""
        if not self.address:
            return False
        addr = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), addr)
        except OSError:
            self.errors += 1
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str = "") -> bool:
        """Start-up finished: systemd considers the unit started (Type=notify)."""
        return self.notify("READY=1" + (f"\nSTATUS={_line(status)}" if status else ""))

    def tick(self) -> bool:
        """From the sampling loop: WATCHDOG=1 at most every quarter of WatchdogSec (no-op without a watchdog)."""
        if self.watchdog_s is None:
            return False
        now = self.clock.monotonic()
        if now - self._last_ping < self.watchdog_s / 4:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """A one-line status `systemctl status` shows."""
        return self.notify(f"STATUS={_line(text)}")

    def stopping(self) -> bool:
        """Shutting down on purpose (no watchdog restart while we finish)."""
        return self.notify("STOPPING=1")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _line(text: str) -> str:
    return " ".join(text.split())
