"""The agent's Prometheus metric catalog, as data: name, type, unit, help, labels and where each value comes from.

The exporter builds every family from this table and a test checks a scrape emits exactly these names, so a
dashboard, an alert rule or the docs can read the catalog instead of the code. Naming follows Prometheus
practice: base units in the name (celsius, watts, bytes, joules, hertz, seconds), ratios 0..1 instead of
percent, `_total` on counters, one `node`/`gpu`/`uuid` label set on every GPU series.

`DCGM` is the optional alias table: the same readings under dcgm-exporter's names, labels and units, so the
Grafana dashboards built for dcgm-exporter (e.g. grafana.com dashboard 12239) work unchanged. Sources:
NVIDIA/dcgm-exporter `etc/default-counters.csv` and `etc/dcp-metrics-included.csv` (names, types, units:
FB_* in MiB, TOTAL_ENERGY_CONSUMPTION in mJ, PCIe bytes in bytes per second), DCGM `dcgm_fields.h` (field
meanings), and dcgm-exporter `pkg/dcgmexporter/render_metrics.go` (labels `gpu`, `UUID`, `pci_bus_id`,
`device`, `modelName`, `Hostname`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from coldaisle.telemetry.frame import METRICS


class MetricType(StrEnum):
    """Prometheus metric types, spelled as prometheus_client spells them."""

    GAUGE = "gauge"
    COUNTER = "counter"
    INFO = "info"
    UNTYPED = "unknown"


class MetricGroup(StrEnum):
    """Which part of the agent feeds a family; optional groups appear only when their data is given."""

    GPU = "gpu"  # always: one series per GPU of the latest Frame
    PROCESS = "process"  # always declared: one series per GPU process of the latest Frame
    HOST = "host"  # when the loop passes a HostSample
    AGENT = "agent"  # when the loop passes AgentStats
    JOB = "job"  # one series per running job with a heartbeat (coldaisle run): progress age, latencies
    JOB_RANK = "job_rank"  # one series per rank of a supervised job: its straggler score
    HISTORY = "history"  # the node's durable fault history: counts over windows, the lemon flag
    DCGM = "dcgm"  # when the exporter is built with dcgm_names=True


@dataclass(frozen=True, slots=True)
class PromMetric:
    """One metric family: the name as scraped (a counter's ends in `_total`), type, base unit and source."""

    name: str
    kind: MetricType
    unit: str
    help: str
    labels: tuple[str, ...]
    group: MetricGroup
    #: Frame column, DeviceInfo field, HostSample / AgentStats attribute, or a derived key the exporter knows.
    source: str = ""
    #: Multiply the source value by this (percent -> ratio 0.01, MHz -> Hz 1e6, bytes -> MiB 2**-20).
    scale: float = 1.0

    @property
    def family(self) -> str:
        """The family name prometheus_client wants: without `_total` (counter) or `_info` (info)."""
        if self.kind is MetricType.COUNTER:
            return self.name.removesuffix("_total")
        if self.kind is MetricType.INFO:
            return self.name.removesuffix("_info")
        return self.name


GPU_LABELS = ("node", "gpu", "uuid")
# Not `job`/`pod`: Prometheus sets `job` on every target (a scraped `job` becomes `exported_job`) and
# Kubernetes service discovery commonly relabels `pod`; dcgm-exporter's HPC mapping says `hpc_job` likewise.
PROCESS_LABELS = (*GPU_LABELS, "pid", "slurm_job", "pod_uid")
NODE_LABELS = ("node",)
DCGM_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname")

#: Frame column -> (Prometheus name, base unit, scale from the Frame's unit). Every column of
#: `telemetry.frame.METRICS` has a row (a test checks), so a new Frame column cannot go unexported.
FRAME_COLUMNS: dict[str, tuple[str, str, float]] = {
    "temperature_c": ("coldaisle_gpu_temperature_celsius", "celsius", 1.0),
    "memory_temperature_c": ("coldaisle_gpu_memory_temperature_celsius", "celsius", 1.0),
    "power_w": ("coldaisle_gpu_power_watts", "watts", 1.0),
    "power_instant_w": ("coldaisle_gpu_power_instant_watts", "watts", 1.0),
    "power_limit_w": ("coldaisle_gpu_power_limit_watts", "watts", 1.0),
    "energy_j": ("coldaisle_gpu_energy_joules_total", "joules", 1.0),
    "memory_used_bytes": ("coldaisle_gpu_memory_used_bytes", "bytes", 1.0),
    "memory_total_bytes": ("coldaisle_gpu_memory_total_bytes", "bytes", 1.0),
    "utilization_gpu": ("coldaisle_gpu_utilization_ratio", "ratio", 0.01),
    "utilization_memory": ("coldaisle_gpu_memory_utilization_ratio", "ratio", 0.01),
    "sm_clock_mhz": ("coldaisle_gpu_sm_clock_hertz", "hertz", 1e6),
    "memory_clock_mhz": ("coldaisle_gpu_memory_clock_hertz", "hertz", 1e6),
    "fan_pct": ("coldaisle_gpu_fan_speed_ratio", "ratio", 0.01),
    "pcie_rx_bytes_per_s": ("coldaisle_gpu_pcie_rx_bytes_per_second", "bytes_per_second", 1.0),
    "pcie_tx_bytes_per_s": ("coldaisle_gpu_pcie_tx_bytes_per_second", "bytes_per_second", 1.0),
    "nvlink_rx_bytes_per_s": ("coldaisle_gpu_nvlink_rx_bytes_per_second", "bytes_per_second", 1.0),
    "nvlink_tx_bytes_per_s": ("coldaisle_gpu_nvlink_tx_bytes_per_second", "bytes_per_second", 1.0),
    "pcie_replay_total": ("coldaisle_gpu_pcie_replays_total", "", 1.0),
    "ecc_corrected_total": ("coldaisle_gpu_ecc_corrected_errors_total", "", 1.0),
    "ecc_uncorrected_total": ("coldaisle_gpu_ecc_uncorrected_errors_total", "", 1.0),
    "remapped_rows_pending": ("coldaisle_gpu_remapped_rows_pending", "", 1.0),
    "remapped_rows_failure": ("coldaisle_gpu_remapped_rows_failure", "", 1.0),
    "retired_pages_pending": ("coldaisle_gpu_retired_pages_pending", "", 1.0),
    "sample_age_s": ("coldaisle_gpu_sample_age_seconds", "seconds", 1.0),
}


def _frame_metrics() -> list[PromMetric]:
    out = []
    for m in METRICS:
        if m.name not in FRAME_COLUMNS:
            continue  # caught by the catalog test; never break an import over a new column
        name, unit, scale = FRAME_COLUMNS[m.name]
        kind = MetricType.COUNTER if m.counter else MetricType.GAUGE
        help_ = m.help + (" (0-1)" if unit == "ratio" else "")
        out.append(PromMetric(name, kind, unit, help_, GPU_LABELS, MetricGroup.GPU, m.name, scale))
    return out


def _g(name: str, help_: str, group: MetricGroup, source: str = "", *, unit: str = "",
       kind: MetricType = MetricType.GAUGE, labels: tuple[str, ...] | None = None, scale: float = 1.0) -> PromMetric:
    default = {MetricGroup.GPU: GPU_LABELS, MetricGroup.PROCESS: PROCESS_LABELS, MetricGroup.DCGM: DCGM_LABELS}
    return PromMetric(name, kind, unit, help_, labels or default.get(group, NODE_LABELS), group, source, scale)


_GPU, _HOST, _AGENT, _DCGM = MetricGroup.GPU, MetricGroup.HOST, MetricGroup.AGENT, MetricGroup.DCGM

#: Every family the exporter can emit, in exposition order.
CATALOG: tuple[PromMetric, ...] = (
    *_frame_metrics(),
    _g("coldaisle_gpu_info", "Static facts of a GPU as labels; the value is always 1", _GPU, "info",
       kind=MetricType.INFO, labels=(*GPU_LABELS, "name", "pci_bus_id")),
    _g("coldaisle_gpu_lost", "1 when the GPU stopped answering (fell off the bus, node down), else 0", _GPU, "lost"),
    _g("coldaisle_gpu_throttle_reasons", "NVML clock event (throttle) reasons bitmask", _GPU, "throttle_reasons"),
    _g("coldaisle_gpu_throttled", "1 for each clock event (throttle) reason active now; absent when inactive",
       _GPU, "throttled", labels=(*GPU_LABELS, "reason")),
    _g("coldaisle_gpu_slowdown_temperature_celsius", "Temperature at which the GPU slows its clocks", _GPU,
       "slowdown_temperature_c", unit="celsius"),
    _g("coldaisle_gpu_shutdown_temperature_celsius", "Temperature at which the GPU shuts down", _GPU,
       "shutdown_temperature_c", unit="celsius"),
    _g("coldaisle_gpu_xid_errors_total", "Xid events seen by this agent since it started (NVML events and the kernel "
       "log; one Xid both report is counted once)", _GPU, "xid_count", kind=MetricType.COUNTER),
    _g("coldaisle_gpu_last_xid", "Code of the most recent Xid seen by this agent, from NVML or the kernel log "
       "(0: none)", _GPU, "last_xid"),
    _g("coldaisle_gpu_process_memory_used_bytes", "Device memory used by a process, with its Slurm job or pod",
       MetricGroup.PROCESS, "processes", unit="bytes"),
    *(_g(f"coldaisle_host_pressure_{res}_{kind}_ratio",
         f"Share of the last 10 s in which {'some' if kind == 'some' else 'all'} non-idle tasks stalled on "
         f"{res} (/proc/pressure/{res} avg10, 0-1)", _HOST, f"psi_{res}_{kind}", unit="ratio")
      for res in ("cpu", "memory", "io") for kind in ("some", "full")),
    _g("coldaisle_host_swap_in_pages_per_second", "Pages swapped in per second (/proc/vmstat pswpin)", _HOST,
       "swap_in_pages_per_s"),
    _g("coldaisle_host_swap_out_pages_per_second", "Pages swapped out per second (/proc/vmstat pswpout)", _HOST,
       "swap_out_pages_per_s"),
    _g("coldaisle_host_interrupts_per_second", "Interrupts serviced per second, all CPUs (/proc/stat intr)",
       _HOST, "interrupts_per_s"),
    _g("coldaisle_host_context_switches_per_second", "Context switches per second (/proc/stat ctxt)", _HOST,
       "context_switches_per_s"),
    _g("coldaisle_host_processes_d_state", "Processes in uninterruptible sleep (state D), counted every few seconds",
       _HOST, "d_state_processes"),
    _g("coldaisle_agent_sample_duration_seconds", "How long the most recent Backend sample took", _AGENT,
       "sample_duration_s", unit="seconds"),
    _g("coldaisle_agent_samples_total", "Samples the agent has taken since it started", _AGENT, "samples_total",
       kind=MetricType.COUNTER),
    _g("coldaisle_agent_last_sample_timestamp_seconds", "Unix time of the most recent sample", _AGENT,
       "last_sample_wall", unit="seconds"),
    _g("coldaisle_agent_rules_pending", "Rules whose condition holds but whose `for` has not elapsed", _AGENT,
       "rules_pending"),
    _g("coldaisle_agent_rules_firing", "Rules whose condition has held for their `for` duration", _AGENT,
       "rules_firing"),
    _g("coldaisle_agent_actions_total", "Actions the agent took, by action and outcome status", _AGENT, "actions",
       kind=MetricType.COUNTER, labels=(*NODE_LABELS, "action", "status")),
    _g("coldaisle_agent_fleet_breaker_open", "1 while the fleet breaker refuses every drain (tripped, until its "
       "window passes or `coldaisle agent reset --breaker`)", _AGENT, "breaker_open"),
    _g("coldaisle_node_fault_events", "Events in the node's durable fault history within the window (kind: xid, "
       "gpu_lost, ecc, row_remap, pcie_burst, drain, resume, power_cycle, kill; code: the Xid)", MetricGroup.HISTORY,
       "events", labels=(*NODE_LABELS, "kind", "code", "window")),
    _g("coldaisle_node_lemon", "1 when the node was drained as often as the policy's `lemon` says within its "
       "window: take it out and inspect it", MetricGroup.HISTORY, "lemon"),
    _g("coldaisle_job_progress_age_seconds", "Seconds since the job's freshest rank reported progress "
       "(coldaisle.progress(); jobs launched by coldaisle run)", MetricGroup.JOB, "job_progress_age_s", unit="seconds",
       labels=(*NODE_LABELS, "workload")),
    *(_g(f"coldaisle_job_latency_{q}_seconds", f"{q} of the request latencies a serving job reports "
         "(coldaisle.latency(), last 256 per rank), worst rank", MetricGroup.JOB, f"job_latency_{q}_s", unit="seconds",
         labels=(*NODE_LABELS, "workload")) for q in ("p50", "p99")),
    _g("coldaisle_job_rank_straggler_score", "How far a rank of a job under coldaisle run falls behind its peers: 0 "
       "keeps up, 0.29 does 40% more work per step, towards 1 further behind (docs/run.md)", MetricGroup.JOB_RANK,
       "score", labels=(*NODE_LABELS, "workload", "rank", "host", "gpu")),
    # dcgm-exporter aliases. Its counters are named without `_total`, which prometheus_client only allows as
    # untyped; Prometheus and Grafana read them the same way (rate() works on untyped series).
    _g("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", _DCGM, "sm_clock_mhz"),
    _g("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", _DCGM, "memory_clock_mhz"),
    _g("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).", _DCGM, "memory_temperature_c"),
    _g("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", _DCGM, "temperature_c"),
    _g("DCGM_FI_DEV_SLOWDOWN_TEMP", "Slowdown temperature for the device (in C).", _DCGM, "slowdown_temperature_c"),
    _g("DCGM_FI_DEV_SHUTDOWN_TEMP", "Shutdown temperature for the device (in C).", _DCGM, "shutdown_temperature_c"),
    _g("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", _DCGM, "power_w"),
    _g("DCGM_FI_DEV_POWER_USAGE_INSTANT", "Current instantaneous power usage of the device (in W).", _DCGM,
       "power_instant_w"),
    _g("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", "Effective power limit that the driver enforces (in W).", _DCGM,
       "power_limit_w"),
    _g("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).", _DCGM, "energy_j",
       kind=MetricType.UNTYPED, scale=1e3),
    _g("DCGM_FI_PROF_PCIE_TX_BYTES", "The rate of data transmitted over the PCIe bus (in bytes per second).",
       _DCGM, "pcie_tx_bytes_per_s"),
    _g("DCGM_FI_PROF_PCIE_RX_BYTES", "The rate of data received over the PCIe bus (in bytes per second).",
       _DCGM, "pcie_rx_bytes_per_s"),
    _g("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "Total number of PCIe retries.", _DCGM, "pcie_replay_total",
       kind=MetricType.UNTYPED),
    _g("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", _DCGM, "utilization_gpu"),
    _g("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", _DCGM, "utilization_memory"),
    _g("DCGM_FI_DEV_FAN_SPEED", "Fan speed for the device in percent 0-100.", _DCGM, "fan_pct"),
    _g("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", _DCGM, "last_xid"),
    _g("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "Current clock throttle reasons (bitmask).", _DCGM,
       "throttle_reasons"),
    _g("DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB).", _DCGM, "memory_total_bytes", scale=2.0**-20),
    _g("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", _DCGM, "memory_free_bytes", scale=2.0**-20),
    _g("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", _DCGM, "memory_used_bytes", scale=2.0**-20),
    _g("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors.", _DCGM,
       "ecc_corrected_total", kind=MetricType.UNTYPED),
    _g("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors.", _DCGM,
       "ecc_uncorrected_total", kind=MetricType.UNTYPED),
)
BY_NAME: dict[str, PromMetric] = {m.name: m for m in CATALOG}


def names(*groups: MetricGroup) -> frozenset[str]:
    """The scraped family names of the given groups (all groups when none given)."""
    wanted = set(groups) or set(MetricGroup)
    return frozenset(m.name for m in CATALOG if m.group in wanted)
