"""The node's fault history: durable, bounded, atomic; recorded from the twin's Frames and the actions' outcomes;
counted by the policy's `count(kind[, code], window)`; kept across a real agent process's restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status, Target
from coldaisle.agent.faultlog import FaultEvent, FaultRecorder, NodeHistories, NodeHistory
from coldaisle.policy.loader import parse_policy
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.run import load_plan
from coldaisle.sim.twin import Twin

HEALTH = Path(__file__).resolve().parents[1] / "health" / "data"
DAY = 86400.0


def test_events_survive_a_new_process_and_are_counted_by_window_and_code(tmp_path: Path) -> None:
    path = tmp_path / "node-history.json"
    h = NodeHistory("n1", path)
    h.add(FaultEvent(1000.0, "xid", 79, "GPU-a"))
    h.add(FaultEvent(1000.0 + 3 * DAY, "xid", 79, "GPU-a"))
    h.add(FaultEvent(1000.0 + 3 * DAY, "xid", 48, "GPU-b"))
    again = NodeHistory("n1", path)  # as a restarted agent reads it
    now = 1000.0 + 4 * DAY
    assert again.count("xid", 7 * DAY, now, 79) == 2 and again.count("xid", 2 * DAY, now, 79) == 1
    assert again.count("xid", 7 * DAY, now) == 3 and again.count("drain", 7 * DAY, now) == 0
    assert again.counts(now)[("xid", "79", "7d")] == 2
    assert again.counts(now)[("xid", "48", "1d")] == 1  # exactly a day old: the window includes its start
    assert again.counts(now + 1)[("xid", "48", "1d")] == 0
    assert not list(tmp_path.glob(".node-history.json.*"))  # no temporary file left: written, then renamed


def test_the_history_is_bounded_in_size_and_age(tmp_path: Path) -> None:
    h = NodeHistory("n1", tmp_path / "h.json", max_events=5, max_age_s=10 * DAY)
    for i in range(8):
        h.add(FaultEvent(1000.0 + i, "kill"))
    assert [e.time for e in h.events] == [1003.0, 1004.0, 1005.0, 1006.0, 1007.0]
    h.add(FaultEvent(1000.0 + 11 * DAY, "drain"))
    assert [e.kind for e in h.events] == ["drain"]
    assert len(json.loads((tmp_path / "h.json").read_text())["events"]) == 1


def test_an_unreadable_history_is_set_aside_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text('{"schema": "coldaisle.node-history/1", "events": [{"time": "soon"')
    h = NodeHistory("n1", path)
    assert h.events == [] and (tmp_path / "h.json.unreadable").read_text().startswith('{"schema"')
    h.add(FaultEvent(1.0, "xid", 79))
    assert json.loads(path.read_text())["events"][0]["code"] == 79


def test_the_recorder_sees_xids_lost_gpus_and_pcie_bursts_on_the_twin() -> None:
    twin = Twin(load_plan(str(HEALTH / "gpu-lost.yaml")))  # GPU 1 falls off the bus at +20 s (Xid 79)
    backend = SimBackend(twin, node="gpu-node-01")
    histories = NodeHistories({"gpu-node-01": NodeHistory("gpu-node-01")})
    recorder = FaultRecorder(histories)
    for _ in range(40):
        recorder.observe(backend.sample())
        twin.clock.sleep(1.0)
    events = [(e.kind, e.code, e.device) for e in histories["gpu-node-01"].events]
    uuid = backend.devices()[1].uuid
    assert events == [("xid", 79, uuid), ("gpu_lost", 79, uuid)]  # once each, not on every later sample
    twin.state.pcie_replay[0] += 137
    twin.state.touch("pcie_replay")
    recorder.observe(backend.sample())
    assert histories["gpu-node-01"].events[-1].kind == "pcie_burst"


def test_outcomes_done_become_drains_resumes_and_kills_dry_runs_do_not() -> None:
    histories = NodeHistories({"n1": NodeHistory("n1")})

    def out(action: ActionKind, status: Status, restore: bool = False, detail: str = "done") -> Outcome:
        return Outcome(Decision(5.0, "r", "critical", action, Target("n1"), restore=restore), status, detail, 5.0)

    for o in (out(ActionKind.DRAIN, Status.DONE), out(ActionKind.DRAIN, Status.DONE, restore=True),
              out(ActionKind.SIGKILL, Status.DONE), out(ActionKind.DRAIN, Status.DRY_RUN),
              out(ActionKind.DRAIN, Status.REFUSED), out(ActionKind.DRAIN, Status.DONE, detail="already drained")):
        histories.record_outcome(o)
    assert [e.kind for e in histories["n1"].events] == ["drain", "resume", "kill"]
    assert histories.count("n1", "drain", None, 60, 10.0) == 1 and histories.count("nope", "drain", None, 60, 10) == 0


def test_counts_for_every_node_at_once_follow_new_events_and_the_window_edge() -> None:
    """The policy's per-step answer is kept between steps: it must still change when an event is added anywhere
    and when the oldest counted event leaves the window."""
    histories = NodeHistories({n: NodeHistory(n) for n in ("n1", "n2", "n3")})
    names = ["n1", "n2", "n3"]
    histories["n2"].add(FaultEvent(100.0, "xid", 79))
    histories["n2"].add(FaultEvent(150.0, "xid", 79))
    histories["n3"].add(FaultEvent(120.0, "xid", 48))
    assert histories.count_many(names, "xid", 79, 60.0, 155.0).tolist() == [0, 2, 0]
    assert histories.count_many(names, "xid", None, 60.0, 159.0).tolist() == [0, 2, 1]
    assert histories.count_many(names, "xid", 79, 60.0, 159.9).tolist() == [0, 2, 0]  # kept
    assert histories.count_many(names, "xid", 79, 60.0, 160.0).tolist() == [0, 2, 0]  # the window includes its edge
    assert histories.count_many(names, "xid", 79, 60.0, 160.5).tolist() == [0, 1, 0]  # 100 s left the window
    histories["n1"].add(FaultEvent(161.0, "xid", 79))
    assert histories.count_many(names, "xid", 79, 60.0, 161.0).tolist() == [1, 1, 0]  # a new event, at once
    assert histories.count_many(names, "xid", 79, 60.0, 300.0).tolist() == [0, 0, 0]
    assert histories.count_many(["n3", "n9"], "xid", 48, 600.0, 300.0).tolist() == [1, 0]  # unknown node: 0


def test_a_policy_counts_the_history_per_node() -> None:
    """`count(xid, 79, "7 d") >= 2` fires on the node whose history says so, and only there."""
    from coldaisle.agent.loop import Agent, LocalNode

    twin = Twin(load_plan(str(HEALTH / "healthy-node.yaml")))
    backend = SimBackend(twin)
    node = backend.devices()[0].node
    histories = NodeHistories({node: NodeHistory(node)})
    lp = parse_policy('rules:\n  - name: twice\n    scope: node\n    when: count(xid, 79, "7 d") >= 2\n'
                      "    actions: [{do: notify}]\n")
    seen: list[Decision] = []
    agent = Agent(backend, lp, type("R", (), {"submit": lambda _s, d: seen.append(d)})(), twin.clock,
                  nodes=LocalNode(node, history=histories))
    now = twin.clock.time()
    histories[node].add(FaultEvent(now - 2 * DAY, "xid", 79))
    agent.run(until=3.0)
    assert seen == []
    histories[node].add(FaultEvent(now, "xid", 79))
    agent.run(until=6.0)
    assert [(d.rule, d.target.node) for d in seen] == [("twice", node)]


def test_a_restarted_agent_keeps_its_nodes_history(tmp_path: Path) -> None:
    """A real agent process sees GPU 1 fall off the bus, stops; started again, it still counts that Xid."""
    def start(scenario: str) -> tuple[subprocess.Popen[bytes], int]:
        port_file = tmp_path / "port"
        proc = subprocess.Popen([sys.executable, "-m", "coldaisle", "agent", "--backend", "sim", "--scenario",
                                 str(HEALTH / scenario), "--node", "gpu-node-01", "--speed", "10", "--dry-run",
                                 "--listen", "127.0.0.1:0", "--audit", str(tmp_path / "audit.jsonl"), "--priority",
                                 "normal"], stdout=subprocess.DEVNULL, stderr=port_file.open("wb"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = port_file.read_text()
            if "metrics on http://127.0.0.1:" in text:
                return proc, int(text.split("metrics on http://127.0.0.1:")[1].split("/")[0])
            time.sleep(0.1)
        raise AssertionError(port_file.read_text())

    proc, _ = start("gpu-lost.yaml")
    history = tmp_path / "node-history.json"
    deadline = time.monotonic() + 30
    while not (history.exists() and '"xid"' in history.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    before = json.loads(history.read_text())["events"]
    proc, port = start("healthy-node.yaml")  # a healthy node now: only the history remembers
    try:
        deadline = time.monotonic() + 30
        text = ""
        while 'kind="xid"' not in text and time.monotonic() < deadline:
            time.sleep(0.2)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'coldaisle_node_fault_events{code="79",kind="xid",node="gpu-node-01",window="1d"} 1.0' in text, text
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["history"]["xid:79:7d"] == 1 and state["history"]["gpu_lost:79:7d"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert json.loads(history.read_text())["events"][: len(before)] == before
    assert os.stat(history).st_size > 0
