"""The engine over time: `for` timers, escalation ladders, hysteresis, restores, cooldowns, rate limits,
vanished subjects, failing rules, job stragglers and the concrete targets each Decision names.

Every test feeds hand-built Frames at chosen monotonic times and reads the Decisions back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from policy_frames import DEFAULT_W, MAX_W, MIN_W, WALL0, Cluster, Procs

from coldaisle.actions.interface import ActionKind, Decision
from coldaisle.policy.compiler import Expr
from coldaisle.policy.context import EvalContext
from coldaisle.policy.engine import Engine
from coldaisle.policy.history import History
from coldaisle.policy.loader import load_policy, parse_policy

NOTIFY, CAP, TERM, KILL, DRAIN = (ActionKind.NOTIFY, ActionKind.POWER_CAP, ActionKind.SIGTERM,
                                  ActionKind.SIGKILL, ActionKind.DRAIN)


class Run:
    """An Engine over a policy and a Cluster, stepped at chosen monotonic times."""

    def __init__(self, policy_text: str, cluster: Cluster | None = None, *, rules: Sequence[Any] | None = None
                 ) -> None:
        self.lp = parse_policy(policy_text, "test.yaml") if policy_text else None
        self.notes: list[str] = []
        self.now = 0.0
        compiled = list(rules) if rules is not None else self.lp.rules  # type: ignore[union-attr]
        self.engine = Engine(compiled, wall=lambda: WALL0 + self.now, note=self.notes.append)
        self.cluster = cluster or Cluster()
        windows: dict[str, float] = {}
        for cr in compiled:
            windows.update(cr.windows)
        self.history = History(windows)
        self.log: list[tuple[float, Decision]] = []

    def step(self, t: float, *, procs: Procs | None = None, node_values: dict[str, Sequence[float]] | None = None,
             job_values: dict[str, Sequence[float]] | None = None, **columns: Any) -> list[Decision]:
        """Evaluate one sample at monotonic `t`; the Decisions are returned and logged with their time."""
        self.now = t
        f = self.cluster.frame(t, procs=procs, **columns)
        ctx = self.cluster.context(f, node_values=node_values, job_values=job_values, history=self.history)
        out = self.engine.evaluate(ctx)
        self.log += [(t, d) for d in out]
        return out

    def ctx_step(self, ctx: EvalContext) -> list[Decision]:
        """Evaluate a context built by the test."""
        self.now = ctx.now
        out = self.engine.evaluate(ctx)
        self.log += [(ctx.now, d) for d in out]
        return out

    def timeline(self) -> list[tuple[float, str, int | None]]:
        """(time, action[+restore], device) of every Decision so far."""
        return [(t, str(d.action) + ("+restore" if d.restore else ""), d.target.device) for t, d in self.log]


def one_rule(body: str, *, scope: str = "device") -> str:
    return f"rules:\n  - name: r\n    scope: {scope}\n{body}"


HOT_FOR_10 = one_rule("""\
    when: temperature_c > 80
    for: 10 s
    actions: [{do: notify}]
