"""The event classes the twin emits, with the fields each carries.

The twin produces `telemetry.Event`s with `raw=""`; `sim.logs` renders each into the
line real software prints (kernel, NCCL, PyTorch, BMC, facility, Slurm) so triage reads
the twin's logs exactly as it reads a real cluster's.
"""

from __future__ import annotations

from enum import StrEnum


class EventClass(StrEnum):
    """Twin event classes. Fields listed are always present unless marked optional."""

    JOB_START = "job_start"  # source slurm. job, job_id, nodes (count), user
    JOB_END = "job_end"  # source slurm. job, job_id, state ("COMPLETED", "CANCELLED", "FAILED", "NODE_FAIL")
    NCCL_INIT = "nccl_init"  # source nccl. benign INFO lines at communicator init. pid, tid, rank, gpu, job
    PCIE_AER = "pcie_aer"  # source kernel. pci (root port), device_pci, gpu, kind ("Corrected"), error
    #                        ("Physical Layer", "Data Link Layer"), status (hex string)
    COLLECTIVE_STALL = "collective_stall"  # source nccl. rank that stopped progressing: pid, tid, rank, gpu, job, op
    NCCL_WATCHDOG_TIMEOUT = "nccl_watchdog_timeout"  # source torch. rank, pid, op, seq, timeout_ms, ran_ms, job
    NCCL_BOOTSTRAP_TIMEOUT = "nccl_bootstrap_timeout"  # source nccl. pid, tid, gpu, peer, port, job
    CUDA_OOM = "cuda_oom"  # source torch. pid, rank, gpu, tried_bytes, total_bytes, free_bytes, allocated_bytes
    HOST_SWAP = "host_swap"  # source kernel. pid, process, spilled_bytes (allocator spills device memory to host)
    HUNG_TASK = "hung_task"  # source kernel. pid, process, seconds (hung_task_timeout_secs, 120)
    OOM_KILL = "oom_kill"  # source kernel. pid, process, score, anon_rss_kb
    XID = "xid"  # source kernel. xid, pci, gpu, optional pid, process, text (NVRM message tail)
    GPU_FELL_OFF_BUS = "gpu_fell_off_bus"  # source kernel. pci, gpu
    KERNEL_PANIC = "kernel_panic"  # source kernel. reason
    THERMAL_SLOWDOWN = "thermal_slowdown"  # source nvml. gpu, temperature_c, slowdown_c
    THERMAL_SHUTDOWN = "thermal_shutdown"  # source nvml. gpu, temperature_c, shutdown_c
    FAN_FAILURE = "fan_failure"  # source bmc. fan (name, e.g. "FAN3"), rpm_before, gpu
    COOLING_FAILURE = "cooling_failure"  # source facility. row, capacity_kw_before, capacity_kw_after
    EMERGENCY_POWER_OFF = "emergency_power_off"  # source facility. rack, by ("sre"), reason
    SIGNAL_SENT = "signal_sent"  # source coldaisle. pid, signal ("SIGTERM"/"SIGKILL"), job, rank
    POWER_CAP = "power_cap"  # source coldaisle. gpu, watts, previous_watts
    NODE_DRAIN = "node_drain"  # source slurm. reason, by
    POWER_CYCLE = "power_cycle"  # source bmc. state ("cycle": power cut by the BMC, "on": back and booted)
    LINK_DOWN = "link_down"  # source kernel. pci (the NIC's), interface
    NCCL_NET_ERROR = "nccl_net_error"  # source nccl. pid, tid, gpu, peer, port, status (12: retry exceeded), job
    NODE_DOWN = "node_down"  # source slurm. reason
    RANK_CRASH = "rank_crash"  # source torch. rank, pid, job, error
