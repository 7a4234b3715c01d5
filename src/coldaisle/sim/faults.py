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


#: Xids after which the GPU keeps an uncorrectable memory error until it is reset (a row remapping pending)
ECC_XIDS = frozenset({48, 94, 95})


def apply(twin: Twin, tf: TimedFault, t: float) -> None:
    """Apply one timeline entry (or drawn failure) at time t (seconds since start); the campaign, if any, is told."""
    HANDLERS[tf.fault.fault](twin, tf, t)
    if twin.campaign is not None:
        twin.campaign.note_fault(tf, t)


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


def _xid(twin: Twin, tf: TimedFault, t: float) -> None:
    s, g, xid = twin.state, tf.gpu, int(tf.fault.xid)  # type: ignore[union-attr]
    if s.lost[g]:
        return
    local, pid = int(twin.plan.layout.gpu_local[g]), int(twin.workload.pid[g])
    twin.emit(t, twin.host_of(g), "kernel", E.XID, Severity.CRITICAL, xid=xid, pci=twin.pci(local), gpu=local,
              pid=pid or None, process="python3" if pid else None)
    if xid in ECC_XIDS:
        s.remap_pending[g] = 1.0
        s.touch("remap_pending")
    twin.workload.exit(g, t, f"Xid {xid}")


def _link_down(twin: Twin, tf: TimedFault, t: float) -> None:
    s, lay, wl = twin.state, twin.plan.layout, twin.workload
    for node in range(tf.node, tf.node + int(tf.fault.span)):  # type: ignore[union-attr]
        if not s.node_up[node] or s.link_down[node]:
            continue
        s.link_down[node] = True
        host = lay.node_names[node]
        twin.emit(t, host, "kernel", E.LINK_DOWN, Severity.WARNING, pci="0000:4b:00.0", interface="ibp75s0")
        gpus = lay.gpus_of_node(node)
        ranks = gpus[wl.pid[gpus] != 0]
        if ranks.size == 0:
            continue
        g, peer = int(ranks[0]), lay.node_names[(node + int(tf.fault.span)) % lay.n_nodes]  # type: ignore[union-attr]
        twin.emit(t, host, "nccl", E.NCCL_NET_ERROR, Severity.ERROR, pid=int(wl.pid[g]), tid=int(wl.pid[g]) + 101,
                  gpu=int(lay.gpu_local[g]), peer=peer, port=54321, status=12, job=_job_name(twin, g))
        if wl.summary:
            wl.exit_many(t, ranks, "NCCL network error")
        else:
            for r in ranks:
                wl.exit(int(r), t, "NCCL network error")


def _node_down(twin: Twin, tf: TimedFault, t: float) -> None:
    if not twin.state.node_up[tf.node]:
        return
    twin.emit(t, twin.plan.layout.node_names[tf.node], "slurm", E.NODE_DOWN, Severity.ERROR,
              reason=str(tf.fault.reason))  # type: ignore[union-attr]
    twin.power_off_node(tf.node, t)


def _thermal_interface(twin: Twin, tf: TimedFault, t: float) -> None:
    s, f = twin.state, tf.fault
    s.heat_path[tf.gpu] /= float(f.factor)  # type: ignore[union-attr]
    s.any_degraded = True
    twin.truth(t, twin.host_of(tf.gpu), "thermal_interface_failed", gpu=int(twin.plan.layout.gpu_local[tf.gpu]),
               factor=float(f.factor))  # type: ignore[union-attr]


def _rank_crash(twin: Twin, tf: TimedFault, t: float) -> None:
    wl, g = twin.workload, tf.gpu
    gi = int(wl.group_of[g])
    if gi < 0:
        return
    jp = twin.plan.jobs[wl.groups[gi].job]
    twin.emit(t, twin.host_of(g), "torch", E.RANK_CRASH, Severity.ERROR, rank=int(np.searchsorted(jp.gpus, g)),
              pid=int(wl.pid[g]), job=jp.spec.name, error=str(tf.fault.reason))  # type: ignore[union-attr]
    wl.exit(g, t, str(tf.fault.reason))  # type: ignore[union-attr]


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
    "xid": _xid,
    "link_down": _link_down,
    "node_down": _node_down,
    "thermal_interface": _thermal_interface,
    "rank_crash": _rank_crash,
}
