"""The twin's history as a Prometheus would hold it: dcgm-exporter's series (and coldaisle's agent's), in
OpenMetrics text for `promtool tsdb create-blocks-from openmetrics FILE DIR`.

Fed by the Frames the run sees: on a protected run the agent's own (so a backtest of the file can be checked
against the protected replay's decisions), on an unprotected one the twin's, read every `every_s` seconds.
GPU series carry dcgm-exporter's labels (`gpu`, `UUID`, `pci_bus_id`, `device`, `modelName`, `Hostname`), the
scrape's `job` and `instance`, and `hpc_job` while a job holds the GPU (dcgm-exporter's HPC job mapping). A lost
GPU has no samples, as the exporter cannot read it. coldaisle's own families (with a `rack` target label) are the
ones the shipped Grafana dashboard reads. Each family is written to its own temporary file and the file is
assembled family by family (OpenMetrics wants a family's lines together), then renamed into place.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from coldaisle.actions.interface import Outcome
from coldaisle.policy.context import Jobs, Nodes
from coldaisle.policy.loader import LoadedPolicy
from coldaisle.replay.protected import Guarded, protect
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.open import open_twin
from coldaisle.sim.resolve import Plan
from coldaisle.sim.sources import SimJobs, SimNodes
from coldaisle.sim.twin import Twin
from coldaisle.telemetry.frame import Frame
from coldaisle.telemetry.metrics_catalog import BY_NAME, CATALOG, MetricGroup


@dataclass(frozen=True)
class Family:
    """One metric family to write: where each GPU's value comes from and how it is scaled."""

    name: str
    kind: str  # gauge | unknown | counter
    help: str
    source: str
    scale: float = 1.0
    labels: str = "dcgm"  # dcgm | coldaisle | node (per node) | job (per job and node)


#: dcgm-exporter's default counters (etc/default-counters.csv) the Frame has, the profiling fields the default
#: policy reads (etc/dcp-metrics-included.csv), and the card facts and reasons mask DCGM also publishes.
DCGM_EXPORTED = ("DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_GPU_TEMP",
                 "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
                 "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_FB_FREE",
                 "DCGM_FI_DEV_FB_USED", "DCGM_FI_PROF_PCIE_TX_BYTES", "DCGM_FI_PROF_PCIE_RX_BYTES",
                 "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "DCGM_FI_DEV_SLOWDOWN_TEMP", "DCGM_FI_DEV_SHUTDOWN_TEMP",
                 "DCGM_FI_DEV_ENFORCED_POWER_LIMIT")
_NVLINK = (Family("DCGM_FI_PROF_NVLINK_RX_BYTES", "gauge", "The rate of data received over NVLink, not including "
                  "protocol headers, in bytes per second.", "nvlink_rx_bytes_per_s"),
           Family("DCGM_FI_PROF_NVLINK_TX_BYTES", "gauge", "The rate of data transmitted over NVLink, not including "
                  "protocol headers, in bytes per second.", "nvlink_tx_bytes_per_s"))
#: coldaisle's families the shipped Grafana dashboard (deploy/grafana/coldaisle.json) reads
COLDAISLE_EXPORTED = ("coldaisle_gpu_temperature_celsius", "coldaisle_gpu_power_watts",
                      "coldaisle_gpu_power_limit_watts", "coldaisle_gpu_slowdown_temperature_celsius",
                      "coldaisle_gpu_utilization_ratio", "coldaisle_gpu_memory_utilization_ratio",
                      "coldaisle_gpu_lost", "coldaisle_gpu_last_xid", "coldaisle_gpu_info")


