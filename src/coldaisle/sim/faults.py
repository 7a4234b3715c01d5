"""Applies timeline entries to the twin: each fault kind is one small function."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from coldaisle.sim.events import EventClass as E
from coldaisle.sim.resolve import TimedFault
from coldaisle.telemetry.events import Severity

if TYPE_CHECKING:
    from coldaisle.sim.twin import Twin


def apply(twin: Twin, tf: TimedFault, t: float) -> None:
    """Apply one timeline entry at time t (seconds since start)."""
    HANDLERS[tf.fault.fault](twin, tf, t)


def _pcie_jitter(twin: Twin, tf: TimedFault, t: float) -> None:
    local = int(twin.plan.layout.gpu_local[tf.gpu])
    host = twin.plan.layout.node_names[tf.node]
    for k in range(3):
        twin.emit(t + 0.2 * k, host, "kernel", E.PCIE_AER, Severity.WARNING, pci="0000:00:01.1",
                  device_pci=twin.pci(local), gpu=local, kind="Corrected",
                  error="Physical Layer" if k % 2 == 0 else "Data Link Layer", status="00000001")
    twin.state.pcie_replay[tf.gpu] += 137
    twin.state.touch("pcie_replay")
    twin.truth(t, host, "pcie_jitter", gpu=local)
    twin.workload.stall_rank(tf.gpu, t)


def _deadlock(twin: Twin, tf: TimedFault, t: float) -> None:
    twin.workload.stall_rank(tf.gpu, t)


def _kv(twin: Twin, tf: TimedFault, t: float) -> None:
    twin.kv.start(tf.gpu, tf.fault, t)  # type: ignore[arg-type]


def _gpu_lost(twin: Twin, tf: TimedFault, t: float) -> None:
    twin.lose_gpu(tf.gpu, t, xid=tf.fault.xid)  # type: ignore[union-attr]


def _fan(twin: Twin, tf: TimedFault, t: float) -> None:
    s = twin.state
    if s.fan_failed[tf.gpu]:
        return
    rpm = float(s.fan[tf.gpu]) * twin.plan.card.physics.fan_max_rpm
    s.fan_failed[tf.gpu] = True
    s.any_fan_failed = True
    local = int(twin.plan.layout.gpu_local[tf.gpu])
    twin.emit(t, twin.plan.layout.node_names[tf.node], "bmc", E.FAN_FAILURE, Severity.ERROR,
              fan=f"FAN{local + 1}", rpm_before=round(rpm), gpu=local)


def _cooling(twin: Twin, tf: TimedFault, t: float) -> None:
    row = tf.fault.row - 1  # type: ignore[union-attr]
    before = float(twin.state.capacity_w[row])
    twin.state.capacity_w[row] = tf.fault.remaining  # type: ignore[union-attr]
    twin.emit(t, "facility", "facility", E.COOLING_FAILURE, Severity.CRITICAL, row=row + 1,
              capacity_kw_before=before / 1e3, capacity_kw_after=tf.fault.remaining / 1e3)  # type: ignore


def _portable(twin: Twin, tf: TimedFault, t: float) -> None:
    f: Any = tf.fault
    twin.state.capacity_w[f.row - 1] += f.capacity
    twin.truth(t, "facility", "portable_cooling", row=f.row, capacity_kw=f.capacity / 1e3)


def _bootstrap(twin: Twin, tf: TimedFault, t: float) -> None:
    lay, wl = twin.plan.layout, twin.workload
    host, peer = lay.node_names[tf.node], lay.node_names[tf.peer]
    g = lay.gpu(tf.node, 0)
    pid = int(wl.pid[g]) or 12849
    twin.emit(t, host, "nccl", E.NCCL_BOOTSTRAP_TIMEOUT, Severity.ERROR, pid=pid, tid=pid + 101, gpu=0,
              peer=peer, port=tf.fault.port, job=_job_name(twin, g))  # type: ignore[union-attr]
    gi = int(wl.group_of[g])
    if gi >= 0:
        for gpu in wl.groups[gi].gpus[wl.group_of[wl.groups[gi].gpus] == gi]:
            wl.exit(int(gpu), t, "NCCL bootstrap failed")


def _job_name(twin: Twin, g: int) -> str:
    gi = int(twin.workload.group_of[g])
    return twin.plan.jobs[twin.workload.groups[gi].job].spec.name if gi >= 0 else ""


def _epo(twin: Twin, tf: TimedFault, t: float) -> None:
    f: Any = tf.fault
    rack = f.rack - 1
    gpus = np.flatnonzero(twin.plan.layout.gpu_rack == rack)
    hottest = float(twin.state.temp_c[gpus].max())
    if f.if_any_gpu_above is not None and hottest <= f.if_any_gpu_above:
        twin.truth(t, "facility", "emergency_power_off_not_needed", rack=f.rack, hottest_c=round(hottest, 1))
        return
    twin.emit(t, "facility", "facility", E.EMERGENCY_POWER_OFF, Severity.CRITICAL, rack=f.rack, by=f.by,
              reason=f"hottest GPU {hottest:.0f} C")
    for node in np.flatnonzero(twin.plan.layout.node_rack == rack):
        twin.power_off_node(int(node), t)


def _cancel(twin: Twin, tf: TimedFault, t: float) -> None:
    f: Any = tf.fault
    j = [jp.spec.name for jp in twin.plan.jobs].index(f.job)
    if twin.workload.job_status[j] != "running":
        return
    twin.truth(t, "slurm", "job_cancelled", job=f.job, by=f.by)
    twin.workload.cancelled.add(j)
    for g in twin.plan.jobs[j].gpus:
        if twin.workload.pid[g]:
            twin.workload.signal(int(g), "SIGTERM", t)


HANDLERS: dict[str, Callable[[Twin, TimedFault, float], None]] = {
    "pcie_jitter": _pcie_jitter,
    "collective_deadlock": _deadlock,
    "kv_growth": _kv,
    "gpu_lost": _gpu_lost,
    "fan_failure": _fan,
    "cooling_failure": _cooling,
    "portable_cooling": _portable,
    "nccl_bootstrap_timeout": _bootstrap,
    "emergency_power_off": _epo,
    "cancel_job": _cancel,
}