""")


def temps(hot: Sequence[int], n: int = 4, hot_c: float = 90.0, cool_c: float = 50.0) -> list[float]:
    return [hot_c if i in hot else cool_c for i in range(n)]


# -- for -------------------------------------------------------------------------------------------------
def test_for_delays_firing_exactly() -> None:
    r = Run(HOT_FOR_10)
    for t in range(0, 31):
        r.step(t, temperature_c=temps([1] if t >= 3 else []))
    assert r.timeline() == [(13, "notify", 1)]
    d = r.log[0][1]
    assert (d.rule, d.severity, d.step, d.time) == ("r", "warning", 0, WALL0 + 13)
    assert d.target.node == "n1" and d.target.uuid == "GPU-test-n1-1"


def test_for_is_measured_on_the_monotonic_clock_at_any_sampling_rate() -> None:
    r = Run(HOT_FOR_10)
    times = [round(0.4 * k, 6) for k in range(0, 60)]
    for t in times:
        r.step(t, temperature_c=temps([0] if t >= 1.2 else []))
    assert r.timeline() == [(11.2, "notify", 0)]


def test_pending_rules_are_visible_with_time_to_fire() -> None:
    r = Run(HOT_FOR_10)
    r.step(0, temperature_c=temps([0, 2]))
    r.step(4, temperature_c=temps([0, 2]))
    (view,) = r.engine.views(4.0)
    assert (view.name, view.pending, view.firing, view.next_fire_in_s) == ("r", 2, 0, 6.0)
    r.step(10, temperature_c=temps([0, 2]))
    (view,) = r.engine.views(10.0)
    assert (view.pending, view.firing, view.next_fire_in_s) == (0, 2, None)


def test_a_blip_shorter_than_for_never_fires_and_the_timer_restarts() -> None:
    r = Run(HOT_FOR_10)
    for t in range(0, 24):
        hot = 3 <= t <= 11 or t >= 14  # 9 s hot (8 s held), one cool sample, then hot again
        r.step(t, temperature_c=temps([2] if hot else []))
    assert r.timeline() == []
    r.step(24, temperature_c=temps([2]))
    assert r.timeline() == [(24, "notify", 2)]


def test_an_unknown_reading_breaks_the_for_timer() -> None:
    r = Run(HOT_FOR_10)
    for t in range(0, 20):
        r.step(t, temperature_c=[float("nan") if t == 6 else 90.0, 50, 50, 50])
    assert r.timeline() == [(17, "notify", 0)]


# -- ladder ----------------------------------------------------------------------------------------------
LADDER = one_rule("""\
    when: temperature_c > 80
    for: 0 s
    actions:
      - {do: notify}
      - {do: power_cap, fraction: 0.5, after: 10 s}
      - {do: sigterm, after: 30 s}
      - {do: sigkill, after: 60 s}
""")
PROC = Procs(device=[0], pid=[4242], memory=[1e9])


def test_ladder_rungs_fire_at_their_after_offsets_while_the_condition_holds() -> None:
    r = Run(LADDER)
    for t in range(0, 120):
        r.step(t, temperature_c=temps([0] if t >= 5 else []), procs=PROC)
    assert r.timeline() == [(5, "notify", 0), (15, "power_cap", 0), (35, "sigterm", 0), (65, "sigkill", 0)]
    assert [d.step for _, d in r.log] == [0, 1, 2, 3]
    assert r.log[2][1].target.pid == 4242


def test_ladder_stops_when_the_condition_stops() -> None:
    r = Run(LADDER)
    for t in range(0, 120):
        r.step(t, temperature_c=temps([0] if t <= 40 else []), procs=PROC)
    # no `clear`: the rule clears as soon as `when` is false; the cap is restored, nothing is killed
    assert r.timeline() == [(0, "notify", 0), (10, "power_cap", 0), (30, "sigterm", 0), (41, "power_cap+restore", 0)]


def test_several_rungs_due_at_once_fire_in_order_at_the_same_sample() -> None:
    r = Run(LADDER)
    r.step(0, temperature_c=temps([0]), procs=PROC)
    r.step(100, temperature_c=temps([0]), procs=PROC)  # a long gap between samples
    assert r.timeline() == [(0, "notify", 0), (100, "power_cap", 0), (100, "sigterm", 0), (100, "sigkill", 0)]


HYSTERESIS = one_rule("""\
    when: temperature_c >= 80
    clear: temperature_c < 70
    for: 0 s
    cooldown: 0 s
    actions:
      - {do: notify}
      - {do: power_cap, fraction: 0.5}
      - {do: power_cap, to_min: true, after: 20 s}
      - {do: sigterm, after: 60 s}
""")


def hysteresis_run(profile: Sequence[tuple[float, float]], end: int) -> Run:
    """GPU 0's temperature follows `profile` [(from_t, temp)...]; other GPUs stay cool."""
    r = Run(HYSTERESIS)
    for t in range(0, end):
        temp = [c for start, c in profile if t >= start][-1]
        r.step(t, temperature_c=[temp, 40, 40, 40], procs=PROC)
    return r


def test_hysteresis_no_clear_between_the_thresholds() -> None:
    r = hysteresis_run([(0, 85), (5, 75)], 200)  # fires at 0, then sits between clear (70) and when (80)
    assert [x for x in r.timeline() if x[1] == "power_cap+restore"] == []
    assert r.engine.views(200.0)[0].firing == 1
    r = hysteresis_run([(0, 85), (5, 75), (50, 69)], 60)
    assert r.timeline()[-1] == (50, "power_cap+restore", 0)
    assert r.engine.views(60.0)[0].firing == 0


