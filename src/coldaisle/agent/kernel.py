"""The kernel log beside the GPU readings: a thread follows /dev/kmsg and feeds the policy.

GPU-related kernel events (Xid, fallen off the bus, hung task, OOM kill, panic, AER) become the per-node
`kernel_gpu_errors` count (last 5 minutes), and an Xid or bus loss that names a GPU's PCI address is
handed to the loop as that GPU's Xid, so "fallen off the bus" without any Xid from NVML still reaches the
`gpu-lost-or-critical-xid` rule. Reading happens on its own thread, never on the sampling path.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from coldaisle.agent.kmsg import KmsgFollower
from coldaisle.telemetry.clock import Clock
from coldaisle.telemetry.events import Event
from coldaisle.telemetry.frame import DeviceInfo

log = logging.getLogger("coldaisle.agent.kernel")
WINDOW_S = 300.0
_GPU_CLASSES = {"xid", "gpu_fell_off_bus", "gsp_timeout", "gsp_error", "nvswitch_error", "kernel_panic", "hung_task",
                "oom_kill", "pcie_aer"}


def short_pci(bus_id: str) -> str:
    """`00000000:B1:00.0` (NVML), `0000:b1:00.0` (kernel) or `0000:b1:00` (NVRM) -> `b1:00`."""
    parts = bus_id.lower().split(".", 1)[0].split(":")
    return ":".join(parts[-2:])


class KernelWatch:
    """Follows the kernel log on a daemon thread; the loop reads `recent_count()` and gets Xids pushed."""

    def __init__(self, follower: KmsgFollower, devices: Sequence[DeviceInfo], clock: Clock,
                 on_xid: Callable[[int, int], None], interval_s: float = 1.0) -> None:
        self.follower, self.clock, self.on_xid, self.interval_s = follower, clock, on_xid, interval_s
        self._by_pci = {short_pci(d.pci_bus_id): i for i, d in enumerate(devices) if d.pci_bus_id}
        self._times: deque[float] = deque(maxlen=10_000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coldaisle-kmsg", daemon=True)

    def start(self) -> None:
        """Begin following."""
        self._thread.start()

    def stop(self) -> None:
        """Stop following (a watch that was never started just stops)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def recent_count(self) -> float:
        """GPU-related kernel events stamped within the last five minutes (old ring-buffer lines do not count)."""
        now = self.clock.time()
        return float(sum(1 for t in self._times if now - WINDOW_S <= t <= now + WINDOW_S))

    def handle(self, events: Sequence[Event]) -> None:
        """Count GPU-related events and pass GPU-addressed Xids (79 for a bus loss) to the loop."""
        for e in events:
            if e.cls not in _GPU_CLASSES:
                continue
            self._times.append(e.time if e.time == e.time else self.clock.time())  # a NaN stamp counts as now
            pci = str(e.fields.get("pci") or e.fields.get("pci_bus_id") or "")
            device = self._by_pci.get(short_pci(pci)) if pci else None
            if device is None:
                continue
            if e.cls == "xid" and e.fields.get("xid") is not None:
                self.on_xid(device, int(e.fields["xid"]))
            elif e.cls == "gpu_fell_off_bus":
                self.on_xid(device, 79)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.handle(self.follower.poll())
            except Exception as exc:  # the kernel log is one source among several: report and go on
                log.warning("reading the kernel log failed: %s", exc)