def families(names: Iterable[str] | None = None) -> list[Family]:
    """The families written (all of the above, or those named), plus the job progress and the agent's rule counts."""
    out = []
    for name in (*DCGM_EXPORTED, *COLDAISLE_EXPORTED):
        m = BY_NAME[name]
        kind = "unknown" if m.kind.value == "unknown" else "gauge"
        labels = "dcgm" if m.group is MetricGroup.DCGM else "coldaisle"
        out.append(Family(m.name, kind, m.help, m.source, m.scale, labels))
    out += [*_NVLINK, Family("coldaisle_job_progress_age_seconds", "gauge", BY_NAME[
        "coldaisle_job_progress_age_seconds"].help, "job_progress_age_s", labels="job")]
    out += [Family(m.name, "gauge", m.help, m.source, labels="node") for m in CATALOG
            if m.name in ("coldaisle_agent_rules_pending", "coldaisle_agent_rules_firing")]
    m = BY_NAME["coldaisle_agent_actions_total"]
    out.append(Family(m.name.removesuffix("_total"), "counter", m.help, m.source, labels="actions"))
    wanted = set(names) if names is not None else None
    return [f for f in out if wanted is None or f.name in wanted]


class OpenMetricsWriter:
    """Writes every `every_s` seconds of Frames; `close()` assembles the file. Call it as an agent tick hook."""

    def __init__(self, path: Path, plan: Plan, *, every_s: float = 15.0, names: Iterable[str] | None = None,
                 engine: Callable[[], Any] | None = None, spans: Sequence[tuple[float, float]] = ()) -> None:
        self.path, self.every_s, self.engine = Path(path), every_s, engine
        self.actions: Counter[tuple[str, str, str]] = Counter()  # (node, action, status) -> Outcomes so far
        self.spans = tuple(spans)  # (from, to) seconds since the start: write only these (none: everything)
        self.fams = families(names)
        self.job_ids = {jp.spec.name: str(jp.spec.id) for jp in plan.jobs}
        self.racks = {name: f"r{int(plan.layout.node_rack[i]) + 1:02d}" for i, name in
                      enumerate(plan.layout.node_names)}
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self.files: dict[str, IO[str]] = {f.name: open(self.tmp / f.name, "w", encoding="utf-8")  # noqa: SIM115
                                          for f in self.fams}
        self.next_at = -np.inf
        self.last_xid: np.ndarray | None = None
        self.samples = 0
        self._labels: dict[tuple[int, str], str] = {}
        self._uuid_node: dict[str, str] = {}

    def __call__(self, frame: Frame, nodes: Nodes, jobs: Jobs, decisions: Sequence[Any] = ()) -> None:
        """See every Frame (Xids between samples count); write one every `every_s` seconds."""
        if self.last_xid is None:
            self.last_xid = np.zeros(len(frame))
        for ev in frame.events:
            if ev.kind == "xid" and ev.xid is not None and 0 <= ev.device < len(frame):
                self.last_xid[ev.device] = ev.xid
        if frame.monotonic + 1e-9 < self.next_at or not self._wanted(frame.monotonic):
            return
        self.next_at = frame.monotonic + self.every_s
        self.samples += 1
        job_of = jobs.of_device if jobs.of_device is not None else np.full(len(frame), -1)
        job_names = [self.job_ids.get(n, n) for n in jobs.names]
        ts = f"{frame.wall_time:.3f}"
        for fam in self.fams:
            if fam.labels in ("dcgm", "coldaisle"):
                self._gpus(fam, frame, job_of, job_names, ts)
            elif fam.labels == "job":
                self._jobs(fam, frame, nodes, jobs, job_names, ts)
            elif fam.labels == "actions":
                self._actions(fam, ts)
            else:
                self._rules(fam, frame, nodes, jobs, ts)

    def _wanted(self, t: float) -> bool:
        return not self.spans or any(a - 1e-9 <= t <= b + 1e-9 for a, b in self.spans)

    def _gpus(self, fam: Family, frame: Frame, job_of: np.ndarray, job_names: list[str], ts: str) -> None:
        values = self._column(fam, frame)
        keep = np.isfinite(values) & ~(frame.lost if fam.labels == "dcgm" else np.zeros(len(frame), bool))
        lines = []
        for d, v in zip(np.flatnonzero(keep).tolist(), values[keep].tolist(), strict=True):
            j = int(job_of[d])
            lines.append(f"{fam.name}{{{self._label(frame, d, fam.labels, job_names[j] if j >= 0 else '')}}} "
                         f"{v!r} {ts}\n")
        self.files[fam.name].write("".join(lines))

    def _column(self, fam: Family, frame: Frame) -> np.ndarray:
        s = fam.source
        if s == "last_xid":
            values = self.last_xid
        elif s in ("slowdown_temperature_c", "shutdown_temperature_c"):
            values = np.array([getattr(d, s) for d in frame.devices], dtype=float)
        elif s == "memory_free_bytes":
            values = frame.memory_total_bytes - frame.memory_used_bytes
        elif s in ("throttle_reasons", "lost"):
            values = getattr(frame, s).astype(float)
        elif s == "info":
            values = np.ones(len(frame))
        else:
            values = frame.column(s)
        return np.asarray(values, dtype=float) * fam.scale

    def _label(self, frame: Frame, d: int, kind: str, job: str) -> str:
        key = (d, kind + job)
        text = self._labels.get(key)
        if text is None:
            dev = frame.devices[d]
            if kind == "dcgm":
                text = (f'gpu="{dev.index}",UUID="{dev.uuid}",pci_bus_id="{dev.pci_bus_id}",device="nvidia{dev.index}"'
                        f',modelName="{dev.name}",Hostname="{dev.node}",instance="{dev.node}:9400",'
                        f'job="dcgm-exporter"' + (f',hpc_job="{job}"' if job else ""))
            else:
                text = (f'node="{dev.node}",gpu="{dev.index}",uuid="{dev.uuid}",rack="{self.racks.get(dev.node, "")}"'
                        f',name="{dev.name}",pci_bus_id="{dev.pci_bus_id}",instance="{dev.node}:9900",'
                        f'job="coldaisle"')
            self._labels[key] = text
        return text

    def _jobs(self, fam: Family, frame: Frame, nodes: Nodes, jobs: Jobs, job_names: list[str], ts: str) -> None:
        """A job's progress age on every node it runs on (each node's agent exports its own)."""
        values = jobs.values.get(fam.source)
        if values is None or jobs.of_device is None:
            return
        lines = []
        for j, name in enumerate(job_names):
            v = float(values[j])
            on = np.flatnonzero(jobs.of_device == j)
            if np.isfinite(v):
                for n in sorted({int(x) for x in nodes.of_device[on].tolist()}):
                    lines.append(f'{fam.name}{{node="{nodes.names[n]}",workload="slurm:{name}"}} {v!r} {ts}\n')
        self.files[fam.name].write("".join(lines))

    def _rules(self, fam: Family, frame: Frame, nodes: Nodes, jobs: Jobs, ts: str) -> None:
        """Per node, the rules pending (or firing) for some subject on it, from the engine's tracks."""
        engine = self.engine() if self.engine else None
        counts: Counter[str] = Counter()
        firing = fam.name.endswith("firing")
        for tracks in (engine.tracks.values() if engine else ()):
            on = set()
            for key, track in tracks.items():
                if (track.fired_at is not None) == firing:
                    on |= _subject_nodes(key, self._gpu_node(frame), nodes, jobs)
            counts.update(on)
        lines = [f'{fam.name}{{node="{n}",instance="{n}:9900",job="coldaisle",rack="{self.racks.get(n, "")}"}} '
                 f"{counts.get(n, 0)} {ts}\n" for n in nodes.names]
        self.files[fam.name].write("".join(lines))

    def observe(self, o: Outcome) -> None:
        """Count one of the agent's Outcomes (a runner observer) for the actions counter."""
        self.actions[(o.decision.target.node, str(o.decision.action), str(o.status))] += 1

    def _actions(self, fam: Family, ts: str) -> None:
        """The actions the agent took so far, per node, action and outcome status (a counter)."""
        lines = [f'{fam.name}_total{{node="{n}",action="{a}",status="{st}",instance="{n}:9900",job="coldaisle"}} '
                 f"{c} {ts}\n" for (n, a, st), c in sorted(self.actions.items())]
        self.files[fam.name].write("".join(lines))

    def __enter__(self) -> OpenMetricsWriter:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Leave nothing behind: the parts are removed and `path` is not written."""
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _gpu_node(self, frame: Frame) -> dict[str, str]:
        if len(self._uuid_node) != len(frame):
            self._uuid_node = {d.uuid: d.node for d in frame.devices}
        return self._uuid_node

    def close(self) -> Path:
        """Assemble the families into `path` (a temporary name, then renamed) and remove the parts."""
        out = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with open(out, "w", encoding="utf-8") as dst:
                for fam in self.fams:
                    self.files[fam.name].close()
                    kind = "counter" if fam.kind == "counter" else fam.kind
                    dst.write(f"# HELP {fam.name} {fam.help}\n# TYPE {fam.name} {kind}\n")
                    with open(self.tmp / fam.name, encoding="utf-8") as src:
                        shutil.copyfileobj(src, dst, 1 << 20)
                dst.write("# EOF\n")
            out.replace(self.path)
        finally:
            for f in self.files.values():
                f.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            out.unlink(missing_ok=True)
        return self.path


def _subject_nodes(key: Any, gpu_node: dict[str, str], nodes: Nodes, jobs: Jobs) -> set[str]:
    """The node(s) a rule's subject is on: a GPU's, a node, a process's node, a job's nodes."""
    if isinstance(key, tuple):
        return {str(key[0])}
    if key in gpu_node:
        return {gpu_node[key]}
    if jobs.of_device is not None and key in jobs.names:
        on = np.flatnonzero(jobs.of_device == list(jobs.names).index(key))
        return {nodes.names[int(n)] for n in nodes.of_device[on].tolist()}
    return {str(key)} if key in nodes.names else set()


def recorded_run(plan: Plan, path: Path, *, policy: str | LoadedPolicy | None = None, every_s: float = 15.0,
                 until_s: float | None = None, audit_path: Path | None = None, interval_s: float = 1.0,
                 names: Iterable[str] | None = None, spans: Sequence[tuple[float, float]] = (),
                 progress: Callable[[float, float], None] | None = None) -> tuple[Twin, Guarded | None]:
    """Run the scenario (protected by `policy` when given) and write its history to `path` as OpenMetrics (only
    the families named and the (from, to) spans given, when given)."""
    end = plan.duration_s if until_s is None else min(until_s, plan.duration_s)
    if policy is None:
        return _unprotected(plan, OpenMetricsWriter(path, plan, every_s=every_s, names=names, spans=spans), end,
                            progress), None
    g = protect(plan, policy, audit_path=audit_path, interval_s=interval_s)
    with OpenMetricsWriter(path, plan, every_s=every_s, names=names, engine=lambda: g.agent.engine,
                           spans=spans) as writer:
        g.runner.observers.append(writer.observe)
        g.runtime.on_tick(writer)
        while g.twin.clock.monotonic() < end - 1e-9:
            g.agent.run(until=min(end, g.twin.clock.monotonic() + 60.0))
            if progress:
                progress(g.twin.t, end)
        g.agent.tick()  # the last step too, as a scrape at the end of the window would see it
    return g.twin, g


def _unprotected(plan: Plan, writer: OpenMetricsWriter, end: float,
                 progress: Callable[[float, float], None] | None) -> Twin:
    """The twin alone, read through a cluster-wide SimBackend every `writer.every_s` seconds."""
    opened = open_twin(plan)
    twin, backend = opened.twin, opened.backend
    assert twin is not None and isinstance(backend, SimBackend)
    node_view, job_view = SimNodes(backend), SimJobs(backend)
    with writer:
        t = 0.0
        while t <= end + 1e-9:
            twin.run_until(t)
            frame = backend.sample()
            writer(frame, node_view.nodes(frame), job_view.jobs(frame))
            if progress:
                progress(t, end)
            t += writer.every_s
    return twin
