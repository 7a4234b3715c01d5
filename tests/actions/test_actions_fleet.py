"""The fleet breaker's arithmetic over a scheduler's node list: counts, refusals, the latch, and racing agents.

The node list here is an in-memory stand-in (MemoryFleet, conftest.py); tests/integration/test_fleet_breaker.py
runs the same breaker in twelve agent processes against a real Slurm."""

from __future__ import annotations

from typing import Any

from coldaisle.actions.fleet import FleetBreaker, NodeState
from coldaisle.actions.interface import ActionKind, Decision, Status, Target
from coldaisle.telemetry.clock import SimClock


def _drain(node: str, restore: bool = False) -> Decision:
    return Decision(0.0, "hot", "critical", ActionKind.DRAIN, Target(node), restore=restore)


def test_limit_is_a_share_of_the_fleet_rounded_up_and_never_zero(memory_fleet: Any) -> None:
    clock = SimClock()
    assert FleetBreaker(memory_fleet(130, clock), 0.1, 60, clock).limit(130) == 13  # 13.000000000000002 in floats
    assert FleetBreaker(memory_fleet(10, clock), 0.001, 60, clock).limit(10) == 1


def test_nodes_out_of_service_for_other_reasons_count_too(memory_fleet: Any) -> None:
    clock = SimClock(1000.0)
    fleet = memory_fleet(10, clock, down=("node-08", "node-09"))  # down, or drained by a person
    breaker = FleetBreaker(fleet, 0.3, 3600, clock, settle_s=0)  # 3 of 10
    assert breaker.before("node-00") == (None, True)
    fleet.execute(_drain("node-00"), dry_run=False)
    why, _ = breaker.before("node-01")
    assert why is not None and "1 drained by coldaisle in the window + 2 otherwise out of service, limit 3" in why
    assert breaker.last is not None and breaker.last.as_dict() == {"fleet": 10, "limit": 3, "coldaisle_recent": 1,
                                                                   "other_unavailable": 2}


def test_a_node_already_out_of_service_costs_nothing(memory_fleet: Any) -> None:
    clock = SimClock()
    fleet = memory_fleet(10, clock, down=("node-00",))
    breaker = FleetBreaker(fleet, 0.1, 3600, clock)
    assert breaker.before("node-00") == (None, False)  # draining it again adds nothing; no confirmation needed


def test_a_scheduler_that_cannot_be_read_refuses_every_drain(memory_fleet: Any) -> None:
    clock = SimClock()
    fleet = memory_fleet(10, clock)
    fleet.unreadable = "scontrol show node exited 1: Unable to contact slurm controller"
    why, _ = FleetBreaker(fleet, 0.5, 3600, clock).before("node-00")
    assert why is not None and "fail safe" in why and "Unable to contact slurm controller" in why


def test_an_open_breaker_stays_open_for_the_window_or_until_reset(memory_fleet: Any) -> None:
    clock = SimClock(1000.0)
    fleet = memory_fleet(10, clock)
    for manual in (False, True):
        breaker = FleetBreaker(fleet, 0.1, 600, clock, manual_reset=manual, settle_s=0)
        fleet.nodes["node-00"].update(unavailable=True, ours=True, since=clock.time())
        assert breaker.before("node-01")[0] is not None and breaker.open
        fleet.nodes["node-00"].update(unavailable=False, ours=False, since=None)  # a person resumed it
        assert "fleet breaker open" in str(breaker.before("node-01")[0])  # still open: it latched
        clock.sleep(601)
        assert breaker.open is manual  # the window passed: closed, unless the policy says a person resets it
        if manual:
            assert breaker.reset() and not breaker.open
        assert breaker.before("node-01") == (None, True)


def test_agents_racing_in_the_same_second_keep_the_oldest_drains_and_undo_the_rest(memory_fleet: Any) -> None:
    """Four agents, one per node, decide at once; the limit is 2 of 10: two drains stay, two are undone."""
    clock = SimClock(5000.0)
    fleet = memory_fleet(10, clock)
    agents = {f"node-{i:02d}": FleetBreaker(fleet, 0.2, 3600, clock, settle_s=0) for i in (3, 1, 2, 0)}
    assert all(b.before(node) == (None, True) for node, b in agents.items())  # nobody has drained yet: all allowed
    for node in agents:
        assert fleet.execute(_drain(node), dry_run=False).status == Status.DONE  # the same second: ties on time
    verdicts = {node: b.after(node) for node, b in agents.items()}
    for node, why in verdicts.items():
        if why is not None:
            fleet.execute(_drain(node, restore=True), dry_run=False)
    assert [n for n, why in verdicts.items() if why is None] == ["node-01", "node-00"]  # oldest (then name) win
    assert sorted(fleet.undone) == ["node-02", "node-03"] and "ranks 3 among" in str(verdicts["node-02"])
    assert sorted(n for n, v in fleet.nodes.items() if v["unavailable"]) == ["node-00", "node-01"]


def test_an_earlier_drain_ranks_before_a_later_one_whatever_the_names(memory_fleet: Any) -> None:
    clock = SimClock(5000.0)
    fleet = memory_fleet(10, clock)
    fleet.nodes["node-09"].update(unavailable=True, ours=True, since=4990.0)  # drained ten seconds ago
    fleet.execute(_drain("node-00"), dry_run=False)
    assert "ranks 2 among coldaisle's 2" in str(FleetBreaker(fleet, 0.1, 3600, clock, settle_s=0).after("node-00"))


def test_drains_older_than_the_window_count_as_out_of_service_not_as_recent(memory_fleet: Any) -> None:
    clock = SimClock(10_000.0)
    fleet = memory_fleet(10, clock)
    fleet.nodes["node-09"].update(unavailable=True, ours=True, since=1000.0)
    breaker = FleetBreaker(fleet, 0.5, 3600, clock)
    breaker.before("node-00")
    assert breaker.last is not None and (breaker.last.coldaisle_recent, breaker.last.other_unavailable) == (0, 1)
    assert [s.name for s in fleet.fleet() if s.unavailable] == ["node-09"]
    assert NodeState("x", True).since is None
