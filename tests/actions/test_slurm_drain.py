"""SlurmDrain: argv building, reason parsing from captured `scontrol show node -o`, and a person's drain.

The executor runs a fake `scontrol` (a real executable through the real subprocess.run) that prints the
captured output; the real-Slurm test lives in tests/integration/test_slurm.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coldaisle.actions.drain import SlurmDrain, drain_argv, parse_show_node, resume_argv, sanitize_reason
from coldaisle.actions.interface import ActionKind, Decision, Status, Target

NODE = "node-gpu-88"


def _drain(restore: bool = False, reason: str = "gpu-overheat: gpu2 at 91 C for 60 s") -> Decision:
    return Decision(time.time(), "gpu-overheat", "critical", ActionKind.DRAIN, Target(NODE),
                    params={"reason": reason}, restore=restore)


@pytest.mark.parametrize(("name", "state", "reason", "user", "ours", "unavailable"), [
    ("idle", "IDLE", "", "", False, False),
    ("allocated", "ALLOCATED", "", "", False, False),
    ("person-drain", "IDLE+DRAIN", "disk replacement, ticket INC-4821 (do not resume)", "alice", False, True),
    ("person-draining", "MIXED+DRAIN", "RMA pending: psu=failed, see State=DOWN notes", "bob", False, True),
    ("ours", "ALLOCATED+DRAIN", "coldaisle: gpu-overheat: node-gpu-88/gpu2 temperature_c=91.0", "root", True, True),
    ("down", "DOWN+NOT_RESPONDING", "Not responding", "slurm", False, True),
])
def test_parse_captured_show_node(data: Path, name: str, state: str, reason: str, user: str, ours: bool,
                                  unavailable: bool) -> None:
    node = parse_show_node((data / f"scontrol-show-node-{name}.txt").read_text())
    assert (node.name, node.state, node.reason, node.reason_user) == (NODE, state, reason, user)
    assert (node.ours, node.unavailable) == (ours, unavailable)


def test_argv_is_one_field_per_argument_and_tagged() -> None:
    argv = drain_argv(NODE, 'gpu2 "hot"\nrm -rf / ; $(reboot)')
    assert argv[:4] == ["scontrol", "update", f"NodeName={NODE}", "State=DRAIN"]
    assert argv[4].startswith("Reason=coldaisle: gpu2 ")
    assert "\n" not in argv[4] and '"' not in argv[4] and "$" not in argv[4]
    assert resume_argv(NODE, "/opt/slurm/bin/scontrol") == ["/opt/slurm/bin/scontrol", "update",
                                                          f"NodeName={NODE}", "State=RESUME"]


def test_reason_is_bounded() -> None:
    long = sanitize_reason("x" * 1000)
    assert len(long) == 200 and long.endswith("...")
    assert sanitize_reason("  a\tb \r\n c  ") == "a b c"


def test_drains_an_idle_node(scontrol, data: Path) -> None:
    scontrol.shows(data / "scontrol-show-node-idle.txt")
    outcome = SlurmDrain(scontrol.path).execute(_drain(), dry_run=False)
    assert outcome.status == Status.DONE, outcome.detail
    assert scontrol.calls() == [["show", "node", "-o", NODE],
                                ["update", f"NodeName={NODE}", "State=DRAIN",
                                 "Reason=coldaisle: gpu-overheat: gpu2 at 91 C for 60 s"]]


def test_dry_run_reads_but_does_not_drain(scontrol, data: Path) -> None:
    scontrol.shows(data / "scontrol-show-node-allocated.txt")
    outcome = SlurmDrain(scontrol.path).execute(_drain(), dry_run=True)
    assert outcome.status == Status.DRY_RUN
    assert outcome.detail.startswith(f"would have drained {NODE}: update NodeName={NODE} State=DRAIN")
    assert [c[0] for c in scontrol.calls()] == ["show"]


@pytest.mark.parametrize("captured", ["person-drain", "person-draining", "down"])
def test_a_persons_drain_is_never_overwritten(scontrol, data: Path, captured: str) -> None:
    scontrol.shows(data / f"scontrol-show-node-{captured}.txt")
    drainer = SlurmDrain(scontrol.path)
    outcome = drainer.execute(_drain(), dry_run=False)
    assert outcome.status == Status.DONE and outcome.detail.startswith("already drained by a person")
    refused = drainer.execute(_drain(restore=True), dry_run=False)
    assert refused.status == Status.REFUSED
    assert all(c[0] == "show" for c in scontrol.calls())  # no update of any kind


def test_our_drain_is_kept_and_can_be_resumed(scontrol, data: Path) -> None:
    scontrol.shows(data / "scontrol-show-node-ours.txt")
    drainer = SlurmDrain(scontrol.path)
    again = drainer.execute(_drain(), dry_run=False)
    assert again.status == Status.DONE and again.detail.startswith("already drained by coldaisle")
    assert drainer.execute(_drain(restore=True), dry_run=False).status == Status.DONE
    assert scontrol.calls()[-1] == ["update", f"NodeName={NODE}", "State=RESUME"]


def test_failures_are_outcomes(scontrol, data: Path, tmp_path: Path) -> None:
    missing = SlurmDrain(str(tmp_path / "no-such-scontrol")).execute(_drain(), dry_run=False)
    assert missing.status == Status.FAILED and "not found" in missing.detail
    unknown = SlurmDrain(scontrol.path).execute(_drain(), dry_run=False)  # no show.txt: "Node ... not found"
    assert unknown.status == Status.FAILED and "Node node-gpu-88 not found" in unknown.detail
    scontrol.shows(data / "scontrol-show-node-idle.txt")
    scontrol.delay(5)
    t0 = time.monotonic()
    slow = SlurmDrain(scontrol.path, timeout_s=0.3).execute(_drain(), dry_run=False)
    assert slow.status == Status.FAILED and "timed out after 0.3 s" in slow.detail
    assert time.monotonic() - t0 < 3
