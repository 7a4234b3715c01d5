"""The action runner: audit, rate-limit, ask the fleet breaker, dispatch, audit again, escalate.

Every Decision is audited before anything happens and every Outcome after. An executor that
raises becomes a FAILED Outcome; the runner goes on. In asynchronous mode one worker thread does
the work behind a bounded queue, so the sampling loop's `submit()` never waits on a webhook or
`scontrol`. Drains and power cycles go past the fleet breaker (actions/fleet.py) first; a fresh drain is
confirmed against the fleet after it lands and undone if simultaneous drains put it over the cap; every
refusal of the breaker is audited with the counts it saw and sent on as an alert instead.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import replace

from coldaisle.actions.audit import AuditLog
from coldaisle.actions.fleet import FleetBreaker
from coldaisle.actions.interface import ActionKind, Decision, Executor, Outcome, Status, Target
from coldaisle.actions.safety import RateLimiter
from coldaisle.actions.signal import ESCALATE_DRAIN
from coldaisle.telemetry.clock import Clock, RealClock

log = logging.getLogger(__name__)
_STOP = object()


class ActionRunner:
    """Turns Decisions into audited Outcomes through the executors, with the safety limits in front."""

    def __init__(self, executors: Mapping[ActionKind, Executor], audit: AuditLog, *, dry_run: bool = False,
                 rate_limiter: RateLimiter | None = None, breaker: FleetBreaker | None = None,
                 clock: Clock | None = None, asynchronous: bool = False, queue_size: int = 1000,
                 keep: int = 1000) -> None:
        self.executors = dict(executors)
        self.audit = audit
        self.dry_run = dry_run
        self.rate_limiter = rate_limiter
        self.breaker = breaker
        self.clock = clock or RealClock()
        self.asynchronous = asynchronous
        self.outcomes: deque[Outcome] = deque(maxlen=keep)  # the latest, for /metrics and tests
        self.counts: Counter[tuple[str, str]] = Counter()  # (action, status) -> Outcomes so far
        self.observers: list[Callable[[Outcome], None]] = []  # told every Outcome (the node's fault history)
        self.dropped = 0
        self._q: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._worker: threading.Thread | None = None
        if asynchronous:
            self._worker = threading.Thread(target=self._run, name="coldaisle-actions", daemon=True)
            self._worker.start()

    def submit(self, decision: Decision) -> Outcome | None:
        """Carry out `decision` (synchronous: returns its Outcome) or queue it (asynchronous: returns None)."""
        if not self.asynchronous:
            return self._safe(decision)
        try:
            self._q.put_nowait(decision)
        except queue.Full:
            self.dropped += 1
            self.audit.note(f"action queue full ({self._q.maxsize}); decision dropped", decision=decision.to_json())
        return None

    def _run(self) -> None:
        while True:
            item = self._q.get()
            try:
                if item is _STOP:
                    return
                assert isinstance(item, Decision)
                self._safe(item)
            finally:
                self._q.task_done()

    def _safe(self, decision: Decision) -> Outcome:
        """`_process`, with a last guard: nothing escapes to the sampling loop or kills the worker."""
        try:
            return self._process(decision)
        except Exception as exc:
            log.exception("action %s for %s failed in the runner", decision.action, decision.target.label())
            return Outcome(decision, Status.FAILED, f"runner error: {type(exc).__name__}: {exc}", self.clock.time())

    def _process(self, decision: Decision) -> Outcome:
        self.audit.decision(decision)
        outcome, in_service = self._guard(decision)
        if outcome is None:
            outcome = self._dispatch(decision)
            if in_service and outcome.status == Status.DONE and decision.action == ActionKind.DRAIN:
                outcome = self._confirm(decision, outcome)
        self.audit.outcome(outcome)
        self.outcomes.append(outcome)
        self.counts[(str(decision.action), str(outcome.status))] += 1
        for observe in self.observers:
            try:
                observe(outcome)
            except Exception:  # an observer's failure never stops an action
                log.exception("outcome observer %r failed", observe)
        if (decision.action != ActionKind.DRAIN and ESCALATE_DRAIN in outcome.detail
                and outcome.status in (Status.FAILED, Status.DRY_RUN)):
            self._process(self._escalation(outcome))
        return outcome

    def _guard(self, d: Decision) -> tuple[Outcome | None, bool]:
        """(a REFUSED Outcome when the rate limit or the fleet breaker says no, or None; whether a drain's node
        was in service before it). Restores always pass."""
        if d.restore:
            return None, False
        rl = self.rate_limiter
        if rl is not None and not rl.allow((str(d.action), d.target.node)):
            return self._refuse(d, f"rate limit: more than {rl.max_per_window} {d.action} actions on "
                                   f"{d.target.node} within {rl.window_s:g} s"), False
        br = self.breaker
        if br is None or d.action not in (ActionKind.DRAIN, ActionKind.POWER_CYCLE):
            return None, False
        why, in_service = br.before(d.target.node)
        if why is None:
            return None, in_service
        return self._breaker_refusal(d, why), False

    def _confirm(self, d: Decision, done: Outcome) -> Outcome:
        """After our drain landed: does it rank within the fleet's cap among simultaneous drains? If not, undo it."""
        if self.dry_run or self.breaker is None:
            return done
        why = self.breaker.after(d.target.node)
        if why is None:
            return done
        undo = self._dispatch(replace(d, restore=True, params={**d.params, "reason": "fleet breaker: drain undone"}))
        return self._breaker_refusal(d, f"{why}; undo: {undo.status}: {undo.detail}")

    def _breaker_refusal(self, d: Decision, why: str) -> Outcome:
        """A drain the fleet breaker stopped: audited with the counts it saw, and an alert goes out instead."""
        fields = self.breaker.audit_fields() if self.breaker is not None else {}
        self.audit.note("fleet breaker refused a drain", node=d.target.node, rule=d.rule, action=str(d.action),
                        **fields)
        notify = self.executors.get(ActionKind.NOTIFY)
        if notify is not None and d.action != ActionKind.NOTIFY:
            alert = Decision(self.clock.time(), d.rule, "critical", ActionKind.NOTIFY, d.target, step=d.step,
                             params={"reason": f"{d.rule}: {d.action} of {d.target.node} refused: {why}"},
                             evidence={**d.evidence, "fleet": fields})
            self.audit.decision(alert)
            self.audit.outcome(self._dispatch(alert))
        return self._refuse(d, why)

    def _refuse(self, d: Decision, why: str) -> Outcome:
        log.warning("refused %s on %s: %s", d.action, d.target.label(), why)
        return Outcome(d, Status.REFUSED, why, self.clock.time())

    def _dispatch(self, d: Decision) -> Outcome:
        executor = self.executors.get(d.action)
        if executor is None:
            return Outcome(d, Status.FAILED, f"no executor for {d.action} is configured", self.clock.time())
        try:
            outcome = executor.execute(d, dry_run=self.dry_run)
        except Exception as exc:  # a contract breach, but the daemon keeps going
            log.exception("executor %s raised on %s", type(executor).__name__, d.target.label())
            return Outcome(d, Status.FAILED, f"executor raised {type(exc).__name__}: {exc}", self.clock.time())
        if not isinstance(outcome, Outcome):
            return Outcome(d, Status.FAILED, f"executor returned {type(outcome).__name__}", self.clock.time())
        return outcome

    def _escalation(self, o: Outcome) -> Decision:
        """The DRAIN that follows a process no signal can end (audited as a note first)."""
        d = o.decision
        state = " in D state" if "D state" in o.detail else ""
        text = f"process {d.target.pid}{state} cannot be killed; draining node {d.target.node}"
        self.audit.note(text, rule=d.rule, node=d.target.node, pid=d.target.pid, escalated_from=str(d.action))
        log.warning("%s", text)
        return Decision(self.clock.time(), d.rule, d.severity, ActionKind.DRAIN, Target(d.target.node),
                        step=d.step + 1, params={"reason": f"{d.rule}: {text}"},
                        evidence={**d.evidence, "pid": d.target.pid, "escalated_from": str(d.action)})

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait (real time) until the queue is empty and the worker idle; False on timeout."""
        with self._q.all_tasks_done:
            return self._q.all_tasks_done.wait_for(lambda: self._q.unfinished_tasks == 0, timeout_s)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Let the worker finish what is queued, then stop it; False if it is still busy after `timeout_s`."""
        if self._worker is None or not self._worker.is_alive():
            return True
        try:
            self._q.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return False
        self._worker.join(timeout_s)
        return not self._worker.is_alive()
