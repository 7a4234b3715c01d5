"""NvmlReading one GPU's Frame columns through the NVML choke point, in base units, and assembling the Frame.

Pure bookkeeping over results: every driver call arrives here already wrapped by
`NvmlBackend._call`, so "not supported", "GPU lost" and "hung" are values, not exceptions.
Sources for the semantics chosen here are noted beside each choice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from coldaisle.telemetry.clock import Clock
from coldaisle.telemetry.deadline import CallResult, Reason, call_name
from coldaisle.telemetry.frame import DeviceEvent, DeviceInfo, Frame, ProcessRows

log = logging.getLogger(__name__)

Call = Callable[..., CallResult]
NAN = math.nan
KIB = 1024.0
#: nvmlFieldValue_t.valueType -> the c_nvmlValue_t member holding the value (nvml.h nvmlValueType_t).
_VALUE_MEMBERS = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")
_ALL_LINKS = 0xFFFFFFFF  # nvml.h: a scopeId of UINT_MAX sums NVLink throughput counters over all links
_NVML_SUCCESS = 0
#: Per-field answers meaning "this driver has no such field here": NOT_SUPPORTED, or INVALID_ARGUMENT
#: for a field id or link scope the driver predates.
_FIELD_ABSENT = frozenset({3, 2})
#: (column, field id, scope id, scale to base units). Ids are nvml.h ABI, stable across drivers; a
#: driver that lacks one answers NOT_SUPPORTED for that field only. Power scope 0 = GPU only.
#: nvml.h: POWER_AVERAGE (185) is "GPU power averaged over 1 sec interval, supported on Ampere
#: (except GA100) or newer"; POWER_INSTANT (186) is "current GPU power, supported on all architectures".
#: NVLINK_THROUGHPUT_DATA_* are cumulative KiB counters; the rate is taken between samples.
FIELDS: tuple[tuple[str, int, int, float], ...] = (
    ("memory_temperature_c", 82, 0, 1.0),  # NVML_FI_DEV_MEMORY_TEMP, celsius
    ("power_w", 185, 0, 1e-3),  # NVML_FI_DEV_POWER_AVERAGE, mW
    ("power_instant_w", 186, 0, 1e-3),  # NVML_FI_DEV_POWER_INSTANT, mW
    ("nvlink_tx_bytes_per_s", 138, _ALL_LINKS, KIB),  # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, KiB
    ("nvlink_rx_bytes_per_s", 139, _ALL_LINKS, KIB),  # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, KiB
)


def field_value(fv: Any) -> float | None:
    """The numeric value of one nvmlFieldValue_t, or None when the driver reported an error for it."""
    if int(fv.nvmlReturn) != _NVML_SUCCESS or not 0 <= int(fv.valueType) < len(_VALUE_MEMBERS):
        return None
    return float(getattr(fv.value, _VALUE_MEMBERS[int(fv.valueType)]))


@dataclass(slots=True)
class CounterRates:
    """Turns monotonically growing counters into per-second rates between successive reads."""

    last: dict[tuple[int, str], tuple[float, float]] = field(default_factory=dict)

    def rate(self, device: int, name: str, value: float, now: float) -> float:
        """Rate since the previous read of this counter; NaN on the first read or after a reset."""
        previous = self.last.get((device, name))
        self.last[(device, name)] = (value, now)
        if previous is None or now <= previous[1] or value < previous[0]:
            return NAN
        return (value - previous[0]) / (now - previous[1])


@dataclass(slots=True)
class NvmlReading:
    """What one device's probes produced this sample."""

    values: dict[str, float] = field(default_factory=dict)
    unsupported: set[str] = field(default_factory=set)
    throttle_reasons: int = 0
    processes: list[tuple[int, float]] = field(default_factory=list)
    lost: bool = False
    hung: CallResult | None = None
    any_ok: bool = False


