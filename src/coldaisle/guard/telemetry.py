"""Which Backend `coldaisle run` watches the job's GPUs through: NVML on a GPU node, a node of the twin in demos
and tests, or none (a CPU-only machine: the heartbeat, stack and host-memory watches still run)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from coldaisle.errors import BackendUnavailable, ColdaisleError
from coldaisle.guard.gpuwatch import GpuWatch
from coldaisle.guard.policywatch import PolicyWatch


def gpu_watch(kind: str, *, hang_timeout_s: float, lead_s: float, env: Mapping[str, str],
              scenario: str = "prometheus-unbound", node: str | None = None, start: str | None = None,
              say: Callable[[str], None] = print, policy: str | None = "default",
              interval_s: float = 0.5) -> GpuWatch | None:
    """`auto` (NVML when the driver is there, else none), `nvml`, `sim` or `none`; with the policy's job rules."""
    if kind not in ("auto", "nvml", "sim", "none"):
        raise ColdaisleError(f"--backend: unknown backend {kind!r}", hint="auto, nvml, sim or none", exit_code=2)
    if kind == "none":
        return None
    watch = _policy_watch(policy, interval_s, say)  # a bad policy file fails before anything starts
    if kind == "sim":
        return _sim_watch(scenario, node, start, hang_timeout_s=hang_timeout_s, lead_s=lead_s, env=env, policy=watch)
    try:
        from coldaisle.telemetry.nvml import NvmlBackend

        backend = NvmlBackend()
    except BackendUnavailable as exc:
        if kind == "nvml":
            raise
        say(f"no GPU telemetry ({exc.message.rstrip('.')}): the GPU spin and device-memory watches are off")
        return None
    return GpuWatch(backend, hang_timeout_s=hang_timeout_s, lead_s=lead_s, env=env, policy=watch)


def _policy_watch(policy: str | None, interval_s: float, say: Callable[[str], None]) -> PolicyWatch | None:
    """The policy's non-hang rules for this job (`none`: no policy)."""
    if policy in (None, "none"):
        return None
    from coldaisle.policy.loader import load_policy

    return PolicyWatch(load_policy(policy), interval_s=interval_s, wall=time.time, say=say)


def _sim_watch(scenario: str, node: str | None, start: str | None, **kw: object) -> GpuWatch:
    """A node of the twin, moved to `start` (e.g. "03:03") and then paced with the wall clock."""
    from coldaisle.sim.backend import SimBackend
    from coldaisle.sim.replay import load_plan, parse_until
    from coldaisle.sim.twin import Twin

    plan = load_plan(scenario)
    twin = Twin(plan)
    t0 = parse_until(start, plan) or 0.0
    twin.run_until(t0)
    backend = SimBackend(twin, node=node)
    wall0 = time.monotonic()

    def advance() -> None:
        target = min(t0 + (time.monotonic() - wall0), plan.duration_s)
        if target > twin.clock.monotonic():
            twin.clock.advance_to(target)

    return GpuWatch(backend, before_sample=advance, **kw)  # type: ignore[arg-type]
