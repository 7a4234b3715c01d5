"""The Backend seam: everything the policy needs from GPUs, and nothing else.

Two real implementations: `NvmlBackend` (telemetry.nvml) for hardware and
`SimBackend` (sim.backend) for the twin. Tests use the simulator, never mocks of NVML.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, runtime_checkable

from coldaisle.errors import ColdaisleError
from coldaisle.telemetry.frame import DeviceInfo, Frame


class BackendKind(StrEnum):
    """Where GPU readings come from: the choice every command offers as `--backend` (opened in sim.open)."""

    AUTO = "auto"  # NVML when the driver answers; otherwise the command says what it does without GPUs
    NVML = "nvml"  # real GPUs, or a clear error
    SIM = "sim"  # a node (or the whole cluster) of the twin
    NONE = "none"  # no GPU readings at all (a CPU-only host, or checks switched off)

    @classmethod
    def parse(cls, text: str | BackendKind, allowed: tuple[BackendKind, ...] | None = None) -> BackendKind:
        """`--backend TEXT` as a kind; an unknown or unoffered one is a usage error (exit 2) in every command."""
        offered = allowed or tuple(cls)
        try:
            kind = cls(str(text).lower())
        except ValueError:
            kind = None
        if kind is None or kind not in offered:
            raise ColdaisleError(f"--backend: unknown backend {str(text)!r}",
                                 hint=f"use {', '.join(k.value for k in offered)}", exit_code=2)
        return kind


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
