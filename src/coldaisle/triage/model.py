"""What root-cause rules speak: a ranked `Hypothesis`, and the event classes each rule reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from coldaisle.triage.interface import Hit

MEMORY = frozenset({"cuda_oom", "page_alloc_failure", "oom_invoked", "oom_kill", "hung_task"})
DEATH = frozenset({"xid", "gpu_fell_off_bus", "kernel_panic", "node_down", "soft_lockup"})
COLLECTIVE = frozenset({"nccl_watchdog_timeout", "nccl_error", "nccl_network_error", "cuda_error"})
NETWORK = frozenset({"ib_link_down", "nic_error"})
HARDWARE = frozenset({"xid", "gpu_fell_off_bus", "pcie_aer", "nvlink_error", "nvswitch_error", "fabric_manager_error",
                      "ecc_error", "row_remap", "gsp_timeout", "gsp_error", "kernel_panic", "driver_load_failure",
                      "dcgm_diag_fail", "soft_lockup", "hung_task", "host_memory_error", *NETWORK})
HEAT = frozenset({"thermal_throttle_gpu", "thermal_throttle_cpu", "thermal_shutdown", "fan_failure",
                  "cooling_failure", "power_event"})
SYMPTOMS = frozenset({"job_failed", "node_down", *HEAT})
EVIDENCE = 8


@dataclass
class Hypothesis:
    """One ranked explanation."""

    kind: str
    title: str
    origin: str
    confidence: str  # high | medium | low
    time: float | None  # on the common clock (hosts' skew corrected)
    evidence: list[Hit]
    affected: list[str] = field(default_factory=list)
    score: float = 0.0
    note: str = ""

    @property
    def blast_radius(self) -> int:
        """How many hosts the hypothesis touches."""
        return len(self.affected)


def step(h: Hit) -> str:
    """One event as a step of a causal chain (`Xid 79`, `task in D state`, `oom kill`)."""
    if h.cls == "xid":
        return f"Xid {h.fields.get('xid')}"
    if h.cls == "hung_task":
        return "task in D state"
    return h.cls.replace("_", " ")
