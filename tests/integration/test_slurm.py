"""Drains against a real single-node Slurm (slurmctld + slurmd + munged on loopback, see conftest.py)."""

from __future__ import annotations

import functools
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from coldaisle.actions.interface import ActionKind, Decision, Executor, Status, Target

if TYPE_CHECKING:  # conftest modules are not importable at run time (no __init__.py in tests/)
    from conftest import SlurmCluster

pytestmark = pytest.mark.slurm

OUR_REASON = "coldaisle: test"
PERSON_REASON = "maintenance by alice"


def _drain_by_hand(cluster: SlurmCluster, reason: str) -> None:
    """What an operator types: scontrol update NodeName=X State=DRAIN Reason="..."."""
    cluster.scontrol("update", f"NodeName={cluster.node}", "State=DRAIN", f"Reason={reason}")


def _reason(cluster: SlurmCluster) -> str:
    """The node's Reason without Slurm's ` [user@time]` suffix."""
    return cluster.show_node().get("Reason", "").split(" [", 1)[0]


def _drained(cluster: SlurmCluster) -> bool:
    return "DRAIN" in cluster.show_node().get("State", "")


def test_node_comes_up_idle(slurm_node: SlurmCluster) -> None:
    cluster = slurm_node
    assert cluster.sinfo_state() == "idle"
    info = cluster.show_node()
    assert info["NodeName"] == cluster.node
    assert info["NodeAddr"] == "127.0.0.1"
    assert info["State"] == "IDLE"
    assert info["Partitions"] == "debug"
    ping = cluster.run("scontrol", "ping").stdout  # the controller answers, not only its cached node state
    assert "is UP" in ping, ping


def test_drain_and_resume_with_scontrol(slurm_node: SlurmCluster) -> None:
    cluster = slurm_node
    _drain_by_hand(cluster, OUR_REASON)

    info = cluster.show_node()
    assert "DRAIN" in info["State"], info
    assert cluster.sinfo_state() in {"drain", "drained"}
    assert info["Reason"].startswith(OUR_REASON + " [root@"), info  # Slurm appends [user@time]
    assert _reason(cluster) == OUR_REASON

    cluster.scontrol("update", f"NodeName={cluster.node}", "State=RESUME")
    info = cluster.wait_idle()  # IDLE+NOT_RESPONDING for about a second: RESUME makes slurmctld ping the node
    assert "Reason" not in info or info["Reason"] in {"", "(null)"}, info
    assert cluster.sinfo_state() == "idle"


def _drain_decision(node: str, *, restore: bool = False) -> Decision:
    return Decision(
        time=time.time(),
        rule="gpu-too-hot",
        severity="critical",
        action=ActionKind.DRAIN,
        target=Target(node=node),
        params={"reason": "gpu2 at 91 C for 60 s"},
        evidence={"temperature_c": 91.0},
        restore=restore,
    )


def test_slurm_drain_executor(slurm_node: SlurmCluster) -> None:
    from coldaisle.actions.drain import SlurmDrain

    cluster = slurm_node
    # the executor's runner hook carries SLURM_CONF to every scontrol call it makes
    executor = SlurmDrain(runner=functools.partial(subprocess.run, env=cluster.env))
    assert isinstance(executor, Executor)
    assert executor.kind == ActionKind.DRAIN

    # dry run: decided, nothing done
    outcome = executor.execute(_drain_decision(cluster.node), dry_run=True)
    assert outcome.status == Status.DRY_RUN, outcome
    assert not _drained(cluster)

    # our drain: DONE, node drained, reason tagged as ours
    outcome = executor.execute(_drain_decision(cluster.node), dry_run=False)
    assert outcome.status == Status.DONE, outcome
    assert _drained(cluster), cluster.show_node()
    ours = _reason(cluster)
    assert ours.startswith("coldaisle:"), cluster.show_node()
    assert "gpu2 at 91 C" in ours

    # draining again changes nothing
    outcome = executor.execute(_drain_decision(cluster.node), dry_run=False)
    assert outcome.status == Status.DONE, outcome
    assert _reason(cluster) == ours

    # our undrain puts back a node we drained
    outcome = executor.execute(_drain_decision(cluster.node, restore=True), dry_run=False)
    assert outcome.status == Status.DONE, outcome
    assert not _drained(cluster), cluster.show_node()
    cluster.wait_idle()

    # a person drains the node: our drain must not overwrite their reason, our undrain must not resume it
    _drain_by_hand(cluster, PERSON_REASON)
    outcome = executor.execute(_drain_decision(cluster.node), dry_run=False)
    assert outcome.status in {Status.DONE, Status.REFUSED}, outcome
    assert _drained(cluster)
    assert _reason(cluster) == PERSON_REASON, cluster.show_node()
    outcome = executor.execute(_drain_decision(cluster.node, restore=True), dry_run=False)
    assert outcome.status in {Status.DONE, Status.REFUSED}, outcome
    assert _drained(cluster)
    assert _reason(cluster) == PERSON_REASON, cluster.show_node()

    # a person re-drains a node we drained: from then on it is theirs, our undrain leaves it alone
    cluster.resume_if_drained()
    outcome = executor.execute(_drain_decision(cluster.node), dry_run=False)
    assert outcome.status == Status.DONE, outcome
    assert _reason(cluster).startswith("coldaisle:")
    _drain_by_hand(cluster, PERSON_REASON)
    outcome = executor.execute(_drain_decision(cluster.node, restore=True), dry_run=False)
    assert outcome.status in {Status.DONE, Status.REFUSED}, outcome
    assert _drained(cluster)
    assert _reason(cluster) == PERSON_REASON, cluster.show_node()
