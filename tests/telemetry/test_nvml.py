"""NvmlBackend against the real driver: its error path on GPU-less hosts, its readings on GPU hosts.

Nothing here fakes NVML. Tests marked `gpu` need a real NVIDIA GPU; they skip with the
backend's own reason when there is none, unless COLDAISLE_REQUIRE_GPU=1 (set by
scripts/validate-on-gpu.sh) turns that into a failure.
"""

from __future__ import annotations

import ctypes
import math
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pynvml
import pytest

from coldaisle.errors import BackendUnavailable, PowerLimitError
from coldaisle.telemetry.backend import Backend
from coldaisle.telemetry.clock import SimClock
from coldaisle.telemetry.deadline import DeadlineRunner, Reason
from coldaisle.telemetry.frame import METRIC_NAMES, DeviceEvent, DeviceInfo
from coldaisle.telemetry.nvml import NvmlBackend, classify_nvml_error
from coldaisle.telemetry.nvml_read import FIELDS, CounterRates, NvmlReading, assemble_frame, field_value


def _nvml_loadable() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


no_nvml_here = pytest.mark.skipif(_nvml_loadable(), reason="this host has NVML; the gpu tests cover it")


@no_nvml_here
def test_missing_library_is_one_clear_sentence_with_a_hint() -> None:
    with pytest.raises(BackendUnavailable) as caught:
        NvmlBackend()
    err = caught.value
    assert err.message == "NVIDIA's NVML library (libnvidia-ml.so.1) is not installed on this host."
    assert err.message.count(". ") == 0 and err.message.endswith(".")
    assert "--backend sim" in err.hint
    assert err.exit_code == 3


@no_nvml_here
def test_failed_construction_leaves_no_threads() -> None:
    with pytest.raises(BackendUnavailable):
        NvmlBackend(init_deadline_s=1.0)
    assert not [t for t in threading.enumerate() if t.name.startswith("coldaisle-nvml")]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (pynvml.NVMLError_NotSupported, Reason.NOT_SUPPORTED),
        (pynvml.NVMLError_FunctionNotFound, Reason.NOT_SUPPORTED),
        (pynvml.NVMLError_GpuIsLost, Reason.GPU_LOST),
        (pynvml.NVMLError_Unknown, Reason.GPU_LOST),
        (pynvml.NVMLError_NoPermission, Reason.ERROR),
        (pynvml.NVMLError_InvalidArgument, Reason.ERROR),
    ],
)
def test_nvml_errors_become_typed_reasons(error: type[pynvml.NVMLError], reason: Reason) -> None:
    assert classify_nvml_error(error()) is reason


def test_non_nvml_errors_are_plain_errors() -> None:
    assert classify_nvml_error(ValueError("bad")) is Reason.ERROR


def test_a_lost_gpu_raised_in_a_worker_comes_back_as_a_value() -> None:
    def lost() -> None:
        raise pynvml.NVMLError_GpuIsLost()

    runner = DeadlineRunner(0.5, classify=classify_nvml_error)
    try:
        result = runner.call(0, lost)
    finally:
        runner.close()
    assert result.reason is Reason.GPU_LOST
    assert "GPU is lost" in result.message


def test_field_ids_match_the_bindings() -> None:
    ids = {column: fid for column, fid, _, _ in FIELDS}
    assert ids["memory_temperature_c"] == pynvml.NVML_FI_DEV_MEMORY_TEMP
    assert ids["power_w"] == pynvml.NVML_FI_DEV_POWER_AVERAGE
    assert ids["power_instant_w"] == pynvml.NVML_FI_DEV_POWER_INSTANT
    assert ids["nvlink_tx_bytes_per_s"] == pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX
    assert ids["nvlink_rx_bytes_per_s"] == pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX
    assert {column for column, *_ in FIELDS} <= set(METRIC_NAMES)


def test_field_values_decode_by_value_type() -> None:
    values = (pynvml.c_nvmlFieldValue_t * 4)()
    values[0].valueType, values[0].value.uiVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, 350_000
    values[1].valueType, values[1].value.ullVal = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, 2**40
    values[2].valueType, values[2].value.dVal = pynvml.NVML_VALUE_TYPE_DOUBLE, 41.5
    values[3].nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
    assert [field_value(v) for v in values] == [350_000.0, float(2**40), 41.5, None]


def test_counter_rates_need_two_reads_and_survive_resets() -> None:
    rates = CounterRates()
    assert math.isnan(rates.rate(0, "nvlink", 1000.0, now=10.0))
    assert rates.rate(0, "nvlink", 3000.0, now=12.0) == 1000.0
    assert math.isnan(rates.rate(0, "nvlink", 10.0, now=13.0)), "a counter that went down was reset"
    assert math.isnan(rates.rate(1, "nvlink", 5.0, now=13.0)), "devices are tracked apart"


