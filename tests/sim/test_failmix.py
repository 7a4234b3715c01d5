"""The failure-mix kind: Table 5's categories as twin faults, seeded draws, and errors that name file:line:field."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from coldaisle.errors import ConfigError
from coldaisle.sim import faults
from coldaisle.sim.failmix import categories, parse_rate
from coldaisle.sim.resolve import Plan
from coldaisle.sim.run import load_plan, replay
from coldaisle.sim.scenario import Fault, find_scenario, parse_scenario

MIX = Path(__file__).with_name("data") / "mini-mix.yaml"
TEXT = MIX.read_text(encoding="utf-8")
LLAMA3_INTERRUPTIONS = 419  # Llama 3, arXiv:2407.21783: unexpected interruptions in the 54-day snapshot


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def drawn(plan: Plan) -> list[tuple[float, int, int, str, str]]:
    return [(f.at_s, f.node, f.gpu, f.cause, f.fault.fault) for f in plan.faults if f.cause]


# -- the categories ---------------------------------------------------------------------------------------------
def test_the_categories_are_table_5_and_sum_to_419() -> None:
    cats = categories()
    assert sum(c.interruptions for c in cats.values()) == LLAMA3_INTERRUPTIONS
    assert len(cats) == 18
    assert (cats["faulty_gpu"].interruptions, cats["gpu_hbm3"].interruptions, cats["software_bug"].interruptions,
            cats["network_switch_cable"].interruptions) == (148, 72, 54, 35)


def test_every_category_becomes_a_twin_fault_the_twin_can_apply() -> None:
    kinds = {c.fault for c in categories().values()}
    assert kinds <= set(faults.HANDLERS)
    # the list: GPU lost or Xid, HBM ECC, software hang, network link down, host maintenance, thermal
    assert {"gpu_lost", "xid", "collective_deadlock", "link_down", "node_down", "thermal_interface"} <= kinds
    assert {c.scope for c in categories().values()} == {"gpu", "node", "switch"}
    assert Fault is not None  # every kind is part of the scenario schema: drawn faults are ordinary entries


@pytest.mark.parametrize(("text", "expected"), [
    ("1.67e-4 /gpu-day", (1.67e-4, "gpu")), ("0.5 /switch-day", (0.5, "switch")),
    ("3 per node-day", (3.0, "node")), ("2E-3/GPU-day", (2e-3, "gpu")), (".25 /node-days", (0.25, "node")),
    ("-1 /gpu-day", None), ("1e-4", None), ("1e-4 /gpu-hour", None), ("lots /gpu-day", None),
])
def test_rates_are_per_gpu_node_or_switch_day(text: str, expected: tuple[float, str] | None) -> None:
    assert parse_rate(text) == expected


# -- the draws ----------------------------------------------------------------------------------------------------
def test_sampling_is_deterministic_for_a_seed() -> None:
    _, a = parse_scenario(TEXT, "a.yaml")
    _, b = parse_scenario(TEXT, "b.yaml")
    _, other = parse_scenario(TEXT.replace("  seed: 12 ", "  seed: 13 "), "c.yaml")
    assert drawn(a) == drawn(b) and len(drawn(a)) >= 3
    assert drawn(other) != drawn(a)
    assert [f.at_s for f in a.faults] == sorted(f.at_s for f in a.faults)


def test_one_categorys_draws_do_not_depend_on_the_others() -> None:
    """Each category has a stream of its own: adding a category leaves the others' failures where they were."""
    _, a = parse_scenario(TEXT, "a.yaml")
    more = TEXT.replace("  mix:\n", "  mix:\n    - {category: nic, rate: 0.2 /node-day}\n")
    _, b = parse_scenario(more, "b.yaml")
    assert [d for d in drawn(b) if d[3] != "nic"] == drawn(a)
    assert any(d[3] == "nic" for d in drawn(b))


def test_draws_follow_their_rates_uniform_in_time_and_place() -> None:
    text = re.sub(r"(?ms)^  mix:\n.*", "  mix:\n    - {category: faulty_gpu, rate: 20 /gpu-day}\n", TEXT)
    _, plan = parse_scenario(text, "busy.yaml")
    assert plan.failures is not None
    lam = plan.failures.expected["faulty_gpu"]
    assert lam == pytest.approx(20 * 64 * 0.5)
    got = drawn(plan)
    assert abs(len(got) - lam) < 5 * np.sqrt(lam)
    times = np.array([d[0] for d in got])
    gpus = np.array([d[2] for d in got])
    assert times.min() >= 0 and times.max() <= plan.duration_s
    assert abs(np.median(times) - plan.duration_s / 2) < 0.1 * plan.duration_s
    assert set(gpus) == set(range(64))  # 640 draws over 64 GPUs land on every one


def test_a_switch_failure_takes_down_every_node_of_its_leaf_switch() -> None:
    _, plan = parse_scenario(TEXT, "m.yaml")
    switch = [f for f in plan.faults if f.cause == "network_switch_cable"]
    assert switch and all(f.fault.span == 4 and f.node % 4 == 0 for f in switch)  # type: ignore[union-attr]


