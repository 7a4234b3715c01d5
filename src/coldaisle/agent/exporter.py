"""The exporter: a Prometheus Collector over the latest Frame, in base units, from the metric catalog.

The sampling thread calls `update()`, which only swaps one reference (plus a dict copy when a Frame carries
Xid events); every scrape builds its families from that snapshot on the HTTP thread. So a slow or stuck
scraper never delays sampling, and a process that ended disappears from the next scrape by itself, because
nothing is kept between Frames except Xid counts. NaN readings (lost GPU, not supported) are left out rather
than exported as NaN; a lost GPU says so with `coldaisle_gpu_lost 1`.

Xids come from two places: NVML's events in the Frame, and the kernel log (`note_xid`, from the kernel watch's
thread), which alone sees an Xid NVML cannot report, such as a GPU that fell off the bus. One Xid reported by
both, within `XID_SAME_S` of each other, is counted once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from coldaisle.agent.host import HostSample
from coldaisle.agent.jobs import JobRef
from coldaisle.telemetry.frame import DeviceInfo, Frame, ThrottleReason
from coldaisle.telemetry.metrics_catalog import CATALOG, MetricGroup, PromMetric

XID_SAME_S = 10.0  # an Xid from NVML and the same Xid from the kernel log this close together are one Xid
_REASONS = tuple((int(r), str(r.name).lower()) for r in ThrottleReason if r.value)


@dataclass(frozen=True, slots=True)
class AgentStats:
    """The agent's own counters, as the sampling loop hands them to `FrameCollector.update`."""

    samples_total: int = 0
    sample_duration_s: float = math.nan
    last_sample_wall: float = math.nan
    rules_pending: int = 0
    rules_firing: int = 0
    #: (action, status) -> count, e.g. ("power_cap", "done") -> 3.
    actions: Mapping[tuple[str, str], int] = field(default_factory=dict)
    breaker_open: float = 0.0  # 1 while the fleet breaker refuses every drain


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """The node's fault history as the exporter shows it: counts per (kind, code, window), and the lemon flag."""

    counts: Mapping[tuple[str, str, str], int]
    lemon: bool


@dataclass(frozen=True, slots=True)
class _Snapshot:
    frame: Frame
    host: HostSample | None
    agent: AgentStats | None
    jobs: Mapping[int, JobRef]
    last_xid: Mapping[str, int]
    xid_count: Mapping[str, int]
    #: Frame.unsupported grouped by column: {column: [device, ...]}.
    unsupported: Mapping[str, list[int]]
    #: job label -> {job_progress_age_s, job_latency_p50_s, job_latency_p99_s} (jobs with a heartbeat)
    job_values: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    history: HistoryStats | None = None
    #: job label -> its ranks' straggler scores (guard.straggler.RankScore: rank, score, host, gpu)
    job_ranks: Mapping[str, Sequence[Any]] = field(default_factory=dict)