class DeviceReader:
    """Reads every column of one device; stops at the first lost or hung answer."""

    def __init__(self, call: Call, handle: Any, index: int, warned: set[str]) -> None:
        self._call, self._h, self.index, self._warned = call, handle, index, warned
        self.reading = NvmlReading()
        self.counters: dict[str, float] = {}

    def get(self, columns: Sequence[str], fns: Sequence[Callable[..., Any]], *args: Any) -> Any:
        """First value among `fns(handle, *args)`, trying the next only when one is not supported."""
        r = self.reading
        result = CallResult(reason=Reason.NOT_SUPPORTED)
        for fn in fns:
            if r.lost or r.hung is not None:
                return None
            result = self._call(fn, self._h, *args)
            if result.reason is not Reason.NOT_SUPPORTED:
                break
        if result.ok:
            r.any_ok = True
            return result.value
        if result.reason is Reason.NOT_SUPPORTED:
            r.unsupported.update(columns)
        elif result.reason is Reason.GPU_LOST:
            r.lost = True
        elif result.reason is Reason.HUNG:
            r.hung = result
        elif result.message not in self._warned:
            self._warned.add(result.message)
            log.warning("GPU %d: NVML %s failed: %s", self.index, call_name(fns[-1]), result.message)
        return None

    def put(self, column: str, raw: Any, scale: float = 1.0) -> None:
        """Store `raw * scale` under `column` when the probe produced a value."""
        if raw is not None:
            self.reading.values[column] = float(raw) * scale


def read_device(nv: ModuleType, call: Call, handle: Any, *, index: int, rates: CounterRates, now: float,
                pcie_throughput: bool, warned: set[str]) -> NvmlReading:
    """Every column of device `index`, in base units, with typed absences."""
    d = DeviceReader(call, handle, index, warned)
    _read_fields(d, nv)
    _read_power(d, nv)
    _read_memory_and_load(d, nv)
    _read_links(d, nv, rates, now, pcie_throughput)
    _read_health(d, nv)
    return d.reading


def _legacy(nv: ModuleType, *names: str) -> list[Callable[..., Any]]:
    """The functions among `names` this pynvml has, newest first (older bindings lack new names)."""
    return [getattr(nv, n) for n in names if hasattr(nv, n)]


def _read_fields(d: DeviceReader, nv: ModuleType) -> None:
    temp = _legacy(nv, "nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature")
    d.put("temperature_c", d.get(["temperature_c"], temp, nv.NVML_TEMPERATURE_GPU))
    fvs = d.get([c for c, *_ in FIELDS], [nv.nvmlDeviceGetFieldValues], [(f, s) for _, f, s, _ in FIELDS])
    for (column, _, _, scale), fv in zip(FIELDS, fvs or (), strict=False):
        value = field_value(fv)
        if value is None:
            if int(fv.nvmlReturn) in _FIELD_ABSENT:
                d.reading.unsupported.add(column)
        elif column.startswith("nvlink"):
            d.counters[column] = value * scale
        else:
            d.reading.values[column] = value * scale


def _read_power(d: DeviceReader, nv: ModuleType) -> None:
    if "power_w" not in d.reading.values:
        # nvmlDeviceGetPowerUsage (mW) is a 1 s average on Ampere (except GA100) and newer, and an
        # instantaneous reading on GA100 and older (NVML API reference, nvmlDeviceGetPowerUsage).
        power = d.get([], [nv.nvmlDeviceGetPowerUsage])
        if power is not None:
            d.put("power_w", power, 1e-3)
            d.reading.unsupported.discard("power_w")
    d.put("power_limit_w", d.get(["power_limit_w"], [nv.nvmlDeviceGetEnforcedPowerLimit]), 1e-3)
    d.put("energy_j", d.get(["energy_j"], [nv.nvmlDeviceGetTotalEnergyConsumption]), 1e-3)  # mJ


def _read_memory_and_load(d: DeviceReader, nv: ModuleType) -> None:
    # v2 reports `used` without the driver's reserved memory, as nvidia-smi does; v1 includes it.
    mem_fns = [nv.nvmlDeviceGetMemoryInfo]
    if hasattr(nv, "nvmlMemory_v2"):
        mem_fns.insert(0, partial(nv.nvmlDeviceGetMemoryInfo, version=nv.nvmlMemory_v2))
    mem = d.get(["memory_used_bytes", "memory_total_bytes"], mem_fns)
    if mem is not None:
        d.put("memory_used_bytes", mem.used)
        d.put("memory_total_bytes", mem.total)
    util = d.get(["utilization_gpu", "utilization_memory"], [nv.nvmlDeviceGetUtilizationRates])
    if util is not None:
        d.put("utilization_gpu", util.gpu)
        d.put("utilization_memory", util.memory)
    d.put("sm_clock_mhz", d.get(["sm_clock_mhz"], [nv.nvmlDeviceGetClockInfo], nv.NVML_CLOCK_SM))
    d.put("memory_clock_mhz", d.get(["memory_clock_mhz"], [nv.nvmlDeviceGetClockInfo], nv.NVML_CLOCK_MEM))
    d.put("fan_pct", d.get(["fan_pct"], [nv.nvmlDeviceGetFanSpeed]))
    # Renamed ThrottleReasons -> EventReasons between the R525 and R550 NVML references; same bitmask.
    names = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")
    throttle = d.get(["throttle_reasons"], _legacy(nv, *names))
    d.reading.throttle_reasons = int(throttle) if throttle is not None else 0


