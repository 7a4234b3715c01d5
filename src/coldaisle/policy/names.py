"""What a condition may name: every column, its level (per device, process, node or job) and its meaning."""

from __future__ import annotations

from coldaisle.telemetry.frame import METRICS

#: per-device columns: every Frame metric plus these
DEVICE_EXTRA = {
    "lost": "1 when the GPU is lost (fell off the bus, powered off, probe failing), else 0",
    "thermal_throttled": "1 while thermal slowdown (software or hardware) is active, else 0",
    "power_capped": "1 while the power limit holds the clocks down, else 0",
    "slowdown_c": "the GPU's slowdown temperature (nvidia-smi: GPU Slowdown Temp)",
    "shutdown_c": "the GPU's shutdown temperature",
    "power_default_limit_w": "the default power limit",
    "power_min_limit_w": "the lowest settable power limit",
    "power_max_limit_w": "the highest settable power limit",
    "xid": "the last Xid code reported for the GPU in the last 5 minutes (NaN if none)",
}
DEVICE = {m.name: m.help for m in METRICS} | DEVICE_EXTRA

PROCESS = {
    "process_memory_bytes": "device memory used by the process",
    "process_power_w": "the device's power shared among its processes by memory used (NVML has no per-process power)",
    "process_d_state": "1 when the process is in uninterruptible sleep (D state), else 0",
}

NODE = {
    "psi_cpu_some": "share of time some task waited for CPU (pressure stall, avg10, 0..1)",
    "psi_memory_some": "share of time some task waited for memory (avg10, 0..1)",
    "psi_memory_full": "share of time all tasks waited for memory (avg10, 0..1)",
    "psi_io_some": "share of time some task waited for IO (avg10, 0..1)",
    "psi_io_full": "share of time all tasks waited for IO (avg10, 0..1)",
    "swap_in_pages_per_s": "pages swapped in per second",
    "interrupts_per_s": "hardware interrupts per second",
    "d_state_processes": "processes in uninterruptible sleep (D state)",
    "inlet_c": "the node's inlet (cold aisle) air temperature from its BMC",
    "kernel_gpu_errors": "GPU-related kernel log events (fallen off the bus, Xid) in the last 5 minutes",
}

JOB = {
    "job_progress_age_s": "seconds since the job last reported progress (NaN when no progress source)",
    "job_latency_p50_s": "median request latency a serving job reports (`coldaisle.latency()`; worst rank)",
    "job_latency_p99_s": "99th percentile request latency a serving job reports (worst rank; NaN when none)",
    "job_straggler_score": "the slowest rank's straggler score, 0 (keeps up with its peers) to 1 (`coldaisle run`'s "
                           "fail-slow detection; NaN when the job is not supervised or has one rank)",
}

CONSTANTS = {
    "KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30, "TiB": 2.0**40,
    "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "kW": 1e3,
}

WINDOWED = {"rate", "delta", "time_to", "avg_over", "max_over"}
#: What a node's durable fault history counts: `count(kind, window)` or `count(kind, code, window)` in a condition
#: (the agent records them: agent/faultlog.py).
HISTORY = {
    "xid": "an Xid the driver reported (code: the Xid number)",
    "gpu_lost": "a GPU that fell off the bus or stopped answering (code 79)",
    "ecc": "an uncorrectable ECC error count that went up",
    "row_remap": "a row remapping pending or failed",
    "pcie_burst": "more than 50 PCIe replays within a minute on one GPU",
    "drain": "a drain of the node by coldaisle",
    "resume": "a resume of the node by coldaisle (a drain that healed)",
    "power_cycle": "a power cycle through the node's BMC",
    "kill": "a process coldaisle signalled (SIGTERM or SIGKILL)",
}
AGGREGATES = {"max", "min", "mean", "sum", "any", "all", "share", "count"}
