"""The policy engine over one supervised job: the agent's rules, with the job as the only job on the node.

`coldaisle run` evaluates the same compiled policy as the agent (default: the shipped one) on each Frame of
the job's GPUs. A rule that orders SIGTERM or SIGKILL for a process of the job becomes the run's verdict,
named by the rule's `verdict:` (thermal -> exit 72, runaway_memory -> 71). Rules whose verdict is `hang`
are left to run's own watches, which follow the user's --hang-timeout. Caps and drains stay the agent's:
the supervisor reports them, it does not carry them out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from coldaisle.actions.interface import ActionKind
from coldaisle.guard.watch import Verdict, VerdictKind
from coldaisle.policy.context import Jobs, Nodes
from coldaisle.policy.loader import LoadedPolicy
from coldaisle.policy.step import PolicyStep
from coldaisle.telemetry.frame import Frame

JOB = "supervised-job"
_STOPS = (ActionKind.SIGTERM, ActionKind.SIGKILL)


class PolicyWatch:
    """Evaluates the policy's non-hang rules for the supervised job; a stop order is a verdict."""

    def __init__(self, policy: LoadedPolicy, *, devices: int, interval_s: float, wall: Callable[[], float],
                 say: Callable[[str], None]) -> None:
        rules = [r for r in policy.rules if r.rule.verdict != "hang"]
        self.step = PolicyStep(replace(policy, rules=rules), devices=devices, interval_s=interval_s, wall=wall,
                               note=say)
        self.kinds = {r.rule.name: VerdictKind(r.rule.verdict or "thermal") for r in rules}
        self.say = say
        self._told: set[str] = set()

    def check(self, frame: Frame, devices: np.ndarray, pids: set[int], progress_age_s: float = math.nan
              ) -> Verdict | None:
        """One evaluation; the first stop order for a process of the job, as a verdict."""
        n = len(frame)
        of_device = np.full(n, -1, dtype=np.intp)
        of_device[devices] = 0
        p = frame.processes
        mine = np.isin(p.pid, list(pids)) | np.isin(p.device, devices) if len(p) else np.zeros(0, bool)
        jobs = Jobs([JOB], of_device, np.where(mine, 0, -1).astype(np.intp),
                    {"job_progress_age_s": np.array([progress_age_s])})
        node = frame.devices[0].node if n else "localhost"
        for d in self.step(frame, Nodes([node], np.zeros(n, dtype=np.intp)), jobs):
            if d.action in _STOPS and d.target.job == JOB:
                return Verdict(self.kinds[d.rule], f"policy rule {d.rule} ({d.severity}) orders {d.action} for "
                                                    f"the job: {d.params.get('reason', '')}",
                               {"signal": "policy", "rule": d.rule, "step": d.step, "target": d.target.label(),
                                "evidence": d.evidence})
            if d.rule not in self._told and not d.restore:
                self._told.add(d.rule)
                self.say(f"policy rule {d.rule} fired ({d.action} on {d.target.label()}): the node agent acts on "
                         "it; coldaisle run stops the job only when a rule orders it")
        return None