def _info(index: int) -> DeviceInfo:
    return DeviceInfo("node-gpu-88", index, f"GPU-{index}", "NVIDIA H100 PCIe", 80 * 2**30,
                      350.0, 350.0, 200.0, 87.0, 92.0)


def test_assemble_frame_keeps_absences_typed() -> None:
    clock = SimClock(start_wall=1_700_000_000.0)
    clock.sleep(10.0)
    ok = NvmlReading(values={"temperature_c": 61.0, "power_w": 301.5}, unsupported={"fan_pct"},
                 throttle_reasons=0x4, processes=[(4242, float(2**30)), (4243, math.nan)], any_ok=True)
    lost = NvmlReading(lost=True)
    hung = DeviceEvent(device=1, kind="probe_hung", time=clock.time())
    frame = assemble_frame((_info(0), _info(1)), [ok, lost], [7.5, math.nan], [hung], clock)
    assert frame.wall_time == 1_700_000_010.0 and frame.monotonic == 10.0
    assert frame.temperature_c[0] == 61.0 and math.isnan(frame.temperature_c[1])
    assert math.isnan(frame.fan_pct[0]) and frame.unsupported == frozenset({("fan_pct", 0)})
    assert frame.throttle_reasons.tolist() == [4, 0]
    assert frame.lost.tolist() == [False, True]
    assert frame.sample_age_s[0] == 2.5 and math.isnan(frame.sample_age_s[1])
    assert frame.processes.device.tolist() == [0, 0] and frame.processes.pid.tolist() == [4242, 4243]
    assert math.isnan(frame.processes.used_memory_bytes[1])
    assert frame.events == (hung,)


# --- on a real GPU -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend() -> Iterator[NvmlBackend]:
    b = NvmlBackend()  # tests/conftest.py skips `gpu` tests where no GPU answers
    yield b
    b.close()


@pytest.mark.gpu
def test_devices_describe_real_gpus(backend: NvmlBackend) -> None:
    assert isinstance(backend, Backend)
    devices = backend.devices()
    assert devices
    for i, d in enumerate(devices):
        assert d.index == i
        assert d.node == socket.gethostname()
        assert d.uuid.startswith(("GPU-", "MIG-"))
        assert d.name and d.pci_bus_id
        assert d.memory_total_bytes > 0
        assert 0 < d.slowdown_temperature_c <= d.shutdown_temperature_c < 150


@pytest.mark.gpu
def test_sample_reads_finite_temperature_and_power(backend: NvmlBackend) -> None:
    frame = backend.sample()
    assert len(frame) == len(backend.devices())
    ok = ~frame.lost
    assert ok.any()
    assert np.all(np.isfinite(frame.temperature_c[ok]))
    assert np.all((frame.temperature_c[ok] > 0) & (frame.temperature_c[ok] < 120))
    assert np.all(frame.power_w[ok] > 0)
    assert np.all(frame.memory_used_bytes[ok] <= frame.memory_total_bytes[ok])
    assert np.all(frame.sample_age_s[ok] < 5)


@pytest.mark.gpu
def test_power_limit_lies_within_constraints(backend: NvmlBackend) -> None:
    frame = backend.sample()
    for i, d in enumerate(backend.devices()):
        if frame.lost[i] or ("power_limit_w", i) in frame.unsupported:
            continue
        assert d.power_min_limit_w - 1 <= frame.power_limit_w[i] <= d.power_max_limit_w + 1
        assert d.power_min_limit_w <= d.power_default_limit_w <= d.power_max_limit_w


@pytest.mark.gpu
def test_energy_counter_never_goes_backwards(backend: NvmlBackend) -> None:
    first, second = backend.sample(), backend.sample()
    both = np.isfinite(first.energy_j) & np.isfinite(second.energy_j)
    assert both.any(), "no GPU reports total energy (Volta and newer all do): the counter is not being read"
    assert np.all(second.energy_j[both] >= first.energy_j[both])
    for d in np.flatnonzero(~both).tolist():  # a NaN is only ever "the driver says not supported"
        assert ("energy_j", d) in second.unsupported


@pytest.mark.gpu
def test_unsupported_entries_name_frame_columns(backend: NvmlBackend) -> None:
    frame = backend.sample()
    for name, device in frame.unsupported:
        assert name in (*METRIC_NAMES, "throttle_reasons")
        assert 0 <= device < len(frame)
        if name in METRIC_NAMES:
            assert math.isnan(frame.column(name)[device])


@pytest.mark.gpu
def test_out_of_range_power_limit_is_refused_before_the_driver(backend: NvmlBackend) -> None:
    top = backend.devices()[0].power_max_limit_w
    with pytest.raises(PowerLimitError, match="outside"):
        backend.set_power_limit(0, top + 1000)
