"""DeviceInfo and the columnar Frame: one reading of many devices at one instant.

A Frame holds one numpy array per metric over devices, so the same policy code
evaluates 8 GPUs on a node or 512 in a simulated cluster in one vectorised step.
A value that could not be read is NaN; why (lost device, not supported, probe
hung) is kept beside it, never encoded as a sentinel number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntFlag
from operator import attrgetter

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


class ThrottleReason(IntFlag):
    """Clock throttle reasons as NVML's bitmask (nvmlClocksEventReason*; `clocks_event_reasons.*`)."""

    NONE = 0
    GPU_IDLE = 0x1
    APPLICATIONS_CLOCKS_SETTING = 0x2
    SW_POWER_CAP = 0x4
    HW_SLOWDOWN = 0x8
    SYNC_BOOST = 0x10
    SW_THERMAL_SLOWDOWN = 0x20
    HW_THERMAL_SLOWDOWN = 0x40
    HW_POWER_BRAKE_SLOWDOWN = 0x80
    DISPLAY_CLOCK_SETTING = 0x100


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Static facts of one GPU (`nvidia-smi -q` header and limits)."""

    node: str
    index: int
    uuid: str
    name: str
    memory_total_bytes: int
    power_default_limit_w: float
    power_max_limit_w: float
    power_min_limit_w: float
    slowdown_temperature_c: float
    shutdown_temperature_c: float
    pci_bus_id: str = ""
    persistence_mode: bool | None = None  # None: unknown (not supported, or a simulated card that has none)


@dataclass(frozen=True, slots=True)
class Metric:
    """One Frame column: name with unit suffix, help text, and its `nvidia-smi --query-gpu` twin."""

    name: str
    unit: str
    help: str
    smi: str = ""
    counter: bool = False


#: The Frame's float columns, in order. Exporters and docs read this catalog, not the code.
METRICS: tuple[Metric, ...] = (
    Metric("temperature_c", "celsius", "GPU core temperature", "temperature.gpu"),
    Metric("memory_temperature_c", "celsius", "HBM temperature", "temperature.memory"),
    # On A100 and older NVML's only power reading is instantaneous; NvmlBackend falls back to it there.
    Metric("power_w", "watts", "Power draw averaged over the last second", "power.draw.average"),
    Metric("power_instant_w", "watts", "Instantaneous power draw", "power.draw.instant"),
    Metric("power_limit_w", "watts", "Enforced power limit", "enforced.power.limit"),
    Metric("energy_j", "joules", "Energy consumed since driver load", "", counter=True),
    Metric("memory_used_bytes", "bytes", "Device memory in use", "memory.used"),
    Metric("memory_total_bytes", "bytes", "Device memory capacity as reported by the driver", "memory.total"),
    Metric("utilization_gpu", "percent", "Share of time a kernel was running", "utilization.gpu"),
    Metric("utilization_memory", "percent", "Share of time device memory was read or written",
           "utilization.memory"),
    Metric("sm_clock_mhz", "megahertz", "SM clock", "clocks.sm"),
    Metric("memory_clock_mhz", "megahertz", "Memory clock", "clocks.mem"),
    Metric("fan_pct", "percent", "Fan speed as a share of its maximum", "fan.speed"),
    Metric("pcie_rx_bytes_per_s", "bytes_per_second", "PCIe receive throughput", ""),
    Metric("pcie_tx_bytes_per_s", "bytes_per_second", "PCIe transmit throughput", ""),
    Metric("nvlink_rx_bytes_per_s", "bytes_per_second", "NVLink receive throughput, all links", ""),
    Metric("nvlink_tx_bytes_per_s", "bytes_per_second", "NVLink transmit throughput, all links", ""),
    Metric("pcie_replay_total", "", "PCIe replay counter", "", counter=True),
    Metric("ecc_corrected_total", "", "Volatile corrected ECC errors", "ecc.errors.corrected.volatile.total",
           counter=True),
    Metric("ecc_uncorrected_total", "", "Volatile uncorrected ECC errors",
           "ecc.errors.uncorrected.volatile.total", counter=True),
    # Memory health (NVML nvmlDeviceGetRemappedRows, Ampere and newer; nvmlDeviceGetRetiredPagesPendingStatus,
    # older GPUs; NaN where not supported). Pending means: the fix needs a GPU reset.
    Metric("remapped_rows_pending", "", "A row remapping is pending a GPU reset (1) or not (0)", ""),
    Metric("remapped_rows_failure", "", "A row remapping has failed in the past (1): the GPU needs service", ""),
    Metric("retired_pages_pending", "", "Retired memory pages are pending a GPU reset (1) or not (0)",
           "retired_pages.pending"),
    Metric("sample_age_s", "seconds", "Age of this device's reading when the Frame was assembled", ""),
)
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
_COLUMN_NAMES = (*METRIC_NAMES, "throttle_reasons", "lost")  # every per-device array of a Frame
_COLUMNS = attrgetter(*_COLUMN_NAMES)
_SHAPE = attrgetter("shape")


@dataclass(frozen=True, slots=True)
class ProcessRows:
    """Per-process rows, columnar: which device each process uses and how much memory."""

    device: NDArray[np.int32]
    pid: NDArray[np.int64]
    used_memory_bytes: F64

    @classmethod
    def empty(cls) -> ProcessRows:
        """No processes."""
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64))

    def __len__(self) -> int:
        return int(self.pid.shape[0])


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A device event seen during the sample (an Xid from NVML's event set, a hung probe)."""

    device: int
    kind: str
    time: float
    xid: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One reading of many devices at one instant, one array per metric over devices."""

    wall_time: float
    monotonic: float
    devices: tuple[DeviceInfo, ...]
    temperature_c: F64
    memory_temperature_c: F64
    power_w: F64
    power_instant_w: F64
    power_limit_w: F64
    energy_j: F64
    memory_used_bytes: F64
    memory_total_bytes: F64
    utilization_gpu: F64
    utilization_memory: F64
    sm_clock_mhz: F64
    memory_clock_mhz: F64
    fan_pct: F64
    pcie_rx_bytes_per_s: F64
    pcie_tx_bytes_per_s: F64
    nvlink_rx_bytes_per_s: F64
    nvlink_tx_bytes_per_s: F64
    pcie_replay_total: F64
    ecc_corrected_total: F64
    ecc_uncorrected_total: F64
    remapped_rows_pending: F64
    remapped_rows_failure: F64
    retired_pages_pending: F64
    sample_age_s: F64
    throttle_reasons: NDArray[np.uint64]
    lost: NDArray[np.bool_]
    processes: ProcessRows = field(default_factory=ProcessRows.empty)
    events: tuple[DeviceEvent, ...] = ()
    #: (column, device) pairs the driver reported as not supported (a METRICS name or "throttle_reasons"):
    #: a typed absence, not a zero.
    unsupported: frozenset[tuple[str, int]] = frozenset()

    def __post_init__(self) -> None:
        want = (len(self.devices),)
        columns = _COLUMNS(self)  # one C-level gather: this runs for every sample
        if not all(map(want.__eq__, map(_SHAPE, columns))):  # C-level loops too
            bad = next(name for name, c in zip(_COLUMN_NAMES, columns, strict=True) if c.shape != want)
            raise ValueError(f"Frame column {bad} has shape {getattr(self, bad).shape}, expected {want}")

    def __len__(self) -> int:
        return len(self.devices)

    def column(self, name: str) -> F64:
        """A float column by name (raises KeyError for names not in METRICS)."""
        if name not in METRIC_NAMES:
            raise KeyError(name)
        return getattr(self, name)  # type: ignore[no-any-return]

    @classmethod
    def blank(cls, devices: tuple[DeviceInfo, ...], wall_time: float, monotonic: float) -> dict[str, object]:
        """Keyword arguments for a Frame whose every value is NaN / zero; backends fill them in."""
        n = len(devices)
        kwargs: dict[str, object] = {name: np.full(n, np.nan) for name in METRIC_NAMES}
        kwargs.update(
            wall_time=wall_time,
            monotonic=monotonic,
            devices=devices,
            throttle_reasons=np.zeros(n, np.uint64),
            lost=np.zeros(n, np.bool_),
        )
        return kwargs