def test_hysteresis_the_ladder_does_not_escalate_between_the_thresholds() -> None:
    """The caps worked (75 C is under the trigger): the rule keeps firing, but no harsher rung is taken."""
    r = hysteresis_run([(0, 85), (5, 75)], 200)
    assert r.timeline() == [(0, "notify", 0), (0, "power_cap", 0)]


def test_power_caps_are_restored_once_on_clear_for_the_same_device() -> None:
    r = hysteresis_run([(0, 85), (50, 60)], 60)
    caps = [d for _, d in r.log if d.action == CAP and not d.restore]
    restores = [(t, d) for t, d in r.log if d.restore]
    assert [d.params["watts"] for d in caps] == [0.5 * DEFAULT_W, MIN_W]
    assert len(restores) == 1  # one restore per device, however many caps were applied
    t, restore = restores[0]
    assert t == 50
    assert restore.action == CAP and restore.rule == "r" and restore.severity == "warning"
    assert (restore.target.node, restore.target.device, restore.target.uuid) == (
        caps[0].target.node, caps[0].target.device, caps[0].target.uuid)
    assert restore.time == WALL0 + 50


def test_node_rule_caps_every_gpu_of_the_node_and_restores_each() -> None:
    r = Run(one_rule("""\
    when: inlet_c > 35
    clear: inlet_c < 30
    for: 0 s
    actions: [{do: power_cap, fraction: 0.7}]
""", scope="node"))
    r.step(0, node_values={"inlet_c": [25, 40]})
    r.step(1, node_values={"inlet_c": [25, 33]})
    r.step(2, node_values={"inlet_c": [25, 29]})
    assert r.timeline() == [(0, "power_cap", 2), (0, "power_cap", 3), (2, "power_cap+restore", 2),
                            (2, "power_cap+restore", 3)]
    assert {d.target.node for _, d in r.log} == {"n2"}
    assert r.log[0][1].params["watts"] == pytest.approx(0.7 * DEFAULT_W)


# -- cooldown --------------------------------------------------------------------------------------------
def test_cooldown_prevents_refiring_for_its_period_then_allows_it() -> None:
    r = Run(one_rule("""\
    when: temperature_c > 80
    for: 0 s
    cooldown: 60 s
    actions: [{do: notify}]
"""))
    for t in range(0, 100):
        hot = [0] if (t < 5 or t >= 10) else []
        if t >= 20:
            hot = [*hot, 1]
        r.step(t, temperature_c=temps(hot))
    # GPU 0 cleared at 5: cooldown until 65; GPU 1 has its own (no) cooldown
    assert r.timeline() == [(0, "notify", 0), (20, "notify", 1), (65, "notify", 0)]


def test_cooldown_also_blocks_the_for_timer() -> None:
    r = Run(one_rule("""\
    when: temperature_c > 80
    for: 10 s
    cooldown: 30 s
    actions: [{do: notify}]
"""))
    for t in range(0, 80):
        r.step(t, temperature_c=temps([0] if not 12 <= t < 15 else []))
    # fired at 10, cleared at 12 (cooldown to 42): pending again from 42, fires at 52
    assert r.timeline() == [(10, "notify", 0), (52, "notify", 0)]


# -- hourly limit ----------------------------------------------------------------------------------------
RATE_LIMITED = one_rule("""\
    when: temperature_c > 80
    for: 0 s
    cooldown: 0 s
    max_actions_per_hour: 2
    actions:
      - {do: notify}
      - {do: power_cap, watts: 400 W}
      - {do: sigterm}
      - {do: drain, after: 5 s}
""")
FOUR_PROCS = Procs(device=[0, 1, 2, 3], pid=[10, 11, 12, 13])


def test_hourly_limit_suppresses_kills_and_drains_but_not_notify_or_caps() -> None:
    r = Run(RATE_LIMITED)
    for t in range(0, 10):
        r.step(t, temperature_c=temps([0, 1, 2, 3]), procs=FOUR_PROCS)
    kinds = [a for _, a, _ in r.timeline()]
    assert kinds.count("notify") == 4
    assert kinds.count("power_cap") == 4
    assert [(t, d.target.pid) for t, d in r.log if d.action == TERM] == [(0, 10), (0, 11)]
    assert [d for _, d in r.log if d.action == DRAIN] == []  # the limit was spent on the two kills
    assert r.notes and all("rule r: hourly action limit (2) reached" in n for n in r.notes)


