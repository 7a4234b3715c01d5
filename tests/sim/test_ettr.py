"""ETTR and time lost by cause: a small run checked against arithmetic done by hand, and the ledger's rules."""

from __future__ import annotations

import math

import pytest

from coldaisle.sim.ettr import CAUSES, Interruption, ledger
from coldaisle.sim.run import replay
from coldaisle.sim.scenario import parse_scenario

# One node of 4 GPUs trains for 2 h, checkpointing every 10 min. At 00:25 GPU 1 falls off the bus; at 01:00 a
# software bug hangs a collective and the NCCL watchdog (10 min) times the peers out. Restarts take 5 min, plus
# 15 min when a spare must replace the node (a lost GPU), none after the software hang.
HAND = """\
name: hand-computed
start: 2024-06-03T00:00:00Z
duration: 2 h
step: 1 s
record_every: 60 s
card: {model: h100-sxm-80gb}
topology: {gpus_per_node: 4, node_name: "n{n:02d}", host_power: 1 kW}
facility: {setpoint: 20 C, row_cooling: 50 kW}
jobs:
  - {name: train, id: 1, nodes: n01, compute_power: 600 W, spin_power: 700 W, memory_per_gpu: 60 GiB,
     steps_per_second: 1 /s, nccl_timeout: 10 min}
timeline:
  - {at: "00:25", fault: gpu_lost, node: n01, gpu: 1}
  - {at: "01:00", fault: collective_deadlock, node: n01, gpu: 2}
failures: {job: train, checkpoint_every: 10 min, restart: 5 min, swap: 15 min}
"""

# By hand (seconds from the start):
#   run 1 starts 0. GPU lost at 1500: progress stops at 1500, the peers abort 2 s later (1502). Last checkpoint
#     1200, so 300 s of work is lost; detection 2 s; the node lost a GPU, so the restart waits 300 + 900 s:
#     run 2 starts at 2702.
#   run 2: checkpoints at 3302. Hang at 3600: progress stops; the watchdog times the peers out at 4200 and the
#     launcher kills the stalled rank 5 s later (4205). Lost work 3600 - 3302 = 298; detection 605; nothing to
#     replace: run 3 starts at 4505 and trains to the end, 7200.
#   productive = 1200 + (3302 - 2702) + (7200 - 4505) = 4495; ETTR = 4495 / 7200.
EXPECTED = {"productive": 4495.0, "lost_work": 598.0, "detection": 607.0, "restart": 1500.0, "false_drains": 0.0}


@pytest.fixture(scope="module")
def hand() -> object:
    _, plan = parse_scenario(HAND, "hand.yaml")
    return replay(plan)


def test_each_interruption_is_booked_as_computed_by_hand(hand: object) -> None:
    c = hand.campaign  # type: ignore[attr-defined]
    got = [(i.cause, i.start_s, i.stop_s, i.end_s, i.checkpoint_s, i.restart_s, i.swap_s) for i in c.interruptions]
    assert got == [("gpu_lost", 0.0, 1500.0, 1502.0, 1200.0, 2702.0, 900.0),
                   ("collective_deadlock", 2702.0, 3600.0, 4205.0, 3302.0, 4505.0, 0.0)]
    assert c.interruptions[0].swapped == ("n01",) and not c.interruptions[0].false_swap


def test_ettr_and_time_lost_by_cause_match_the_hand_computation(hand: object) -> None:
    led = hand.campaign.ledger(hand.t)  # type: ignore[attr-defined]
    assert led.wall_s == 7200.0
    assert led.productive_s == EXPECTED["productive"]
    assert led.lost_s == {k: EXPECTED[k] for k in CAUSES}
    assert led.ettr == pytest.approx(4495.0 / 7200.0)
    assert led.interruptions == 2
    assert led.by_cause == {"gpu_lost": 1, "collective_deadlock": 1}
    assert led.lost_by_category == {"gpu_lost": 300.0 + 2.0 + 1200.0, "collective_deadlock": 298.0 + 605.0 + 300.0}


def test_the_ledger_midway_counts_an_unfinished_detection_and_restart() -> None:
    """Stopped at 01:05 (the hang undetected for 5 min) and at 00:30 (waiting to restart): still adds up."""
    _, plan = parse_scenario(HAND, "hand.yaml")
    for until, productive, lost in ((3900.0, 1200.0 + 898.0, {"detection": 2.0 + 300.0, "restart": 1200.0,
                                                                "lost_work": 300.0, "false_drains": 0.0}),
                                    (1800.0, 1200.0, {"detection": 2.0, "restart": 298.0, "lost_work": 300.0,
                                                      "false_drains": 0.0})):
        twin = replay(plan, until_s=until)
        led = twin.campaign.ledger(twin.t)  # type: ignore[union-attr]
        assert led.productive_s == pytest.approx(productive)
        assert led.lost_s == pytest.approx(lost)
        assert led.productive_s + sum(led.lost_s.values()) == pytest.approx(until)


def test_a_stop_the_policy_caused_with_no_fault_is_all_false_drains() -> None:
    runs = [Interruption("policy", "", 0.0, 1000.0, 1010.0, 600.0, restart_s=1400.0)]
    led = ledger(runs, 0.0, 2000.0, current_start=1400.0)
    assert led.lost_s == {"detection": 0.0, "restart": 0.0, "lost_work": 0.0, "false_drains": 800.0}
    assert led.productive_s == 600.0 + 600.0


def test_only_the_swap_of_a_node_drained_with_no_fault_is_a_false_drain() -> None:
    false = Interruption("software_bug", "n01", 0.0, 1000.0, 1020.0, 900.0, restart_s=1620.0, swap_s=300.0,
                         swapped=("n01",), false_swap=True)
    true = Interruption("faulty_gpu", "n01", 0.0, 1000.0, 1020.0, 900.0, restart_s=1620.0, swap_s=300.0,
                        swapped=("n01",), false_swap=False)
    a, b = ledger([false], 0.0, 2000.0, current_start=1620.0), ledger([true], 0.0, 2000.0, current_start=1620.0)
    assert (a.lost_s["restart"], a.lost_s["false_drains"]) == (300.0, 300.0)
    assert (b.lost_s["restart"], b.lost_s["false_drains"]) == (600.0, 0.0)
    assert a.productive_s == b.productive_s == 900.0 + 380.0
    assert a.ettr == b.ettr


def test_a_run_that_has_not_started_has_no_ettr() -> None:
    led = ledger([], 100.0, 50.0)
    assert led.wall_s == 0.0 and math.isnan(led.ettr)
