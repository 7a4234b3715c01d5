"""Telemetry contracts: DeviceInfo, Frame, Backend, Clock and Event, plus the NVML backend."""

from coldaisle.telemetry.backend import Backend
from coldaisle.telemetry.clock import Clock, RealClock, SimClock
from coldaisle.telemetry.events import Event, Severity
from coldaisle.telemetry.frame import DeviceEvent, DeviceInfo, Frame, ProcessRows, ThrottleReason

__all__ = [
    "Backend",
    "Clock",
    "DeviceEvent",
    "DeviceInfo",
    "Event",
    "Frame",
    "ProcessRows",
    "RealClock",
    "Severity",
    "SimClock",
    "ThrottleReason",
]