def test_hourly_limit_frees_up_an_hour_later() -> None:
    r = Run(RATE_LIMITED)
    r.step(0, temperature_c=temps([0, 1, 2]), procs=FOUR_PROCS)
    r.step(1, temperature_c=temps([]), procs=FOUR_PROCS)  # everything clears
    r.step(3599, temperature_c=temps([3]), procs=FOUR_PROCS)
    assert [d.target.pid for _, d in r.log if d.action == TERM] == [10, 11]
    assert [a for t, a, _ in r.timeline() if t == 3599] == ["notify", "power_cap"]
    r.step(3600, temperature_c=temps([2, 3]), procs=FOUR_PROCS)
    assert 12 in [d.target.pid for t, d in r.log if d.action == TERM and t == 3600]


def test_held_back_kills_wait_unbuilt_while_the_limit_is_spent_and_go_out_when_it_frees(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A hang on every rank past a kill rule's limit: the held-back kills are not rebuilt every sample while the
    hour's actions are spent (at fleet scale that was most of a protected run), and go out when it frees."""
    import coldaisle.policy.engine as engine_module

    built: list[float] = []
    real = engine_module.decisions_for

    def counting(cr: Any, rung: Any, step: int, ctx: EvalContext, i: int, now: float) -> list[Decision]:
        built.append(ctx.now)
        return real(cr, rung, step, ctx, i, now)

    monkeypatch.setattr(engine_module, "decisions_for", counting)
    r = Run(RATE_LIMITED)
    for t in range(0, 3601, 5):
        r.step(t, temperature_c=temps([0, 1, 2, 3]), procs=FOUR_PROCS)
    # two kills at once; the other two kills and the four drains (due at 5 s) held back; the two slots that free
    # an hour later go to the first two held back
    assert [(t, d.action, d.target.pid) for t, d in r.log if d.action in (TERM, DRAIN)] == [
        (0, TERM, 10), (0, TERM, 11), (3600, DRAIN, None), (3600, DRAIN, None)]
    assert len(r.notes) == 2 and all("hourly action limit (2) reached" in n for n in r.notes)  # at 0 and 3600
    assert [t for t in built if 0 < t < 3600] == [5] * 6  # the four drains as they came due, with the two held
    # kills retried beside them; nothing after that while the hour's actions stay spent


def test_a_rate_limited_kill_does_not_hold_back_a_later_power_cap() -> None:
    r = Run(one_rule("""\
    when: temperature_c > 80
    for: 0 s
    max_actions_per_hour: 1
    actions:
      - {do: notify}
      - {do: sigterm}
      - {do: power_cap, fraction: 0.5, after: 5 s}
"""))
    for t in range(0, 10):
        r.step(t, temperature_c=temps([0, 1]), procs=FOUR_PROCS)
    assert [d.target.pid for _, d in r.log if d.action == TERM] == [10]
    assert [(t, dev) for t, a, dev in r.timeline() if a == "power_cap"] == [(5, 0), (5, 1)]


# -- subjects that go away, rules that fail ---------------------------------------------------------------
PROCESS_RULE = one_rule("""\
    when: process_power_w > 600
    for: 10 s
    actions:
      - {do: notify}
      - {do: sigterm, after: 20 s}
""", scope="process")


def test_a_process_that_ends_while_pending_is_dropped_silently() -> None:
    r = Run(PROCESS_RULE)
    p = Procs(device=[0], pid=[7], memory=[1e9])
    for t in range(0, 6):
        r.step(t, power_w=700, procs=p)
    r.step(6, power_w=700)  # the process exited
    assert r.engine.tracks["r"] == {}
    for t in range(7, 17):
        r.step(t, power_w=700, procs=p)  # a new process with the same pid starts over
    assert r.timeline() == []
    r.step(17, power_w=700, procs=p)
    assert r.timeline() == [(17, "notify", 0)]
    assert r.notes == []


def test_a_firing_process_that_ends_gets_no_further_rungs_and_no_error() -> None:
    r = Run(PROCESS_RULE)
    p = Procs(device=[1], pid=[77], memory=[1e9])
    for t in range(0, 60):
        r.step(t, power_w=700, procs=p if t < 15 else None)
    assert r.timeline() == [(10, "notify", 1)]
    assert r.engine.tracks["r"] == {} and r.notes == []


def test_a_failing_rule_is_noted_once_and_the_others_still_decide() -> None:
    r = Run("""\
rules:
  - name: inlet
    when: inlet_c > 30
    for: 0 s
    actions: [{do: notify}]
  - name: hot
    when: temperature_c > 80
    for: 0 s
    actions: [{do: notify}]
""")
    c = r.cluster
    for t in range(3):
        f = c.frame(t, temperature_c=temps([1]))
        # one inlet value for two nodes: gathering it onto GPUs of n2 raises IndexError inside numpy
        r.ctx_step(c.context(f, node_values={"inlet_c": [40.0]}))
    assert [(t, d.rule, d.target.device) for t, d in r.log] == [(0, "hot", 1)]
    assert len(r.notes) == 1
    assert r.notes[0].startswith("rule inlet failed: IndexError")
    assert "inlet" in r.engine.errors
    r.ctx_step(c.context(c.frame(3, temperature_c=temps([1])), node_values={"inlet_c": [40.0, 20.0]}))
    assert [(t, d.rule) for t, d in r.log][-1] == (3, "inlet")
    assert r.engine.errors == {}


def test_a_rule_whose_compiled_condition_raises_does_not_stop_the_others() -> None:
    lp = parse_policy("""\
rules:
  - name: broken
    when: temperature_c > 0
    actions: [{do: notify}]
  - name: hot
    when: temperature_c > 80
    actions: [{do: notify}]
""")

    def boom(ctx: EvalContext) -> np.ndarray:
        raise ZeroDivisionError("synthetic")

    broken = dataclasses.replace(lp.rules[0], when=Expr(boom, "device", "bool"))
    r = Run("", rules=[broken, lp.rules[1]])
    r.step(0, temperature_c=temps([3]))
    r.step(1, temperature_c=temps([3]))
    assert r.timeline() == [(0, "notify", 3)]
    assert r.notes == ["rule broken failed: ZeroDivisionError: synthetic"]


# -- jobs and stragglers --------------------------------------------------------------------------------
def hung_job() -> tuple[Run, dict[str, Any]]:
    """Job `train` on n1+n2 (16 GPUs) hangs in a collective; n2/gpu2 is the rank that stopped.

    Job `serve` on n3 is healthy. GPU 5 has a second process (a data loader) of the same job.
    """
    lp = load_policy("default")
    (rule,) = [cr for cr in lp.rules if cr.rule.name == "collective-hang"]
    c = Cluster(nodes=("n1", "n2", "n3"), gpus_per_node=8, job_names=("train", "serve"),
                job_of_device=[0] * 16 + [1] * 8)
    r = Run("", c, rules=[rule])
    straggler = 8 + 2
    util = [100.0] * 16 + [95.0] * 8
    util[straggler] = 2.0
    mem_util = [0.0] * 16 + [55.0] * 8
    mem_util[straggler] = 1.0
    pids = [1000 + g for g in range(24)] + [5555]
    procs = Procs(device=[*range(24), 5], pid=pids, memory=[1e9] * 25)
    frame = {"utilization_gpu": util, "utilization_memory": mem_util, "pcie_rx_bytes_per_s": 2e5,
             "nvlink_rx_bytes_per_s": 0.0, "temperature_c": 50.0, "procs": procs,
             "job_values": {"job_progress_age_s": [120.0, 0.0]}}
    return r, frame


def test_job_rule_drains_only_the_straggler_node_and_stops_every_process_of_the_job() -> None:
    r, frame = hung_job()
    for t in range(0, 45):
        r.step(t, **frame)
    first = [d for t, d in r.log if t == 10]
    assert [t for t, _ in r.log if t != 10] == [40] * 17  # sigkill 30 s later, same processes
    assert [d.action for d in first if d.action in (NOTIFY, DRAIN)] == [NOTIFY, DRAIN]
    (drain,) = [d for d in first if d.action == DRAIN]
    assert drain.target.node == "n2" and drain.target.device is None
    terms = [d for d in first if d.action == TERM]
    assert sorted(d.target.pid for d in terms) == sorted([1000 + g for g in range(16)] + [5555])
    assert all(d.target.job == "train" for d in terms)
    assert {(d.target.node, d.target.device) for d in terms if d.target.pid == 5555} == {("n1", 5)}
    assert all(d.params["group"] is True for d in terms)
    assert not any(d.target.job == "serve" for _, d in r.log)


def test_job_rule_evidence_names_the_stragglers() -> None:
    r, frame = hung_job()
    for t in range(0, 11):
        r.step(t, **frame)
    notify = next(d for _, d in r.log if d.action == NOTIFY)
    ev = notify.evidence
    assert ev["stragglers"] == ["n2/gpu2"]
    assert (ev["job"], ev["gpus"], ev["matching"]) == ("train", 16, 15)
    assert ev["job_progress_age_s"] == 120.0
    assert notify.target.job == "train"
    for d in (x for _, x in r.log):
        assert "n2/gpu2" in d.params["reason"]
        assert d.params["reason"].startswith("collective-hang: job train: 15 of 16 GPUs match")


def test_a_progressing_job_does_not_fire_even_when_every_gpu_spins() -> None:
    r, frame = hung_job()
    frame["job_values"] = {"job_progress_age_s": [3.0, 0.0]}
    for t in range(0, 30):
        r.step(t, **frame)
    assert r.log == []


# -- targets ---------------------------------------------------------------------------------------------
def test_process_scope_targets_carry_the_pid_and_evidence() -> None:
    lp = load_policy("default")
    (rule,) = [cr for cr in lp.rules if cr.rule.name == "runaway-power-process"]
    r = Run("", rules=[rule])
    p = Procs(device=[0, 3, 3], pid=[11, 12851, 12852], memory=[1e9, 3e9, 1e9])
    for t in range(0, 11):
        r.step(t, power_w=[300, 100, 100, 1000], utilization_memory=[50, 0, 0, 0], procs=p)
    assert r.timeline() == [(10, "notify", 3), (10, "sigterm", 3)]
    d = r.log[1][1]
    assert (d.target.node, d.target.device, d.target.pid) == ("n2", 3, 12851)
    assert d.params["group"] is True
    assert d.target.uuid == "GPU-test-n2-1"
    assert d.evidence["pid"] == 12851
    assert d.evidence["process_power_w"] == 750.0
    assert d.evidence["gpu"] == "n2/gpu1"
    for t in range(11, 31):
        r.step(t, power_w=[300, 100, 100, 1000], utilization_memory=[50, 0, 0, 0], procs=p)
    assert [(t, d.action, d.target.pid) for t, d in r.log] == [(10, NOTIFY, 12851), (10, TERM, 12851),
                                                                 (30, KILL, 12851)]


def test_device_scope_kill_targets_every_process_on_the_gpu() -> None:
    r = Run(one_rule("""\
    when: temperature_c > 80
    actions: [{do: sigkill}]
"""))
    r.step(0, temperature_c=temps([2]), procs=Procs(device=[0, 2, 2], pid=[5, 6, 7]))
    assert [(d.target.device, d.target.pid) for _, d in r.log] == [(2, 6), (2, 7)]


def test_power_cap_watts_from_fraction_to_min_or_watts_are_clamped_to_the_device_limits() -> None:
    r = Run(one_rule("""\
    when: temperature_c > 80
    actions:
      - {do: power_cap, fraction: 0.5}
      - {do: power_cap, to_min: true, after: 1 s}
      - {do: power_cap, watts: 1000 W, after: 2 s}
      - {do: power_cap, watts: 50 W, after: 3 s}
      - {do: power_cap, fraction: 0.1, after: 4 s}
      - {do: power_cap, watts: 0.45 kW, after: 5 s}
"""))
    for t in range(0, 6):
        r.step(t, temperature_c=temps([1]))
    assert [d.params["watts"] for _, d in r.log] == [0.5 * DEFAULT_W, MIN_W, MAX_W, MIN_W, MIN_W, 450.0]
    assert all(d.target.device == 1 for _, d in r.log)