def test_llama3_16k_draws_about_419_failures_of_the_table_5_mix() -> None:
    plan = load_plan("llama3-16k")
    assert plan.failures is not None
    assert (plan.layout.n_gpus, plan.layout.n_nodes, plan.duration_s) == (16384, 2048, 54 * 86400.0)
    assert sum(plan.failures.expected.values()) == pytest.approx(LLAMA3_INTERRUPTIONS, rel=1e-3)
    for key, cat in categories().items():  # each rate is the table's count over the 54 days
        assert plan.failures.expected[key] == pytest.approx(cat.interruptions, rel=1e-3), key
    assert abs(sum(plan.failures.drawn.values()) - LLAMA3_INTERRUPTIONS) <= 0.15 * LLAMA3_INTERRUPTIONS


@pytest.mark.slow
def test_llama3_16k_interrupts_its_job_about_419_times_in_54_days() -> None:
    twin = replay(load_plan("llama3-16k"))
    assert twin.campaign is not None
    led = twin.campaign.ledger(twin.t)
    assert abs(led.interruptions - LLAMA3_INTERRUPTIONS) <= 0.15 * LLAMA3_INTERRUPTIONS
    assert 0.85 < led.ettr < 0.95  # the paper: "higher than 90% effective training time"
    assert led.productive_s + sum(led.lost_s.values()) == pytest.approx(54 * 86400.0)


def test_per_rank_and_summarised_events_give_the_same_run() -> None:
    """`rank_events: summary` only changes what is logged, never what happens."""
    summary = replay(parse_scenario(TEXT, "s.yaml")[1])
    each = replay(parse_scenario(TEXT.replace("rank_events: summary", "rank_events: each"), "e.yaml")[1])
    np.testing.assert_array_equal(summary.recorder.view("gpu_temp_c"), each.recorder.view("gpu_temp_c"))
    np.testing.assert_array_equal(summary.workload.pid, each.workload.pid)
    assert summary.workload.job_status == each.workload.job_status
    assert [(i.cause, i.stop_s, i.end_s, i.restart_s) for i in summary.campaign.interruptions] == \
        [(i.cause, i.stop_s, i.end_s, i.restart_s) for i in each.campaign.interruptions]  # type: ignore[union-attr]
    assert len(summary.events) * 5 < len(each.events)


# -- bad input ----------------------------------------------------------------------------------------------------
MALFORMED = {
    "unknown category": ("{category: faulty_gpu, rate", "{category: faulty_gpus, rate", "faulty_gpus, rate",
                         "failures.mix[0].category", "unknown failure category 'faulty_gpus'"),
    "category twice": ("{category: gpu_hbm3,", "{category: faulty_gpu,", "rate: 0.01 /gpu-day}",
                       "failures.mix[1].category", "listed twice"),
    "rate without a unit": ("0.02 /gpu-day", "0.02", "faulty_gpu, rate: 0.02}", "failures.mix[0].rate",
                            "cannot read 0.02 as a failure rate"),
    "negative rate": ("0.02 /gpu-day", "-0.02 /gpu-day", "-0.02", "failures.mix[0].rate", "as a failure rate"),
    "rate per hour": ("0.02 /gpu-day", "0.02 /gpu-hour", "gpu-hour", "failures.mix[0].rate", "as a failure rate"),
    "rate in the wrong scope": ("network_switch_cable, rate: 0.5 /switch-day",
                                "network_switch_cable, rate: 0.5 /node-day", "network_switch_cable",
                                "failures.mix[3].rate", "fails per switch, not per node"),
    "absurd rate": ("0.02 /gpu-day", "2e9 /gpu-day", "2e9", "failures.mix[0].rate", "would draw about"),
    "unknown job": ("  job: train\n", "  job: trian\n", "  job: trian", "failures.job", "no job named 'trian'"),
    "no checkpoints": ("checkpoint_every: 20 min", "checkpoint_every: 0 s", "checkpoint_every",
                       "failures.checkpoint_every", "positive interval"),
    "negative restart": ("restart: 5 min", "restart: -5 min", "restart:", "failures.restart", "must not be negative"),
    "unknown key": ("  swap: 10 min\n", "  swap: 10 min\n  spares: 3\n", "  spares: 3", "failures.spares",
                    "unknown key"),
    "rate as a list": ("0.02 /gpu-day", "[1, 2]", "[1, 2]", "failures.mix[0].rate", "valid"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_bad_rates_and_categories_name_file_line_and_field(case: str, tmp_path: Path) -> None:
    old, new, needle, field, words = MALFORMED[case]
    assert old in TEXT, old
    text = TEXT.replace(old, new, 1)
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_plan(str(path))
    err = info.value
    assert str(err).startswith(f"{path}:{line_of(text, needle)}: {field}: "), str(err)
    assert words in str(err), str(err)
    assert err.exit_code == 2


def test_an_unknown_category_hint_lists_the_categories() -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario(TEXT.replace("category: faulty_gpu", "category: gpu"), "m.yaml")
    assert info.value.hint is not None and "faulty_gpu, gpu_hbm3" in info.value.hint


def test_a_link_down_span_past_the_last_node_names_its_field() -> None:
    text = TEXT.replace("rank_events: summary\n", "rank_events: summary\ntimeline:\n"
                        "  - {at: \"+1 h\", fault: link_down, node: n07, span: 4}\n")
    with pytest.raises(ConfigError, match=r"^m\.yaml:\d+: timeline\[0\]\.span: only 2 nodes from n07 on"):
        parse_scenario(text, "m.yaml")


def test_every_shipped_failure_mix_loads() -> None:
    assert load_plan(str(find_scenario("llama3-16k"))).failures is not None
