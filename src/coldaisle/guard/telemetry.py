"""Which Backend `coldaisle run` watches the job's GPUs through: NVML on a GPU node, a node of the twin in demos
and tests, or none (a CPU-only machine: the heartbeat, stack and host-memory watches still run)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from coldaisle.guard.gpuwatch import GpuWatch
from coldaisle.guard.policywatch import PolicyWatch
from coldaisle.policy.loader import load_policy
from coldaisle.sim.open import BackendChoice, open_backend
from coldaisle.telemetry.backend import BackendKind


def gpu_watch(kind: str, *, hang_timeout_s: float, lead_s: float, env: Mapping[str, str],
              scenario: str = "prometheus-unbound", node: str | None = None, start: str | None = None,
              say: Callable[[str], None] = print, policy: str | None = "default",
              interval_s: float = 0.5) -> GpuWatch | None:
    """`auto` (NVML when the driver is there, else none), `nvml`, `sim` or `none`; with the policy's job rules."""
    choice = BackendChoice(BackendKind.parse(kind), scenario, node, start)
    lp = None if policy in (None, "none") else load_policy(policy)  # a bad policy file fails before anything starts
    opened = open_backend(choice, required=False)
    if opened.backend is None:
        if choice.kind is BackendKind.AUTO:
            say(f"{opened.note}: the GPU spin and device-memory watches are off")
        return None
    watch = None if lp is None else PolicyWatch(lp, devices=len(opened.backend.devices()), interval_s=interval_s,
                                                 wall=time.time, say=say)
    return GpuWatch(opened.backend, hang_timeout_s=hang_timeout_s, lead_s=lead_s, env=env, policy=watch,
                    before_sample=opened.follow_wall, say=say)
