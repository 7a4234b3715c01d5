"""NvmlBackend: real GPUs through NVML (nvidia-ml-py), every driver call through one choke point.

`_call(device, fn, *args)` runs each NVML call on that device's worker thread under a
deadline (telemetry.deadline) and turns the answer into a value or a typed absence:
NotSupported -> NaN plus an `unsupported` entry, GpuIsLost/Unknown -> the `lost` flag,
an overrun -> a `probe_hung` DeviceEvent. Nothing raises out of `sample()`.
"""

from __future__ import annotations

import ctypes
import logging
import math
import socket
from functools import partial
from types import ModuleType, TracebackType
from typing import Any, cast

from coldaisle.errors import BackendUnavailable, PowerLimitError
from coldaisle.telemetry.clock import Clock, RealClock
from coldaisle.telemetry.deadline import CallResult, DeadlineRunner, Reason
from coldaisle.telemetry.frame import DeviceEvent, DeviceInfo, Frame
from coldaisle.telemetry.nvml_read import CounterRates, NvmlReading, assemble_frame, read_device

try:
    import pynvml
except ImportError:  # the optional [nvml] extra is not installed
    pynvml = None

log = logging.getLogger(__name__)

SIM_HINT = "Run on a host with an NVIDIA GPU and driver, or pass `--backend sim` to use the simulator."
_SYSTEM = -1  # runner key for calls about no single device: init, the event set, shutdown
_MAX_EVENTS_PER_SAMPLE = 64


def _nvml_classes(*names: str) -> tuple[type[BaseException], ...]:
    """The exception classes among `names` that this pynvml defines (older bindings lack some)."""
    return tuple(getattr(pynvml, n) for n in names if hasattr(pynvml, n))


# A driver too old to have a function answers FunctionNotFound: that is "not supported" too.
_NOT_SUPPORTED = _nvml_classes(
    "NVMLError_NotSupported", "NVMLError_FunctionNotFound", "NVMLLibraryMismatchError")
_LOST = _nvml_classes("NVMLError_GpuIsLost", "NVMLError_Unknown", "NVMLError_ResetRequired")


def classify_nvml_error(exc: BaseException) -> Reason:
    """Map an NVML exception to a typed absence so that callers never branch on exception types."""
    if isinstance(exc, _NOT_SUPPORTED):
        return Reason.NOT_SUPPORTED
    return Reason.GPU_LOST if isinstance(exc, _LOST) else Reason.ERROR


def _wait_event(nv: ModuleType, event_set: Any) -> Any:
    """One pending event, or None when there is none (NVML answers Timeout after 0 ms)."""
    try:
        return nv.nvmlEventSetWait(event_set, 0)
    except nv.NVMLError_Timeout:
        return None


def _address(handle: Any) -> int:
    """The pointer value of an nvmlDevice_t, to match event data back to a device index."""
    return int(ctypes.cast(handle, ctypes.c_void_p).value or 0)


