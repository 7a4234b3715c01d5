"""Where a node's actions go: the twin's executors on the simulator, the node's own on hardware.

Mirrors `sim/executors.py` (the twin's side). `assemble` asks this module for the executor map, the drain
target and the fleet breaker over that target's node list, so a rule's action means the same on a node, in the
live view and on the twin.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from coldaisle.actions.bmc import BmcFile, IpmiPowerCycle, load_bmcs
from coldaisle.actions.fleet import FleetBreaker
from coldaisle.actions.interface import ActionKind, Decision, Executor, Outcome, Status
from coldaisle.actions.notify import LogNotifier, WebhookNotifier
from coldaisle.actions.powercap import PowerCapper
from coldaisle.errors import ColdaisleError
from coldaisle.policy.loader import LoadedPolicy
from coldaisle.sim.executors import SimDrain, SimPowerCycle, SimSignaller
from coldaisle.sim.open import OpenBackend
from coldaisle.telemetry.clock import Clock, RealClock

DRAINS = ("auto", "slurm", "kubernetes", "twin")
SETTLE_S = 2.0  # how long a real scheduler's breaker waits for racing agents before it re-reads the fleet


class Notify:
    """NOTIFY to the log and, when configured, to an Alertmanager-compatible webhook."""

    kind = ActionKind.NOTIFY

    def __init__(self, *targets: Executor | None) -> None:
        self.targets = [t for t in targets if t is not None]

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Every target gets it; the Outcome reports the worst."""
        outcomes = [t.execute(decision, dry_run=dry_run) for t in self.targets]
        bad = [o for o in outcomes if o.status == Status.FAILED]
        return bad[0] if bad else outcomes[-1]


def node_executors(opened: OpenBackend, capper: PowerCapper, *, drain: str = "auto", webhook: str | None = None,
                   bmc: Path | None = None, notify_logger: logging.Logger | None = None) -> dict[ActionKind, Any]:
    """One executor per action kind; the same BMC gate on the twin and on hardware."""
    twin, clock = opened.twin, opened.clock
    hook = WebhookNotifier(webhook, clock=clock) if webhook else None
    notify = Notify(LogNotifier(notify_logger, clock=clock) if notify_logger else LogNotifier(clock=clock), hook)
    bmcs = load_bmcs(bmc) if bmc is not None else BmcFile()
    if twin is not None:
        sig: Any = SimSignaller(twin)
        cycle: Any = SimPowerCycle(twin, enabled=bmcs.enabled)
    else:
        from coldaisle.actions.signal import ProcessSignaller

        sig = ProcessSignaller(clock=clock)
        cycle = IpmiPowerCycle(bmcs, clock=clock)  # off (refused, and audited as such) unless the file enables it
    return {ActionKind.NOTIFY: notify, ActionKind.POWER_CAP: capper, ActionKind.SIGTERM: sig,
            ActionKind.SIGKILL: sig, ActionKind.DRAIN: drain_target(drain, opened), ActionKind.POWER_CYCLE: cycle}


def drain_target(kind: str, opened: OpenBackend) -> Any:
    """Where drains go: the twin, or the node's scheduler (auto: the twin on the simulator, else the scheduler
    the node has). Simulated GPUs may drain through a real scheduler (`--backend sim --drain slurm`)."""
    from coldaisle.actions.drain import SlurmDrain
    from coldaisle.actions.k8s import KubernetesDrain

    if kind not in DRAINS:
        raise ColdaisleError(f"--drain: unknown target {kind!r}", hint=f"use {', '.join(DRAINS)}", exit_code=2)
    if kind == "auto":
        in_k8s = os.environ.get("KUBERNETES_SERVICE_HOST") and not shutil.which("scontrol")
        kind = "twin" if opened.twin is not None else "kubernetes" if in_k8s else "slurm"
    if kind == "twin":
        if opened.twin is None:
            raise ColdaisleError("--drain twin needs the simulator", hint="add --backend sim", exit_code=2)
        return SimDrain(opened.twin)
    return SlurmDrain(clock=opened.clock) if kind == "slurm" else KubernetesDrain(clock=opened.clock)


def fleet_breaker(lp: LoadedPolicy, drain: Any, clock: Clock) -> FleetBreaker:
    """The fleet breaker over the drain target's own node list. A real scheduler dates drains on the wall clock,
    so its breaker counts on the wall clock too (even with simulated GPUs), and waits for racing agents; the
    twin has one agent for the whole cluster: no race, and its own clock."""
    pol, twin = lp.policy, isinstance(drain, SimDrain)
    return FleetBreaker(drain, pol.drain_max_share, pol.drain_window, clock if twin else RealClock(),
                        manual_reset=pol.drain_reset == "manual", settle_s=0.0 if twin else SETTLE_S)
