"""The audit log: JSON lines visible at once, size rotation with N backups, threads, IO errors contained."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from coldaisle.actions import audit
from coldaisle.actions.audit import AuditLog
from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status, Target
from coldaisle.telemetry.clock import SimClock


def _decision() -> Decision:
    return Decision(1716260652.0, "runaway-python", "critical", ActionKind.SIGTERM,
                    Target("node-gpu-88", 2, pid=12851, starttime=25919000), params={"group": True},
                    evidence={"process_power_w": 640.0})


def test_decision_outcome_and_note_are_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "actions.jsonl"
    log = AuditLog(path, clock=SimClock(1716260652.5))
    d = _decision()
    log.decision(d)
    # visible to another reader as soon as write() returns (flushed and fsync'd, not buffered)
    assert json.loads(path.read_text().splitlines()[0])["rule"] == "runaway-python"
    log.outcome(Outcome(d, Status.DONE, "sent SIGTERM to pid 12851 (python3) on node-gpu-88", 1716260653.0))
    log.note("process 12849 in D state cannot be killed; draining node", node="node-gpu-102")
    records = list(audit.read(path))
    assert [r["kind"] for r in records] == ["decision", "outcome", "note"]
    assert records[0]["time"] == "2024-05-21T03:04:12.000Z" and records[0]["target"]["pid"] == 12851
    assert records[0]["logged_at"] == "2024-05-21T03:04:12.500Z"
    assert records[1]["status"] == "done" and records[1]["action"] == "sigterm"
    assert records[2]["node"] == "node-gpu-102"
    assert log.errors == 0 and log.written == 3
    log.close()


def test_rotation_keeps_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "actions.jsonl"
    with AuditLog(path, max_bytes=1000, backups=3, clock=SimClock()) as log:
        for i in range(200):
            log.note("x" * 40, seq=i)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["actions.jsonl", "actions.jsonl.1", "actions.jsonl.2", "actions.jsonl.3"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    seqs = [r["seq"] for r in audit.read(path, backups=True)]
    assert seqs[-1] == 199
    assert seqs == list(range(seqs[0], 200))  # the newest records, in order, none lost between files
    assert len(seqs) > 3 * (1000 // 120)


def test_concurrent_writers_produce_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "actions.jsonl"
    log = AuditLog(path, max_bytes=20_000, backups=200)

    def writer(t: int) -> None:
        for i in range(250):
            log.note("concurrent", thread=t, seq=i, pad="y" * (i % 50))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    log.close()
    seen = [(r["thread"], r["seq"]) for r in audit.read(path, backups=True)]  # json.loads fails on a torn line
    assert len(seen) == 2000 and set(seen) == {(t, i) for t in range(8) for i in range(250)}
    assert len(list(tmp_path.iterdir())) > 2


def test_io_error_is_counted_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    log = AuditLog(blocker / "actions.jsonl")
    log.decision(_decision())  # must not raise
    log.note("still running")
    assert log.errors == 2 and log.written == 0


def test_audit_records_carry_every_field_of_a_decision_and_its_target() -> None:
    """The hand-written to_json (no deep copy on the hot path) must not drop a field added later."""
    import dataclasses

    from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status, Target

    target = Target("node-gpu-88", 2, "GPU-x", 12851, 777, "4242")
    d = Decision(1_700_000_000.0, "r", "critical", ActionKind.SIGTERM, target, step=1,
                 params={"grace": 5}, evidence={"power_w": 812.0}, restore=False)
    rec = d.to_json()
    assert set(rec) == {f.name for f in dataclasses.fields(Decision)}
    assert rec["target"] == dataclasses.asdict(target)
    assert rec["action"] == "sigterm" and rec["time"].startswith("2023-11-14T22:13:20")
    rec["params"]["grace"] = 99  # a copy: the record never aliases the decision
    assert d.params == {"grace": 5}
    out = Outcome(d, Status.DONE, "sent", 1_700_000_001.0).to_json()
    assert out["target"] == dataclasses.asdict(target) and out["status"] == "done"