def _watts(milliwatts: Any) -> float:
    return float(milliwatts) / 1000.0 if milliwatts is not None else math.nan


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlBackend:
    """The Backend over this host's NVIDIA GPUs; a missing driver is a clear error at construction."""

    def __init__(self, *, deadline_s: float = 2.0, init_deadline_s: float = 30.0, clock: Clock | None = None,
                 node: str | None = None, pcie_throughput: bool = True) -> None:
        """`pcie_throughput=False` skips the two ~20 ms PCIe throughput probes per device and sample."""
        self._nv = _require_pynvml()
        self._clock = clock or RealClock()
        self._runner = DeadlineRunner(deadline_s, classify_nvml_error, self._clock, name="coldaisle-nvml")
        self._pcie = pcie_throughput
        self._rates, self._warned = CounterRates(), set[str]()
        self._last_ok: dict[int, float] = {}
        self._hung: set[int] = set()
        self._closed = False
        try:
            self._start(init_deadline_s, node or socket.gethostname())
        except BaseException:
            self._runner.close()
            raise
        self._events = self._register_xid_events()

    def devices(self) -> tuple[DeviceInfo, ...]:
        """Static facts of every GPU NVML enumerated, in index order."""
        return self._devices

    def sample(self) -> Frame:
        """One reading of every GPU; lost, unsupported and hung probes are values, never exceptions."""
        readings = [self._read(i, h) for i, h in enumerate(self._handles)]
        events = self._hang_events(readings) + self._poll_xid()
        last_ok = [self._last_ok.get(i, math.nan) for i in range(len(readings))]
        return assemble_frame(self._devices, readings, last_ok, events, self._clock)

    def set_power_limit(self, device: int, watts: float) -> None:
        """Set GPU `device`'s power limit after checking the driver's min/max constraints."""
        if not 0 <= device < len(self._devices):
            raise PowerLimitError(f"There is no GPU {device} on this host ({len(self._devices)} GPUs).")
        info, handle = self._devices[device], self._handles[device]
        low, high = info.power_min_limit_w, info.power_max_limit_w
        if not math.isfinite(watts):
            raise PowerLimitError(f"A power limit must be a finite number of watts, not {watts}.")
        if watts < low or watts > high:
            raise PowerLimitError(
                f"{watts:g} W is outside GPU {device}'s power limit range {low:g}-{high:g} W.",
                hint="Pick a value inside the range `nvidia-smi -q -d POWER` reports.")
        if handle is None:
            raise PowerLimitError(f"GPU {device} was lost before this backend started.")
        result = self._call(device, self._nv.nvmlDeviceSetPowerManagementLimit, handle, round(watts * 1000))
        if not result.ok:
            raise self._power_limit_error(device, watts, result)

    def close(self) -> None:
        """Free the event set, shut NVML down and stop the worker threads (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._events is not None:
            self._call(_SYSTEM, self._nv.nvmlEventSetFree, self._events)
        self._call(_SYSTEM, self._nv.nvmlShutdown)
        self._runner.close()

    def __enter__(self) -> NvmlBackend:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, device: int, fn: Any, *args: Any) -> CallResult:
        """The one path to the driver: `fn(*args)` on `device`'s worker, under the deadline, as a CallResult."""
        return self._runner.call(device, fn, *args)

    def _start(self, init_deadline_s: float, node: str) -> None:
        nv = self._nv
        started = self._runner.call(_SYSTEM, nv.nvmlInit, deadline_s=init_deadline_s)
        if not started.ok:
            raise _unavailable(nv, started, init_deadline_s)
        count = self._call(_SYSTEM, nv.nvmlDeviceGetCount)
        if not count.ok or int(count.value) == 0:
            self._call(_SYSTEM, nv.nvmlShutdown)
            if not count.ok:
                raise _unavailable(nv, count, init_deadline_s)
            raise BackendUnavailable("NVML is loaded but found no NVIDIA GPU on this host.", hint=SIM_HINT)
        handles = [self._call(i, nv.nvmlDeviceGetHandleByIndex, i) for i in range(int(count.value))]
        self._handles: list[Any] = [h.value if h.ok else None for h in handles]
        self._devices = tuple(self._device_info(i, h, node) for i, h in enumerate(self._handles))
        self._by_address = {_address(h): i for i, h in enumerate(self._handles) if h is not None}

    def _device_info(self, index: int, handle: Any, node: str) -> DeviceInfo:
        nv = self._nv

        def get(fn: Any, *args: Any) -> Any:
            result = self._call(index, fn, handle, *args) if handle is not None else None
            return result.value if result is not None and result.ok else None

        memory = get(nv.nvmlDeviceGetMemoryInfo)
        low, high = get(nv.nvmlDeviceGetPowerManagementLimitConstraints) or (None, None)
        pci = get(nv.nvmlDeviceGetPciInfo)
        slowdown = get(nv.nvmlDeviceGetTemperatureThreshold, nv.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)
        shutdown = get(nv.nvmlDeviceGetTemperatureThreshold, nv.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN)
        persistence = get(nv.nvmlDeviceGetPersistenceMode)  # NVML_FEATURE_ENABLED = 1
        return DeviceInfo(
            node=node, index=index, uuid=_text(get(nv.nvmlDeviceGetUUID) or ""),
            name=_text(get(nv.nvmlDeviceGetName) or "unknown"),
            memory_total_bytes=int(memory.total) if memory is not None else 0,
            power_default_limit_w=_watts(get(nv.nvmlDeviceGetPowerManagementDefaultLimit)),
            power_max_limit_w=_watts(high), power_min_limit_w=_watts(low),
            slowdown_temperature_c=float(slowdown) if slowdown is not None else math.nan,
            shutdown_temperature_c=float(shutdown) if shutdown is not None else math.nan,
            pci_bus_id=_text(pci.busId) if pci is not None else "",
            persistence_mode=None if persistence is None else int(persistence) == 1,
        )

    def _register_xid_events(self) -> Any:
        """An event set for Xid critical errors on every device that supports it, or None."""
        nv, xid = self._nv, self._nv.nvmlEventTypeXidCriticalError
        created = self._call(_SYSTEM, nv.nvmlEventSetCreate)
        if not created.ok:
            log.info("NVML event sets are unavailable (%s); Xid events will not be reported", created.message)
            return None
        registered = 0
        for i, handle in enumerate(self._handles):
            if handle is None:
                continue
            supported = self._call(i, nv.nvmlDeviceGetSupportedEventTypes, handle)
            if supported.ok and int(supported.value) & xid:
                registered += self._call(i, nv.nvmlDeviceRegisterEvents, handle, xid, created.value).ok
        if registered:
            return created.value
        self._call(_SYSTEM, nv.nvmlEventSetFree, created.value)
        return None

    def _read(self, index: int, handle: Any) -> NvmlReading:
        if handle is None:
            return NvmlReading(lost=True)
        try:
            reading = read_device(
                self._nv, partial(self._call, index), handle, index=index, rates=self._rates,
                now=self._clock.monotonic(), pcie_throughput=self._pcie, warned=self._warned)
        except Exception:  # a decoding bug must not take the daemon down: this device reads as NaN
            log.exception("GPU %d: unexpected failure while reading NVML", index)
            return NvmlReading()
        if reading.lost:
            reading.values.clear()
            reading.processes.clear()
        elif reading.any_ok and reading.hung is None:
            self._last_ok[index] = self._clock.monotonic()
        return reading

    def _hang_events(self, readings: list[NvmlReading]) -> list[DeviceEvent]:
        """A `probe_hung` event when a device's probe first overruns; none while it stays stuck."""
        events, now = [], self._clock.time()
        for i, reading in enumerate(readings):
            if reading.hung is None:
                self._hung.discard(i)
            elif i not in self._hung:
                self._hung.add(i)
                events.append(DeviceEvent(device=i, kind="probe_hung", time=now, detail=reading.hung.message))
        return events

    def _poll_xid(self) -> list[DeviceEvent]:
        events: list[DeviceEvent] = []
        xid_type = self._nv.nvmlEventTypeXidCriticalError
        while self._events is not None and len(events) < _MAX_EVENTS_PER_SAMPLE:
            result = self._call(_SYSTEM, _wait_event, self._nv, self._events)
            if not result.ok:
                log.debug("polling NVML events failed: %s", result.message)
            if not result.ok or result.value is None:
                break
            data = result.value
            if int(data.eventType) & xid_type:
                events.extend(self._xid_event(data))
        return events

    def _xid_event(self, data: Any) -> list[DeviceEvent]:
        """The Xid as a DeviceEvent for the device it names (matched by handle, else by asking NVML)."""
        device = self._by_address.get(_address(data.device))
        if device is None:
            asked = self._call(_SYSTEM, self._nv.nvmlDeviceGetIndex, data.device)
            device = int(asked.value) if asked.ok else None
        if device is None or not 0 <= device < len(self._devices):
            log.warning("NVML reported Xid %d on a device it cannot name", int(data.eventData))
            return []
        return [DeviceEvent(device=device, kind="xid", time=self._clock.time(), xid=int(data.eventData),
                            detail="nvmlEventTypeXidCriticalError")]

    def _power_limit_error(self, device: int, watts: float, result: CallResult) -> PowerLimitError:
        if isinstance(result.error, self._nv.NVMLError_NoPermission):
            return PowerLimitError(f"Setting GPU {device}'s power limit needs root privileges.",
                                   hint="Run as root (for example with sudo), as nvidia-smi -pl does.")
        messages = {
            Reason.NOT_SUPPORTED: f"GPU {device} does not support setting a power limit.",
            Reason.GPU_LOST: f"GPU {device} is lost (fell off the bus), so its power limit cannot be set.",
            Reason.HUNG: f"GPU {device} did not answer in time ({result.message}).",
        }
        fallback = f"NVML refused to set GPU {device}'s power limit to {watts:g} W ({result.message})."
        return PowerLimitError(messages.get(cast(Reason, result.reason), fallback))


def _require_pynvml() -> ModuleType:
    if pynvml is None:
        raise BackendUnavailable(
            "The nvidia-ml-py package (pynvml) is not installed.",
            hint="Install it with `pip install 'coldaisle[nvml]'`, or pass `--backend sim`.")
    return pynvml


def _unavailable(nv: ModuleType, result: CallResult, deadline_s: float) -> BackendUnavailable:
    """The one-sentence reason NVML could not start, with the simulator as the way forward."""
    if isinstance(result.error, nv.NVMLError_LibraryNotFound):
        message = "NVIDIA's NVML library (libnvidia-ml.so.1) is not installed on this host."
    elif isinstance(result.error, nv.NVMLError_DriverNotLoaded):
        message = "The NVIDIA kernel driver is not loaded on this host."
    elif isinstance(result.error, nv.NVMLError_NoPermission):
        message = "This user may not open the NVIDIA devices (/dev/nvidia*)."
    elif result.reason is Reason.HUNG:
        message = f"NVML did not finish initialising within {deadline_s:g} s."
    else:
        message = f"NVML could not start ({result.message})."
    return BackendUnavailable(message, hint=SIM_HINT)
