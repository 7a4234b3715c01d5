"""The condition compiler: text -> vectorised numpy over every subject at once, and nothing else ever runs.

Masks are checked on hand-built Frames (every value chosen by the test) for device, process, node and job
rules; unsafe or ill-typed conditions must be refused at load with a CompileError that says why and where.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from policy_frames import WALL0, Cluster, Procs

from coldaisle.errors import ConfigError
from coldaisle.policy.compiler import CompileError, Compiler
from coldaisle.policy.context import EvalContext
from coldaisle.policy.history import History
from coldaisle.policy.loader import parse_policy
from coldaisle.policy.schema import Scope
from coldaisle.telemetry.frame import ThrottleReason

NAN = float("nan")


def run(text: str, ctx: EvalContext, scope: Scope = Scope.DEVICE, want: str = "bool") -> np.ndarray:
    """Compile `text` for `scope` and evaluate it on `ctx`."""
    expr = Compiler(scope).compile(text, want=want)
    assert expr.level == str(scope)
    return np.asarray(expr.fn(ctx))


def mask(text: str, ctx: EvalContext, scope: Scope = Scope.DEVICE) -> list[bool]:
    """The boolean result as a plain list (one per subject)."""
    out = run(text, ctx, scope)
    assert out.dtype == bool
    return [bool(x) for x in out]


def values(text: str, ctx: EvalContext, scope: Scope = Scope.DEVICE) -> list[float]:
    """The numeric result as a plain list (one per subject)."""
    return [float(x) for x in run(text, ctx, scope, want="num")]


def policy(rule_yaml: str) -> str:
    """A one-rule policy around the indented rule body."""
    return "rules:\n  - name: r\n    actions: [{do: notify}]\n" + rule_yaml


# -- device rules ---------------------------------------------------------------------------------------
@pytest.fixture
def four() -> tuple[Cluster, EvalContext]:
    """Four GPUs on two nodes: cool, warm, hot and one whose readings are unknown (NaN)."""
    c = Cluster()
    f = c.frame(temperature_c=[40, 70, 85, NAN], power_w=[100, 400, 690, NAN], power_limit_w=700,
                memory_used_bytes=[1 * 2**30, 30 * 2**30, 75 * 2**30, NAN], memory_total_bytes=80 * 2**30,
                utilization_gpu=[0, 50, 100, NAN])
    return c, c.context(f)


def test_a_comparison_is_a_mask_over_every_gpu(four: tuple[Cluster, EvalContext]) -> None:
    _, ctx = four
    assert mask("temperature_c > 60", ctx) == [False, True, True, False]
    assert mask("temperature_c <= 70", ctx) == [True, True, False, False]
    assert mask("temperature_c == 85", ctx) == [False, False, True, False]
    assert mask("temperature_c != 85", ctx) == [True, True, False, True]  # NaN != 85 is true, as in IEEE


def test_arithmetic_follows_precedence_and_unary_minus(four: tuple[Cluster, EvalContext]) -> None:
    _, ctx = four
    assert values("power_w / power_limit_w", ctx) == pytest.approx([1 / 7, 4 / 7, 690 / 700, NAN], nan_ok=True)
    assert values("temperature_c - 10 * 2 + 4 / 2", ctx) == pytest.approx([22, 52, 67, NAN], nan_ok=True)
    assert values("(temperature_c - 10) * 2", ctx) == pytest.approx([60, 120, 150, NAN], nan_ok=True)
    assert mask("-temperature_c < -80", ctx) == [False, False, True, False]
    assert mask("power_w / power_limit_w > 0.9", ctx) == [False, False, True, False]


def test_division_by_zero_gives_inf_or_nan_without_raising(four: tuple[Cluster, EvalContext]) -> None:
    _, ctx = four
    with np.errstate(all="raise"):
        out = values("power_w / (utilization_gpu - utilization_gpu)", ctx)
    assert out[:3] == [np.inf] * 3 and np.isnan(out[3])
    with np.errstate(all="raise"):
        assert mask("power_w / (utilization_gpu - utilization_gpu) > 1", ctx) == [True, True, True, False]


def test_chained_comparisons_are_all_of_their_links(four: tuple[Cluster, EvalContext]) -> None:
    _, ctx = four
    assert mask("50 < temperature_c <= 85", ctx) == [False, True, True, False]
    assert mask("0 <= utilization_gpu < 60 < temperature_c", ctx) == [False, True, False, False]


def test_membership_in_a_tuple_or_list_of_numbers() -> None:
    c = Cluster()
    ctx = c.context(c.frame(), xid=[48, 79, 13, NAN])
    assert mask("xid in (48, 79)", ctx) == [True, True, False, False]
    assert mask("xid in [13]", ctx) == [False, False, True, False]
    assert mask("xid not in (48, 79)", ctx) == [False, False, True, True]


def test_not_and_or(four: tuple[Cluster, EvalContext]) -> None:
    _, ctx = four
    assert mask("not temperature_c > 60", ctx) == [True, False, False, True]
    assert mask("temperature_c > 60 and power_w > 500", ctx) == [False, False, True, False]
    assert mask("temperature_c < 50 or power_w > 500", ctx) == [True, False, True, False]
    assert mask("temperature_c < 50 or temperature_c > 80 or utilization_gpu == 50", ctx) == [True, True, True, False]


def test_nan_compares_false_and_not_of_a_limit_counts_unknown_as_below(four: tuple[Cluster, EvalContext]) -> None:
    _, ctx = four
    for op in (">", ">=", "<", "<=", "=="):
        assert mask(f"temperature_c {op} 85", ctx)[3] is False, op
    assert mask("not (temperature_c >= 80)", ctx) == [True, True, False, True]
    assert mask("known(temperature_c)", ctx) == [True, True, True, False]
    assert mask("not known(temperature_c) or temperature_c > 80", ctx) == [False, False, True, True]


def test_derived_device_columns() -> None:
    c = Cluster()
    thermal = int(ThrottleReason.HW_THERMAL_SLOWDOWN)
    power = int(ThrottleReason.SW_POWER_CAP)
    f = c.frame(lost=[False, True, False, False], throttle_reasons=[0, 0, thermal, power | thermal])
    ctx = c.context(f)
    assert mask("lost > 0", ctx) == [False, True, False, False]
    assert mask("thermal_throttled == 1", ctx) == [False, False, True, True]
    assert mask("power_capped == 1", ctx) == [False, False, False, True]
    assert values("slowdown_c + shutdown_c", ctx) == [87 + 92] * 4
    assert values("power_max_limit_w - power_min_limit_w + power_default_limit_w", ctx) == [1200.0] * 4


def test_constants_are_base_unit_multipliers(four: tuple[Cluster, EvalContext]) -> None:
    _, ctx = four
    assert mask("memory_used_bytes > 70 * GiB", ctx) == [False, False, True, False]
    assert mask("memory_used_bytes >= 30 * GiB", ctx) == [False, True, True, False]
    assert mask("power_w > 0.5 * kW", ctx) == [False, False, True, False]
    assert values("GiB / MiB + KB / KiB * 0 + GB / MB + TiB / TB * 0 + kW", ctx) == [1024 + 1000 + 1000] * 4


def test_a_constant_only_condition_is_broadcast_to_every_subject(four: tuple[Cluster, EvalContext]) -> None:
    _, ctx = four
    assert mask("1 < 2", ctx) == [True] * 4
    assert mask("GiB < MiB", ctx) == [False] * 4


@pytest.mark.parametrize(("text", "expected"), [
    ("1 < 2 or temperature_c > 80", [True, True, True, True]),
    ("1 > 2 and temperature_c > 80", [False, False, False, False]),
    ("temperature_c > 80 and 1 < 2", [False, False, True, False]),
    ("not (1 > 2) and temperature_c > 60", [False, True, True, False]),
])
def test_a_constant_part_of_a_condition_still_gives_one_answer_per_gpu(
        text: str, expected: list[bool], four: tuple[Cluster, EvalContext]) -> None:
    _, ctx = four
    assert np.shape(run(text, ctx)) == (4,)
    assert mask(text, ctx) == expected


# -- lets ------------------------------------------------------------------------------------------------
def test_lets_are_named_subconditions_and_numbers() -> None:
    lp = parse_policy(policy(
        "    let:\n"
        "      headroom: slowdown_c - temperature_c\n"
        "      busy: utilization_gpu >= 95\n"
        "    when: busy and headroom < 10\n"))
    c = Cluster()
    ctx = c.context(c.frame(temperature_c=[80, 80, 70, 80], utilization_gpu=[100, 50, 100, NAN]))
    assert [bool(x) for x in lp.rules[0].when.fn(ctx)] == [True, False, False, False]


def test_a_process_rule_can_name_process_columns_in_its_lets() -> None:
    """A let is a named part of the rule's own condition, so a process rule's let may use process columns."""
    lp = parse_policy(policy(
        "    scope: process\n"
        "    let:\n"
        "      hungry: process_power_w > 600\n"
        "    when: hungry and utilization_memory < 10\n"))
    c = Cluster()
    f = c.frame(power_w=[700, 700, 100, 100], utilization_memory=0,
                procs=Procs(device=[0, 1, 1, 2], pid=[10, 11, 12, 13], memory=[1.0, 1.0, 1.0, 1.0]))
    assert [bool(x) for x in lp.rules[0].when.fn(c.context(f))] == [True, False, False, False]


# -- process rules ---------------------------------------------------------------------------------------
def test_process_rule_gathers_device_and_node_values_onto_each_process() -> None:
    c = Cluster()
    procs = Procs(device=[0, 2, 2, 3], pid=[100, 200, 201, 300], memory=[10 * 2**30, 30 * 2**30, 10 * 2**30, 0])
    f = c.frame(temperature_c=[90, 40, 60, 90], power_w=[800, 0, 400, 300], procs=procs)
    ctx = c.context(f, node_values={"psi_memory_full": [0.0, 0.5]}, d_state=[0, 0, 1, 0])
    assert mask("temperature_c > 80", ctx, Scope.PROCESS) == [True, False, False, True]
    assert mask("psi_memory_full > 0.1", ctx, Scope.PROCESS) == [False, True, True, True]
    assert mask("process_d_state > 0", ctx, Scope.PROCESS) == [False, False, True, False]
    assert values("process_memory_bytes / GiB", ctx, Scope.PROCESS) == [10, 30, 10, 0]
    # device power is shared among its processes by memory used; a process alone on its GPU gets it all,
    # and processes with no memory recorded share equally
    assert values("process_power_w", ctx, Scope.PROCESS) == pytest.approx([800, 300, 100, 300])
    assert mask("process_power_w > 600 and temperature_c > 80", ctx, Scope.PROCESS) == [True, False, False, False]


def test_process_rule_with_no_processes_is_an_empty_mask() -> None:
    c = Cluster()
    ctx = c.context(c.frame(temperature_c=90))
    assert mask("temperature_c > 80 and process_power_w > 1", ctx, Scope.PROCESS) == []


# -- node rules ------------------------------------------------------------------------------------------
@pytest.fixture
def two_nodes() -> EvalContext:
    """n1: GPUs at 50 and 90 C; n2: 60 C and unknown. Node inlet 25 and 40 C."""
    c = Cluster()
    f = c.frame(temperature_c=[50, 90, 60, NAN], power_w=[100, 300, 200, NAN], utilization_gpu=[100, 100, 0, 100])
    return c.context(f, node_values={"inlet_c": [25, 40]})


def test_node_aggregates_over_its_gpus(two_nodes: EvalContext) -> None:
    ctx = two_nodes
    assert values("max(temperature_c)", ctx, Scope.NODE) == [90, 60]  # NaN ignored
    assert values("min(temperature_c)", ctx, Scope.NODE) == [50, 60]
    assert values("sum(power_w)", ctx, Scope.NODE) == [400, 200]
    assert values("count(utilization_gpu >= 95)", ctx, Scope.NODE) == [2, 1]
    assert values("share(utilization_gpu >= 95)", ctx, Scope.NODE) == [1.0, 0.5]
    assert values("share(temperature_c > 55)", ctx, Scope.NODE) == [0.5, 0.5]  # unknown counts as not matching
    assert mask("any(temperature_c > 80)", ctx, Scope.NODE) == [True, False]
    assert mask("all(utilization_gpu >= 95)", ctx, Scope.NODE) == [True, False]
    assert mask("max(temperature_c) > 80 or inlet_c > 35", ctx, Scope.NODE) == [True, True]
    assert mask("inlet_c > 35 and count(temperature_c > 0) >= 1", ctx, Scope.NODE) == [False, True]


def test_an_aggregate_of_a_constant_counts_every_gpu_of_the_node(two_nodes: EvalContext) -> None:
    """`count(1 > 0)` is the number of GPUs: a rule that compiles must also evaluate."""
    assert values("count(1 > 0)", two_nodes, Scope.NODE) == [2, 2]
    assert values("sum(2)", two_nodes, Scope.NODE) == [4, 4]
    assert mask("count(temperature_c > 55) >= count(1 > 0) / 2", two_nodes, Scope.NODE) == [True, True]


def test_mean_over_a_node_averages_the_known_readings(two_nodes: EvalContext) -> None:
    # max and min skip an unknown (NaN) reading; mean must not count it as 0 C.
    assert values("mean(temperature_c)", two_nodes, Scope.NODE)[0] == 70.0
    assert values("mean(temperature_c)", two_nodes, Scope.NODE)[1] == 60.0


def test_node_value_is_gathered_onto_each_gpu_in_a_device_rule(two_nodes: EvalContext) -> None:
    assert mask("inlet_c > 35", two_nodes) == [False, False, True, True]
    assert mask("inlet_c > 35 and temperature_c > 55", two_nodes) == [False, False, True, False]
    assert values("temperature_c - inlet_c", two_nodes) == pytest.approx([25, 65, 20, NAN], nan_ok=True)


def test_unknown_node_signal_is_nan_everywhere() -> None:
    c = Cluster()
    ctx = c.context(c.frame(temperature_c=50))
    assert mask("psi_cpu_some > 0.5", ctx, Scope.NODE) == [False, False]
    assert mask("not (psi_cpu_some > 0.5)", ctx) == [True] * 4


def test_windowed_functions_under_a_node_aggregate() -> None:
    c = Cluster(history=History({"temperature_c": 10.0}))
    ctx = None
    for t in range(11):
        ctx = c.context(c.frame(t, temperature_c=[50, 50 + t, 50 + 2 * t, 50]))
    assert ctx is not None
    assert values("max(rate(temperature_c, 10))", ctx, Scope.NODE) == pytest.approx([1.0, 2.0])
    assert mask("any(rate(temperature_c, 10) > 1.5)", ctx, Scope.NODE) == [False, True]


# -- job rules -------------------------------------------------------------------------------------------
@pytest.fixture
def jobs() -> EvalContext:
    """Three nodes of two GPUs; job a on GPUs 0-2, job b on GPU 4, GPUs 3 and 5 in no job; job c has none."""
    c = Cluster(nodes=("n1", "n2", "n3"), job_names=("a", "b", "c"), job_of_device=[0, 0, 0, -1, 1, -1])
    f = c.frame(temperature_c=[70, 80, 90, 99, 60, 99], utilization_gpu=[100, 100, 10, 100, 100, 100],
                procs=Procs(device=[0, 1, 2, 3, 4], pid=[1, 2, 3, 4, 5]))
    return c.context(f, job_values={"job_progress_age_s": [120, 5, NAN]})


def test_job_aggregates_ignore_gpus_outside_the_job(jobs: EvalContext) -> None:
    ctx = jobs
    assert values("max(temperature_c)", ctx, Scope.JOB) == pytest.approx([90, 60, NAN], nan_ok=True)
    assert values("min(temperature_c)", ctx, Scope.JOB) == pytest.approx([70, 60, NAN], nan_ok=True)
    assert values("mean(temperature_c)", ctx, Scope.JOB) == pytest.approx([80, 60, NAN], nan_ok=True)
    assert values("sum(temperature_c)", ctx, Scope.JOB) == [240, 60, 0]
    assert values("count(utilization_gpu >= 95)", ctx, Scope.JOB) == [2, 1, 0]
    assert values("share(utilization_gpu >= 95)", ctx, Scope.JOB) == pytest.approx([2 / 3, 1, NAN], nan_ok=True)
    assert mask("any(utilization_gpu < 50)", ctx, Scope.JOB) == [True, False, False]
    assert mask("all(utilization_gpu >= 95)", ctx, Scope.JOB) == [False, True, False]  # an empty job is not "all"


def test_job_values_and_their_nan_semantics(jobs: EvalContext) -> None:
    ctx = jobs
    assert mask("job_progress_age_s > 60", ctx, Scope.JOB) == [True, False, False]
    assert mask("not (job_progress_age_s <= 20)", ctx, Scope.JOB) == [True, False, True]
    assert mask("share(utilization_gpu >= 95) >= 0.5 and not (job_progress_age_s <= 20)", ctx,
                Scope.JOB) == [True, False, False]


def test_job_value_onto_devices_and_processes_is_nan_outside_any_job(jobs: EvalContext) -> None:
    ctx = jobs
    assert mask("job_progress_age_s > 60", ctx) == [True, True, True, False, False, False]
    assert mask("job_progress_age_s > 60", ctx, Scope.PROCESS) == [True, True, True, False, False]


def test_nan_semantics_do_not_depend_on_where_a_job_value_is_lifted(jobs: EvalContext) -> None:
    """`x` and `x + 0 * temperature_c` are the same number per GPU, so `not (... <= 60)` must agree on them.

    GPUs 3 and 5 are in no job: their job_progress_age_s is unknown (NaN), as it is for job c.
    """
    ctx = jobs
    lifted_after = mask("not (job_progress_age_s <= 60)", ctx)  # compared per job, then gathered
    lifted_before = mask("not (job_progress_age_s + 0 * temperature_c <= 60)", ctx)  # gathered, then compared
    assert lifted_before == [True, True, True, True, False, True]  # NaN: `not (x <= v)` is true
    assert lifted_after == lifted_before


# -- safety: nothing is ever evaluated by Python -----------------------------------------------------------
UNSAFE = [
    "__import__('os').system('touch {marker}')",
    "open('{marker}', 'w')",
    "eval('1') > 0",
    "exec('x = 1')",
    "getattr(temperature_c, 'real') > 0",
    "temperature_c.real > 80",
    "().__class__.__bases__[0].__subclasses__()",
    "temperature_c[0] > 80",
    "(lambda: 1)() > 0",
    "[x for x in (1, 2)]",
    "max(x for x in (1, 2)) > 0",
    "{{1: 2}} == 1",
    "f'{{temperature_c}}' == 'x'",
    "(t := temperature_c) > 80",
    "rate(temperature_c, seconds=30) > 1",
    "max(*temperature_c) > 1",
    "'hot' == 'hot'",
    "temperature_c > 80 if 1 else 0",
    "temperature_c ** 2 > 80",
    "temperature_c // 2 > 80",
    "temperature_c % 2 == 0",
    "True",
    "None == 1",
    "~temperature_c > 0",
    "inlet_c is 80",
    "inlet_c is not 80",
]


@pytest.mark.parametrize("template", UNSAFE)
@pytest.mark.parametrize("scope", [Scope.DEVICE, Scope.NODE])
def test_unsafe_or_foreign_syntax_is_refused_at_compile_time(template: str, scope: Scope, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = template.format(marker=marker)
    with pytest.raises(CompileError):
        Compiler(scope).compile(text)
    assert not marker.exists()


@pytest.mark.parametrize("template", UNSAFE[:6])
def test_unsafe_condition_in_a_policy_file_is_a_config_error_at_load(template: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = template.format(marker=marker).replace('"', '\\"')
    with pytest.raises(ConfigError) as err:
        parse_policy(policy(f'    when: "{text}"\n'), "p.yaml")
    assert err.value.field == "rules[0].when"
    assert not marker.exists()


def test_compiled_closures_only_touch_the_context() -> None:
    """The compiled form is plain closures: evaluating it twice on fresh contexts gives fresh results."""
    expr = Compiler(Scope.DEVICE).compile("temperature_c > 80")
    c = Cluster()
    assert list(expr.fn(c.context(c.frame(temperature_c=90)))) == [True] * 4
    assert list(expr.fn(c.context(c.frame(1, temperature_c=70)))) == [False] * 4


# -- errors: what, and where ----------------------------------------------------------------------------
def compile_error(text: str, scope: Scope = Scope.DEVICE, want: str = "bool") -> CompileError:
    with pytest.raises(CompileError) as err:
        Compiler(scope).compile(text, want=want)
    return err.value


def test_unknown_name_suggests_the_closest_known_one_and_points_at_it() -> None:
    err = compile_error("power_w > 1 and temprature_c > 80")
    assert "unknown name 'temprature_c'" in str(err)
    assert "did you mean 'temperature_c'?" in str(err)
    assert err.offset == len("power_w > 1 and ")
    err = compile_error("zzzzzz > 1")
    assert "unknown name 'zzzzzz'" in str(err) and "did you mean" not in str(err)


def test_unknown_function_is_refused() -> None:
    assert "unknown function 'sqrt'" in str(compile_error("sqrt(temperature_c) > 1"))


def test_a_number_where_a_condition_is_needed() -> None:
    assert "a condition is needed" in str(compile_error("temperature_c + 1"))
    assert "a condition is needed" in str(compile_error("80"))
    assert "a number is needed" in str(compile_error("temperature_c > 1", want="num"))


def test_and_or_not_of_numbers_are_refused() -> None:
    err = compile_error("temperature_c > 80 and power_w")
    assert "`and`/`or` need conditions on both sides" in str(err)
    assert err.offset == len("temperature_c > 80 and ")
    assert "conditions on both sides" in str(compile_error("temperature_c or power_w > 1"))
    assert "`not` needs a condition" in str(compile_error("not temperature_c"))
    assert "numbers on both sides" in str(compile_error("(temperature_c > 1) > 0"))
    assert "numbers on both sides" in str(compile_error("(temperature_c > 1) + 1 > 0"))


def test_a_per_gpu_value_in_a_node_or_job_rule_needs_an_aggregate() -> None:
    for scope in (Scope.NODE, Scope.JOB):
        err = compile_error("inlet_c > 30 and temperature_c > 80" if scope == Scope.NODE else
                            "temperature_c > 80", scope)
        assert f"a per-GPU value in a {scope} rule needs an aggregate" in str(err)
    assert "wrap it in an aggregate" in str(compile_error("rate(temperature_c, 30) > 1", Scope.NODE))
    assert "cannot be used in a node rule" in str(compile_error("job_progress_age_s > 1", Scope.NODE))
    assert "cannot be used in a device rule" in str(compile_error("process_power_w > 1", Scope.DEVICE))


def test_an_aggregate_in_a_device_or_process_rule_is_refused() -> None:
    for scope in (Scope.DEVICE, Scope.PROCESS):
        err = compile_error("max(temperature_c) > 80", scope)
        assert "aggregates over the GPUs of a node or job rule" in str(err)
        assert err.offset == 0


def test_aggregate_argument_kinds() -> None:
    assert "max() needs a number" in str(compile_error("max(temperature_c > 1) > 0", Scope.NODE))
    assert "share() needs a condition" in str(compile_error("share(temperature_c) > 0", Scope.NODE))
    assert "takes one argument" in str(compile_error("max(temperature_c, power_w) > 0", Scope.NODE))


@pytest.mark.parametrize(("text", "message"), [
    ("rate(1, 30) > 0", "needs a per-GPU column name"),
    ("rate(inlet_c, 30) > 0", "needs a per-GPU column name"),
    ("rate(process_power_w, 30) > 0", "needs a per-GPU column name"),
    ("rate(temperature_c * 2, 30) > 0", "needs a per-GPU column name"),
    ("avg_over(GiB, 30) > 0", "needs a per-GPU column name"),
    ("rate(temperature_c, 0) > 0", "between 1 and 3600 seconds"),
    ("rate(temperature_c, 0.5) > 0", "between 1 and 3600 seconds"),
    ("delta(temperature_c, 3601) > 0", "between 1 and 3600 seconds"),
    ("max_over(temperature_c, -5) > 0", "the window must be a number"),
    ("rate(temperature_c, power_w) > 0", "the window must be a number"),
    ("rate(temperature_c, True) > 0", "the window must be a number"),
    ("rate(temperature_c, '30') > 0", "the window must be a number"),
    ("rate(temperature_c) > 0", "use rate(column, seconds)"),
    ("avg_over(temperature_c, 10, 20) > 0", "use avg_over(column, seconds)"),
    ("time_to(memory_used_bytes, 60) < 5", "use time_to(column, limit, seconds)"),
    ("time_to(memory_used_bytes, memory_total_bytes, 10, 1) < 5", "use time_to(column, limit, seconds)"),
    ("time_to(memory_used_bytes, lost > 0, 10) < 5", "limit of time_to() must be a number"),
])
def test_windowed_function_misuse(text: str, message: str) -> None:
    assert message in str(compile_error(text))


def test_windowed_functions_record_the_history_they_need() -> None:
    expr = Compiler(Scope.DEVICE).compile(
        "rate(temperature_c, 30) > 1 or delta(temperature_c, 60) > 5 or "
        "time_to(memory_used_bytes, memory_total_bytes, 10) < 60")
    assert expr.windows == {"temperature_c": 60.0, "memory_used_bytes": 10.0}
    assert Compiler(Scope.NODE).compile("max(avg_over(power_w, 20)) > 1").windows == {"power_w": 20.0}


def test_syntax_error_reports_its_column() -> None:
    err = compile_error("temperature_c > > 80")
    assert "not a valid expression" in str(err)
    assert err.offset >= len("temperature_c ")


def test_wall_time_of_hand_built_frames_is_consistent() -> None:
    c = Cluster()
    f = c.frame(5.0)
    assert (f.monotonic, f.wall_time) == (5.0, WALL0 + 5.0)
