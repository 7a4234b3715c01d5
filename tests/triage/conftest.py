"""Shared fixtures: the shipped catalog's matcher, test data paths, and the twin's logs (made once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldaisle.triage.catalog import Matcher, load_catalog

DATA = Path(__file__).resolve().parents[1] / "data" / "triage"


@pytest.fixture(scope="session")
def matcher() -> Matcher:
    return load_catalog().matcher()


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The real-world corpus triaged once: (outcomes per record, the whole TriageResult, the score)."""
    from realcorpus import load_records, run, score

    outcomes, result = run(load_records(), tmp_path_factory.mktemp("real-corpus"))
    return outcomes, result, score(outcomes)


def _twin_logs(root: Path, scenario: str, until: str) -> tuple[Path, list]:
    """Run the twin in process (unprotected) and write every node's logs; returns the log dir and truth."""
    from coldaisle.sim.run import load_plan, parse_until, replay, write_logs

    plan = load_plan(scenario)
    twin = replay(plan, until_s=parse_until(until, plan))
    write_logs(twin, root)
    return root, [e for e in twin.events if e.source != "twin"]


@pytest.fixture(scope="session")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """prometheus-unbound to 04:30 (the deadlock, the heat, the 44->45 bootstrap and node-gpu-102's chain)."""
    return _twin_logs(tmp_path_factory.mktemp("unbound"), "prometheus-unbound", "+1.5 h")


@pytest.fixture(scope="session")
def unbound_watchdog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """The same night with PyTorch's NCCL watchdog on (10 min): the hundreds of follow-on timeouts."""
    root = tmp_path_factory.mktemp("unbound-watchdog")
    text = Path(__file__).resolve().parents[2].joinpath("scenarios", "prometheus-unbound.yaml").read_text()
    assert "nccl_timeout: null" in text
    scenario = root / "prometheus-unbound-watchdog.yaml"
    scenario.write_text(text.replace("nccl_timeout: null", "nccl_timeout: 10 min", 1))
    return _twin_logs(root / "logs", str(scenario), "+1.5 h")