class FrameCollector:
    """A prometheus_client custom collector: `collect()` yields the catalog's families for the latest Frame."""

    def __init__(self, node: str, *, dcgm_names: bool = False) -> None:
        self.node = node
        self.dcgm_names = dcgm_names
        self._snap: _Snapshot | None = None
        self._labels: tuple[tuple[DeviceInfo, ...], list[dict[str, str]], list[dict[str, str]]] | None = None
        self._kernel_xids: deque[tuple[float, int, int]] = deque()  # (monotonic, device, xid), filled by note_xid
        #: (uuid, xid) -> [(monotonic, from the kernel log)] counted from one source, not yet met in the other
        self._unmatched: dict[tuple[str, int], list[tuple[float, bool]]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def update(self, frame: Frame, host: HostSample | None = None, agent_state: AgentStats | None = None,
               jobs: Mapping[int, JobRef] | None = None,
               job_values: Mapping[str, Mapping[str, float]] | None = None,
               history: HistoryStats | None = None, job_ranks: Mapping[str, Sequence[Any]] | None = None) -> None:
        """Make `frame` (and the host, agent and job readings beside it) what the next scrape shows."""
        prev = self._snap
        last_xid = prev.last_xid if prev else {}
        counts = prev.xid_count if prev else {}
        xids = [(frame.monotonic, e.device, int(e.xid), False) for e in frame.events
                if e.kind == "xid" and e.xid is not None and 0 <= e.device < len(frame)]
        while self._kernel_xids:
            at, device, xid = self._kernel_xids.popleft()
            if 0 <= device < len(frame):
                xids.append((at, device, xid, True))
        if len(self._unmatched) > 4096:  # reports the other source never matched: forget them once stale
            self._unmatched = {k: v for k, v in self._unmatched.items()
                               if max(t for t, _ in v) >= frame.monotonic - XID_SAME_S}
        if xids:
            last_xid, counts = dict(last_xid), dict(counts)
            for at, device, xid, kernel in xids:
                uuid = frame.devices[device].uuid
                last_xid[uuid] = xid
                if self._first_report(uuid, xid, at, kernel):
                    counts[uuid] = counts.get(uuid, 0) + 1
        unsupported: dict[str, list[int]] = {}
        for column, device in frame.unsupported:
            if 0 <= device < len(frame):
                unsupported.setdefault(column, []).append(device)
        self._snap = _Snapshot(frame, host, agent_state, jobs or {}, last_xid, counts, unsupported,
                               job_values or {}, history, job_ranks or {})

    def note_xid(self, device: int, xid: int, at: float) -> None:
        """An Xid the kernel log reported for `device` at monotonic `at`; shown from the next update (any thread)."""
        self._kernel_xids.append((at, device, xid))

    def _first_report(self, uuid: str, xid: int, at: float, kernel: bool) -> bool:
        """False when the other source already reported this Xid within XID_SAME_S (then the two are one)."""
        seen = [(t, k) for t, k in self._unmatched.get((uuid, xid), ()) if abs(at - t) <= XID_SAME_S]
        other = next((i for i, (_t, k) in enumerate(seen) if k != kernel), None)  # the other source's report
        if other is not None:
            del seen[other]
        else:
            seen.append((at, kernel))
        if seen:
            self._unmatched[(uuid, xid)] = seen
        else:
            self._unmatched.pop((uuid, xid), None)
        return other is None

    def describe(self) -> list[Metric]:
        """Nothing to pre-register: names are checked against the catalog by the tests, not at registration."""
        return []

    # -- scrape side -------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        """The catalog's families for the latest snapshot (nothing before the first update)."""
        snap = self._snap
        if snap is None:
            return
        gpu_labels, dcgm_labels = self._device_labels(snap.frame.devices)
        for m in CATALOG:
            if m.group is MetricGroup.DCGM and not self.dcgm_names:
                continue
            if (m.group is MetricGroup.HOST and snap.host is None) or (
                    m.group is MetricGroup.AGENT and snap.agent is None) or (
                    m.group is MetricGroup.JOB and not snap.job_values) or (
                    m.group is MetricGroup.JOB_RANK and not snap.job_ranks) or (
                    m.group is MetricGroup.HISTORY and snap.history is None):
                continue
            fam = Metric(m.family, m.help, m.kind.value, m.unit if m.family.endswith(f"_{m.unit}") else "")
            sample_name = m.name
            if m.group in (MetricGroup.GPU, MetricGroup.DCGM):
                self._per_device(fam, sample_name, m, snap, dcgm_labels if m.group is MetricGroup.DCGM else gpu_labels)
            elif m.group is MetricGroup.PROCESS:
                self._processes(fam, sample_name, snap, gpu_labels)
            elif m.group is MetricGroup.JOB:
                self._jobs(fam, sample_name, m, snap)
            elif m.group is MetricGroup.JOB_RANK:
                for job, ranks in sorted(snap.job_ranks.items()):
                    fam.samples += [Sample(sample_name, {"node": self.node, "workload": job, "rank": str(r.rank),
                                                         "host": r.host, "gpu": r.gpu}, float(r.score)) for r in ranks]
            elif m.group is MetricGroup.HISTORY:
                self._history(fam, sample_name, m, snap.history)  # type: ignore[arg-type]
            else:
                self._node(fam, sample_name, m, snap)
            yield fam

    def _device_labels(self, devices: tuple[DeviceInfo, ...]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        cached = self._labels
        if cached is not None and cached[0] is devices:
            return cached[1], cached[2]
        gpu = [{"node": d.node, "gpu": str(d.index), "uuid": d.uuid} for d in devices]
        dcgm = [{"gpu": str(d.index), "UUID": d.uuid, "pci_bus_id": d.pci_bus_id, "device": f"nvidia{d.index}",
                 "modelName": d.name, "Hostname": d.node} for d in devices]
        self._labels = (devices, gpu, dcgm)
        return gpu, dcgm

    def _values(self, source: str, snap: _Snapshot) -> np.ndarray:
        f = snap.frame
        if source == "lost":
            return f.lost.astype(np.float64)
        if source == "throttle_reasons":
            return np.where(f.lost, np.nan, f.throttle_reasons.astype(np.float64))
        if source == "memory_free_bytes":
            return f.memory_total_bytes - f.memory_used_bytes
        if source in ("slowdown_temperature_c", "shutdown_temperature_c"):
            return np.array([getattr(d, source) for d in f.devices], np.float64)
        if source in ("last_xid", "xid_count"):
            table = snap.last_xid if source == "last_xid" else snap.xid_count
            return np.array([table.get(d.uuid, 0) for d in f.devices], np.float64)
        return f.column(source)

    def _per_device(self, fam: Metric, name: str, m: PromMetric, snap: _Snapshot,
                    labels: list[dict[str, str]]) -> None:
        if m.source == "info":
            fam.samples.extend(Sample(name, {**labels[i], "name": d.name, "pci_bus_id": d.pci_bus_id}, 1.0)
                               for i, d in enumerate(snap.frame.devices))
            return
        if m.source == "throttled":
            self._throttled(fam, name, snap, labels)
            return
        values = self._values(m.source, snap)
        if m.scale != 1.0:
            values = values * m.scale
        ok = ~np.isnan(values)
        missing = snap.unsupported.get(m.source)
        if missing:
            ok[missing] = False
        vals = values.tolist()
        fam.samples.extend(Sample(name, labels[i], vals[i]) for i in np.flatnonzero(ok).tolist())

    def _throttled(self, fam: Metric, name: str, snap: _Snapshot, labels: list[dict[str, str]]) -> None:
        f = snap.frame
        active = np.flatnonzero((f.throttle_reasons != 0) & ~f.lost).tolist()
        for i in active:
            if i in snap.unsupported.get("throttle_reasons", ()):
                continue
            mask = int(f.throttle_reasons[i])
            fam.samples.extend(Sample(name, {**labels[i], "reason": reason}, 1.0)
                               for bit, reason in _REASONS if mask & bit)

    def _processes(self, fam: Metric, name: str, snap: _Snapshot, labels: list[dict[str, str]]) -> None:
        rows = snap.frame.processes
        n = len(snap.frame)
        for dev, pid, used in zip(rows.device.tolist(), rows.pid.tolist(), rows.used_memory_bytes.tolist(),
                                  strict=True):
            if not 0 <= dev < n or math.isnan(used):
                continue
            job = snap.jobs.get(pid)
            fam.samples.append(Sample(name, {**labels[dev], "pid": str(pid), "slurm_job": job.job_label if job else "",
                                             "pod_uid": job.pod_label if job else ""}, used))

    def _jobs(self, fam: Metric, name: str, m: PromMetric, snap: _Snapshot) -> None:
        """One series per job; a job with no reading has no series."""
        for job, values in sorted(snap.job_values.items()):
            value = float(values.get(m.source, math.nan))
            if not math.isnan(value):
                # `job` is Prometheus's own target label: the workload is `slurm:<id>` or `pod:<uid>`
                fam.samples.append(Sample(name, {"node": self.node, "workload": job}, value))

    def _history(self, fam: Metric, name: str, m: PromMetric, history: HistoryStats) -> None:
        """Counts per kind, code and window (only kinds seen), and the lemon flag."""
        if m.source == "lemon":
            fam.samples.append(Sample(name, {"node": self.node}, float(history.lemon)))
            return
        for (kind, code, window), n in sorted(history.counts.items()):
            fam.samples.append(Sample(name, {"node": self.node, "kind": kind, "code": code, "window": window},
                                      float(n)))

    def _node(self, fam: Metric, name: str, m: PromMetric, snap: _Snapshot) -> None:
        source: Any = snap.host if m.group is MetricGroup.HOST else snap.agent
        if m.source == "actions":
            for (action, status), count in sorted(snap.agent.actions.items()):  # type: ignore[union-attr]
                fam.samples.append(Sample(name, {"node": self.node, "action": action, "status": status},
                                          float(count)))
            return
        value = float(getattr(source, m.source)) * m.scale
        if not math.isnan(value):
            fam.samples.append(Sample(name, {"node": self.node}, value))
