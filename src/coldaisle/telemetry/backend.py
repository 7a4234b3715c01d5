"""The Backend seam: everything the policy needs from GPUs, and nothing else.

Two real implementations: `NvmlBackend` (telemetry.nvml) for hardware and
`SimBackend` (sim.backend) for the twin. Tests use the simulator, never mocks of NVML.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from coldaisle.telemetry.frame import DeviceInfo, Frame


@runtime_checkable
class Backend(Protocol):
    """A source of Frames over a fixed set of devices, plus the one actuator the policy needs."""

    def devices(self) -> tuple[DeviceInfo, ...]:
        """Static facts of every device this backend reads, in Frame column order."""
        ...

    def sample(self) -> Frame:
        """One reading of every device; a lost device is a flag in the Frame, never an exception."""
        ...

    def set_power_limit(self, device: int, watts: float) -> None:
        """Set device `device`'s (index into devices()) enforced power limit, in watts."""
        ...

    def close(self) -> None:
        """Release driver handles and threads."""
        ...
