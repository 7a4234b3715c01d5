"""TopSession: the agent's parts on one node of the twin, one Snapshot per sample."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from coldaisle.actions.interface import ActionKind, Status
from coldaisle.errors import ColdaisleError
from coldaisle.top.session import TopOptions, TopSession
from coldaisle.top.state import RuleRow, Snapshot


def _rule(snap: Snapshot, name: str) -> RuleRow:
    return next(r for r in snap.rules if r.name == name)


def _steps(s: TopSession, n: int) -> list[Snapshot]:
    out = []
    for _ in range(n):
        snap = s.step()
        assert snap is not None
        out.append(snap)
    return out


def test_collective_hang_goes_from_pending_to_firing(session: Callable[..., TopSession]) -> None:
    s = session(node="node-gpu-12", start="03:04:05")
    snaps = _steps(s, 25)
    states = [(_rule(x, "collective-hang").pending, _rule(x, "collective-hang").firing,
               _rule(x, "collective-hang").fires_in_s) for x in snaps]
    first_pending = next(i for i, (p, _, _) in enumerate(states) if p)
    first_firing = next(i for i, (_, f, _) in enumerate(states) if f)
    assert states[0] == (0, 0, None)  # 03:04:05: the deadlock has not reached this node's ranks yet
    assert first_pending < first_firing
    countdown = [t for p, f, t in states[first_pending:first_firing] if p and not f]
    assert countdown == [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # `for: 10 s`, a sample a second
    # Firing ran the ladder on this node: notify, then SIGTERM to each rank of the job, done on the twin.
    fired = [o for o in snaps[first_firing].actions if o.decision.rule == "collective-hang"]
    assert {o.decision.action for o in fired} >= {ActionKind.NOTIFY, ActionKind.SIGTERM}
    sigterms = [o for o in fired if o.decision.action == ActionKind.SIGTERM]
    assert len(sigterms) == 4 and all(o.status == Status.DONE for o in sigterms)
    assert snaps[first_firing].mode == "ENFORCING"


def test_processes_carry_their_job_and_name(session: Callable[..., TopSession]) -> None:
    s = session(node="node-gpu-12", start="03:02")
    snap = _steps(s, 1)[0]
    assert [p.gpu for p in snap.processes] == [0, 1, 2, 3]
    assert {p.job for p in snap.processes} == {"omni-reasoning"}
    assert {p.name for p in snap.processes} == {"python3"}  # the scenario's `process`
    assert all(p.memory_bytes == pytest.approx(74 * 2**30) for p in snap.processes)
    assert snap.node == "node-gpu-12" and snap.source == "sim prometheus-unbound x1e+06"
    assert snap.node_values["inlet_c"] > 18.0


def test_history_keeps_the_last_samples_oldest_first(session: Callable[..., TopSession]) -> None:
    s = session(node="node-gpu-12", start="03:04", history=5)
    snaps = _steps(s, 8)
    assert len(snaps[1].gpus[0].temperature_history) == 2
    last = snaps[-1].gpus[0]
    assert len(last.temperature_history) == 5
    assert last.temperature_history[-1] == last.temperature_c
    older = [x.gpus[0].temperature_c for x in snaps[-5:]]
    assert last.temperature_history.tolist() == older
    assert last.power_history[-1] == last.power_w and last.memory_history[-1] == last.memory_used_bytes


def test_dry_run_decides_but_the_processes_live_on(session: Callable[..., TopSession], tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    s = session(node="node-gpu-12", start="03:04:05", enforce=False, audit=audit)
    snaps = _steps(s, 25)
    assert snaps[-1].mode == "dry-run"
    kills = [o for o in snaps[-1].actions if o.decision.action == ActionKind.SIGTERM]
    assert kills and all(o.status == Status.DRY_RUN for o in kills)
    assert kills[0].detail.startswith("would have sent SIGTERM")
    assert len(snaps[-1].processes) == 4  # nothing was signalled
    s.close()
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert records[0]["text"] == "top started" and records[0]["mode"] == "dry-run"
    assert any(r["kind"] == "outcome" and r["status"] == "dry_run" for r in records)


def test_a_lost_gpu_is_flagged(session: Callable[..., TopSession]) -> None:
    """Unprotected (dry-run), the 100k-token request ends in Xid 79 and a kernel panic on node-gpu-102 (04:20:45)."""
    s = session(node="node-gpu-102", start="04:20:30", enforce=False)
    before = _steps(s, 1)[0]
    assert not any(g.lost for g in before.gpus)
    for _ in range(60):
        snap = _steps(s, 1)[0]
        if snap.gpus[2].lost:
            break
    else:
        pytest.fail("GPU 2 of node-gpu-102 never fell off the bus")
    assert all(g.lost for g in snap.gpus)  # the node panicked: every GPU on it is gone
    assert all(np.isnan(g.temperature_c) for g in snap.gpus)
    assert _rule(snap, "gpu-lost-or-critical-xid").firing == 4


def test_first_node_when_none_is_named(session: Callable[..., TopSession]) -> None:
    s = session()
    assert s.node == "node-gpu-01" and len(s.backend.devices()) == 4


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ColdaisleError, match="no node named 'node-gpu-999'"):
        TopSession(TopOptions(backend="sim", node="node-gpu-999"))
    with pytest.raises(ColdaisleError, match="--start only applies to the simulator") as e:
        TopSession(TopOptions(backend="nvml", start="03:03"))
    assert e.value.exit_code == 2
    with pytest.raises(ColdaisleError, match=r"^--start: ") as e:
        TopSession(TopOptions(backend="sim", start="25:99"))
    assert e.value.exit_code == 2
    bad = tmp_path / "policy.yaml"
    bad.write_text("rules:\n  - name: x\n    when: nope > 1\n    actions: [{do: notify}]\n")
    with pytest.raises(ColdaisleError, match=f"{bad}:3"):
        TopSession(TopOptions(backend="sim", policy=str(bad)))