def _read_links(d: DeviceReader, nv: ModuleType, rates: CounterRates, now: float, pcie: bool) -> None:
    for column, total in d.counters.items():
        d.reading.values[column] = rates.rate(d.index, column, total, now)
    for direction in ("rx", "tx"):
        if pcie:
            # nvmlDeviceGetPcieThroughput samples a byte counter over 20 ms and answers in "KB/s";
            # read as KiB/s like NVML's other KiB counters. Each call blocks ~20 ms.
            counter = nv.NVML_PCIE_UTIL_RX_BYTES if direction == "rx" else nv.NVML_PCIE_UTIL_TX_BYTES
            column = f"pcie_{direction}_bytes_per_s"
            d.put(column, d.get([column], [nv.nvmlDeviceGetPcieThroughput], counter), KIB)
    d.put("pcie_replay_total", d.get(["pcie_replay_total"], [nv.nvmlDeviceGetPcieReplayCounter]))


def _read_health(d: DeviceReader, nv: ModuleType) -> None:
    for kind, column in ((nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, "ecc_corrected_total"),
                         (nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, "ecc_uncorrected_total")):
        d.put(column, d.get([column], [nv.nvmlDeviceGetTotalEccErrors], kind, nv.NVML_VOLATILE_ECC))
    rows = d.get(["remapped_rows_pending", "remapped_rows_failure"], _legacy(nv, "nvmlDeviceGetRemappedRows"))
    if rows is not None:  # (correctable, uncorrectable, pending, failure occurred)
        d.put("remapped_rows_pending", rows[2])
        d.put("remapped_rows_failure", rows[3])
    d.put("retired_pages_pending", d.get(["retired_pages_pending"],
                                         _legacy(nv, "nvmlDeviceGetRetiredPagesPendingStatus")))
    procs = d.get([], [nv.nvmlDeviceGetComputeRunningProcesses])
    for p in procs or ():
        used = getattr(p, "usedGpuMemory", None)  # None where the driver cannot tell (WDDM, some MIG setups)
        d.reading.processes.append((int(p.pid), NAN if used is None else float(used)))


def assemble_frame(devices: tuple[DeviceInfo, ...], readings: Sequence[NvmlReading], last_ok: Sequence[float],
                   events: Sequence[DeviceEvent], clock: Clock) -> Frame:
    """The Frame for one sample; `last_ok[i]` is device i's last good read (monotonic s, NaN if none)."""
    mono = clock.monotonic()
    kw = Frame.blank(devices, clock.time(), mono)
    unsupported: set[tuple[str, int]] = set()
    rows: list[tuple[int, int, float]] = []
    for i, r in enumerate(readings):
        for name, value in r.values.items():
            cast(NDArray[np.float64], kw[name])[i] = value
        cast(NDArray[np.uint64], kw["throttle_reasons"])[i] = r.throttle_reasons
        cast(NDArray[np.bool_], kw["lost"])[i] = r.lost
        cast(NDArray[np.float64], kw["sample_age_s"])[i] = mono - last_ok[i]
        unsupported.update((name, i) for name in r.unsupported)
        rows.extend((i, pid, used) for pid, used in r.processes)
    processes = ProcessRows(np.array([d for d, _, _ in rows], np.int32),
                            np.array([p for _, p, _ in rows], np.int64),
                            np.array([u for _, _, u in rows], np.float64))
    return Frame(**kw, processes=processes, events=tuple(events),  # type: ignore[arg-type]
                 unsupported=frozenset(unsupported))
