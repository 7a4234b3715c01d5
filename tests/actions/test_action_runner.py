"""ActionRunner: audit before and after, dry-run, rate limit, circuit breaker, escalation, never blocking."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from coldaisle.actions import audit
from coldaisle.actions.audit import AuditLog
from coldaisle.actions.drain import SlurmDrain
from coldaisle.actions.fleet import FleetBreaker
from coldaisle.actions.interface import ActionKind, Decision, Executor, Status, Target
from coldaisle.actions.notify import WebhookNotifier
from coldaisle.actions.runner import ActionRunner
from coldaisle.actions.safety import KillPolicy, NeverKill, ProcessInfo, RateLimiter
from coldaisle.actions.signal import ProcessSignaller
from coldaisle.telemetry.clock import SimClock


def _d(action: ActionKind, node: str = "node-gpu-88", *, pid: int | None = None, starttime: int | None = None,
       restore: bool = False, **params: object) -> Decision:
    return Decision(time.time(), "runaway-python", "critical", action, Target(node, 2, pid=pid, starttime=starttime),
                    params=dict(params), restore=restore)


def test_dry_run_signals_nothing_and_audits_both(spawn, tmp_path: Path) -> None:
    p = spawn(["sleep", "60"], start_new_session=True)
    info = ProcessInfo.read(p.pid)
    sig = ProcessSignaller()
    runner = ActionRunner({ActionKind.SIGTERM: sig, ActionKind.SIGKILL: sig}, AuditLog(tmp_path / "a.jsonl"),
                          dry_run=True)
    outcome = runner.submit(_d(ActionKind.SIGTERM, pid=p.pid, starttime=info.starttime))
    assert outcome.status == Status.DRY_RUN
    assert outcome.detail == f"would have sent SIGTERM to pid {p.pid} (sleep) on node-gpu-88"
    time.sleep(0.05)
    assert p.poll() is None
    records = list(audit.read(tmp_path / "a.jsonl"))
    assert [r["kind"] for r in records] == ["decision", "outcome"]
    assert records[0]["target"]["pid"] == p.pid and records[1]["status"] == "dry_run"
    assert records[1]["detail"].startswith("would have sent SIGTERM")


def test_unkillable_process_escalates_to_a_drain(proc_tree: Path, scontrol, data: Path, tmp_path: Path) -> None:
    guard = NeverKill(KillPolicy(allow_users=frozenset({1000})), proc=proc_tree, agent_pid=4242, agent_uid=0)
    sig = ProcessSignaller(guard, proc=proc_tree, clock=SimClock())
    scontrol.shows(data / "scontrol-show-node-idle.txt")
    runner = ActionRunner({ActionKind.SIGKILL: sig, ActionKind.DRAIN: SlurmDrain(scontrol.path)},
                          AuditLog(tmp_path / "a.jsonl"))
    outcome = runner.submit(_d(ActionKind.SIGKILL, pid=12849, starttime=25919000))
    assert outcome.status == Status.FAILED and outcome.detail.startswith("unkillable: D state")
    text = "process 12849 in D state cannot be killed; draining node node-gpu-88"
    assert scontrol.calls()[-1][-1] == f"Reason=coldaisle: runaway-python: {text}"
    notes = [r for r in audit.read(tmp_path / "a.jsonl") if r["kind"] == "note"]
    assert notes[0]["text"] == text and notes[0]["pid"] == 12849
    assert [(o.decision.action, o.status) for o in runner.outcomes] == [
        (ActionKind.SIGKILL, Status.FAILED), (ActionKind.DRAIN, Status.DONE)]


def test_fleet_breaker_and_rate_limit_refuse_and_audit(recording, memory_fleet, tmp_path: Path) -> None:
    clock = SimClock()
    fleet, kill, notify = memory_fleet(128, clock), recording(ActionKind.SIGKILL), recording(ActionKind.NOTIFY)
    runner = ActionRunner({ActionKind.DRAIN: fleet, ActionKind.SIGKILL: kill, ActionKind.NOTIFY: notify},
                          AuditLog(tmp_path / "a.jsonl"), rate_limiter=RateLimiter(2, 60, clock),
                          breaker=FleetBreaker(fleet, 0.1, 600, clock, settle_s=0), clock=clock)
    statuses = [runner.submit(_d(ActionKind.DRAIN, f"node-{i:02d}")).status for i in range(14)]
    assert statuses == [Status.DONE] * 13 + [Status.REFUSED]
    assert "would exceed the fleet breaker" in runner.outcomes[-1].detail
    assert sum(v["unavailable"] for v in fleet.nodes.values()) == 13
    alert = notify.seen[-1][0]  # the refusal went out as an alert instead
    assert alert.target.node == "node-13" and "refused" in alert.params["reason"]
    assert alert.evidence["fleet"]["limit"] == 13
    kills = [runner.submit(_d(ActionKind.SIGKILL, pid=7)).status for _ in range(3)]
    assert kills == [Status.DONE, Status.DONE, Status.REFUSED]
    assert runner.submit(_d(ActionKind.SIGKILL, pid=7, restore=True)).status == Status.DONE  # undo is never limited
    records = list(audit.read(tmp_path / "a.jsonl"))
    refused = [r for r in records if r.get("status") == "refused"]
    assert len(refused) == 2 and runner.counts[("drain", "refused")] == 1
    note = next(r for r in records if r.get("text") == "fleet breaker refused a drain")
    assert (note["fleet"], note["limit"], note["coldaisle_recent"], note["other_unavailable"]) == (128, 13, 13, 0)


def test_an_executor_that_raises_does_not_stop_the_runner(recording, tmp_path: Path) -> None:
    runner = ActionRunner({ActionKind.NOTIFY: recording(ActionKind.NOTIFY, raises=True),
                           ActionKind.DRAIN: recording(ActionKind.DRAIN)}, AuditLog(tmp_path / "a.jsonl"))
    bad = runner.submit(_d(ActionKind.NOTIFY))
    assert bad.status == Status.FAILED and bad.detail == "executor raised RuntimeError: boom"
    assert runner.submit(_d(ActionKind.DRAIN)).status == Status.DONE
    assert runner.submit(_d(ActionKind.POWER_CAP)).detail == "no executor for power_cap is configured"


def test_hanging_webhook_never_delays_submit(receiver, tmp_path: Path) -> None:
    receiver.hang = threading.Event()  # the server sleeps up to 10 s on every request
    hook = WebhookNotifier(receiver.url, retries=0, timeout_s=0.5)
    runner = ActionRunner({ActionKind.NOTIFY: hook}, AuditLog(tmp_path / "a.jsonl"), asynchronous=True)
    worst = 0.0
    for _ in range(20):
        t0 = time.perf_counter()
        assert runner.submit(_d(ActionKind.NOTIFY)) is None
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 0.05, worst
    assert receiver.got.wait(5)
    assert runner.flush(5) and runner.close(5)
    receiver.release.set()
    hook.close(2)


def test_slow_scontrol_never_delays_submit_and_a_full_queue_drops(scontrol, data: Path, tmp_path: Path) -> None:
    scontrol.shows(data / "scontrol-show-node-idle.txt")
    scontrol.delay(0.15)
    runner = ActionRunner({ActionKind.DRAIN: SlurmDrain(scontrol.path)}, AuditLog(tmp_path / "a.jsonl"),
                          asynchronous=True, queue_size=2)
    t0 = time.perf_counter()
    for i in range(5):
        runner.submit(_d(ActionKind.DRAIN, f"node-gpu-{i:02d}"))
    assert time.perf_counter() - t0 < 0.05
    assert runner.dropped in (2, 3)  # one in the worker's hands (if it got there first), two queued
    assert runner.close(5)
    notes = [r for r in audit.read(tmp_path / "a.jsonl") if r["kind"] == "note"]
    assert len(notes) == runner.dropped and notes[0]["text"].startswith("action queue full (2)")
    assert notes[0]["decision"]["action"] == "drain"
    assert [o.status for o in runner.outcomes] == [Status.DONE] * (5 - runner.dropped)


def test_dry_run_escalation_only_describes_the_drain(proc_tree: Path, scontrol, data: Path, tmp_path: Path) -> None:
    guard = NeverKill(KillPolicy(allow_users=frozenset({1000})), proc=proc_tree, agent_pid=4242, agent_uid=0)
    scontrol.shows(data / "scontrol-show-node-idle.txt")
    runner = ActionRunner({ActionKind.SIGTERM: ProcessSignaller(guard, proc=proc_tree, clock=SimClock()),
                           ActionKind.DRAIN: SlurmDrain(scontrol.path)}, AuditLog(tmp_path / "a.jsonl"), dry_run=True)
    runner.submit(_d(ActionKind.SIGTERM, pid=12849))
    assert [(o.decision.action, o.status) for o in runner.outcomes] == [
        (ActionKind.SIGTERM, Status.FAILED), (ActionKind.DRAIN, Status.DRY_RUN)]
    assert [c[0] for c in scontrol.calls()] == ["show"]  # read, never updated


def test_every_executor_meets_the_protocol(tmp_path: Path, receiver) -> None:
    from coldaisle.actions.k8s import KubernetesDrain
    from coldaisle.actions.notify import LogNotifier
    from coldaisle.actions.powercap import PowerCapper
    from coldaisle.sim.backend import SimBackend
    from coldaisle.sim.executors import SimDrain, SimSignaller
    from coldaisle.sim.run import load_plan
    from coldaisle.sim.twin import Twin

    twin = Twin(load_plan("single-node-fan-failure"))
    hook = WebhookNotifier(receiver.url)
    executors = [ProcessSignaller(), PowerCapper(SimBackend(twin)), SlurmDrain(), KubernetesDrain(),
                 LogNotifier(), hook, SimSignaller(twin), SimDrain(twin)]
    hook.close()
    assert all(isinstance(e, Executor) for e in executors)
    assert {e.kind for e in executors} == {ActionKind.SIGTERM, ActionKind.POWER_CAP, ActionKind.DRAIN,
                                           ActionKind.NOTIFY}
