#!/usr/bin/env bash
# Validate the NVML backend on a machine with a real NVIDIA GPU (see docs/hardware.md).
#
#   scripts/validate-on-gpu.sh                 # read-only checks
#   sudo scripts/validate-on-gpu.sh --cap      # also lower one GPU's power limit by 10 % and restore it
#
# Steps: nvidia-smi summary; NvmlBackend devices and 5 samples 1 s apart with every column;
# the power limit (optionally set and restored); `pytest -m gpu tests/telemetry`.
# Installs nothing except `pip install -e '.[nvml]'` when coldaisle or pynvml is not importable.
# Exits non-zero if any step fails; every step runs so one report shows all failures.
set -euo pipefail

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    echo "Options: --cap  set and restore a power limit (root only); --device N  GPU for --cap (default 0)"
}

CAP=0
DEVICE=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cap) CAP=1 ;;
        --device) DEVICE="${2:?--device needs an index}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
FAILED=()

step() {
    local name="$1"
    shift
    echo
    echo "=== ${name} ==="
    if "$@"; then
        echo "--- ${name}: ok"
    else
        echo "--- ${name}: FAILED"
        FAILED+=("${name}")
    fi
}

smi_summary() {
    # set -e does not apply inside a function run as an `if` condition: check each command.
    command -v nvidia-smi >/dev/null || { echo "nvidia-smi is not on PATH"; return 1; }
    nvidia-smi || return 1
    nvidia-smi -q -d POWER,TEMPERATURE,PERFORMANCE,ECC | sed -n '1,120p'
}

ensure_installed() {
    if "${PYTHON}" -c 'import coldaisle, pynvml' 2>/dev/null; then
        echo "coldaisle and pynvml are importable"
    else
        "${PYTHON}" -m pip install -e '.[nvml]'
    fi
}

backend_check() {
    COLDAISLE_CAP="${CAP}" COLDAISLE_CAP_DEVICE="${DEVICE}" "${PYTHON}" - <<'PY'
"""Construct NvmlBackend, print devices and 5 samples, check the power limit (and set it with --cap)."""
import math, os, sys, time

from coldaisle.errors import ColdaisleError
from coldaisle.telemetry.frame import METRIC_NAMES, ThrottleReason
from coldaisle.telemetry.nvml import NvmlBackend

problems: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        problems.append(what)
        print(f"  CHECK FAILED: {what}")


def show(frame, took: float) -> None:
    n = len(frame)
    print(f"  sample() took {took * 1000:.0f} ms for {n} GPU(s)")
    print("  " + f"{'column':26s}" + "".join(f"{'gpu' + str(i):>16s}" for i in range(n)))
    for name in METRIC_NAMES:
        print("  " + f"{name:26s}" + "".join(f"{v:16.6g}" for v in frame.column(name)))
    print("  " + f"{'throttle_reasons':26s}" + "".join(f"{int(v):#16x}" for v in frame.throttle_reasons))
    for i, mask in enumerate(frame.throttle_reasons):
        if int(mask):
            print(f"    gpu{i} throttle: {ThrottleReason(int(mask))!r}")
    print("  " + f"{'lost':26s}" + "".join(f"{bool(v)!s:>16s}" for v in frame.lost))
    print(f"  unsupported: {sorted(frame.unsupported) or 'none'}")
    print(f"  events: {list(frame.events) or 'none'}")
    print(f"  processes: {len(frame.processes)} row(s): "
          f"{list(zip(frame.processes.device.tolist(), frame.processes.pid.tolist()))[:8]}")


def check_frame(frame, previous) -> None:
    for i in range(len(frame)):
        check(not frame.lost[i], f"gpu{i} is not lost")
        check(math.isfinite(frame.temperature_c[i]), f"gpu{i} temperature_c is finite")
        check(math.isfinite(frame.power_w[i]) and frame.power_w[i] > 0, f"gpu{i} power_w is positive")
        check(frame.sample_age_s[i] < 5, f"gpu{i} sample_age_s < 5 s")
        if previous is not None and math.isfinite(previous.energy_j[i]):
            check(frame.energy_j[i] >= previous.energy_j[i], f"gpu{i} energy_j does not go backwards")
    check(not [e for e in frame.events if e.kind == "probe_hung"], "no probe_hung events")


def cap_and_restore(backend: NvmlBackend, device: int) -> None:
    info = backend.devices()[device]
    original = float(backend.sample().power_limit_w[device])
    target = max(info.power_min_limit_w, round(original * 0.9))
    print(f"  gpu{device}: enforced {original:g} W; setting {target:g} W, then restoring")
    try:
        backend.set_power_limit(device, target)
        time.sleep(1)
        now = float(backend.sample().power_limit_w[device])
        print(f"  gpu{device}: enforced after set: {now:g} W")
        check(abs(now - target) <= 1, f"gpu{device} power limit reads back as {target:g} W")
    finally:
        backend.set_power_limit(device, original)
    restored = float(backend.sample().power_limit_w[device])
    print(f"  gpu{device}: enforced after restore: {restored:g} W")
    check(abs(restored - original) <= 1, f"gpu{device} power limit restored to {original:g} W")


def main() -> int:
    with NvmlBackend() as backend:
        devices = backend.devices()
        check(len(devices) > 0, "at least one device")
        for d in devices:
            print(f"  {d}")
        previous = None
        for k in range(5):
            start = time.monotonic()
            frame = backend.sample()
            print(f"\n  sample {k + 1}/5")
            show(frame, time.monotonic() - start)
            check_frame(frame, previous)
            previous = frame
            time.sleep(1)
        device = int(os.environ["COLDAISLE_CAP_DEVICE"])
        d = devices[device]
        limit = float(previous.power_limit_w[device])
        print(f"\n  gpu{device} power limit {limit:g} W (min {d.power_min_limit_w:g}, "
              f"default {d.power_default_limit_w:g}, max {d.power_max_limit_w:g})")
        check(d.power_min_limit_w - 1 <= limit <= d.power_max_limit_w + 1, "power limit within constraints")
        if os.environ["COLDAISLE_CAP"] == "1":
            if os.geteuid() != 0:
                check(False, "--cap needs root (run with sudo)")
            else:
                cap_and_restore(backend, device)
        else:
            print("  (pass --cap as root to set and restore the power limit)")
    print(f"\n  {len(problems)} problem(s)" + (": " + "; ".join(problems) if problems else ""))
    return 1 if problems else 0


try:
    sys.exit(main())
except ColdaisleError as err:
    print(f"  Error: {err.message}\n  Hint: {err.hint}")
    sys.exit(1)
PY
}

gpu_tests() {
    COLDAISLE_REQUIRE_GPU=1 "${PYTHON}" -m pytest -m gpu tests/telemetry -ra
}

step "nvidia-smi summary" smi_summary
step "install (only if needed)" ensure_installed
step "NvmlBackend check" backend_check
step "pytest -m gpu tests/telemetry" gpu_tests

echo
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "FAILED: ${FAILED[*]}"
    exit 1
fi
echo "all steps passed"
