"""The acceptance test of issue 15: the prometheus-unbound night, backfilled into a real Prometheus, backtested
with the default policy, gives the protected replay's own firings (rule, node, time within one step).

The protected replay runs the real node runtime on the twin with the agent sampling every 5 s, and the OpenMetrics
writer records every Frame the agent saw in dcgm-exporter's names (replay/openmetrics.py); promtool turns the file
into TSDB blocks and the Debian `prometheus` serves them. Two spans are written (the night's first six minutes: the
PCIe fault on node-gpu-88 and the deadlock; and 04:14-04:17: the KV-cache runaway on node-gpu-102), so the file stays
small enough to load in seconds.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from coldaisle.actions.audit import read
from coldaisle.backtest.mapping import load_mapping
from coldaisle.backtest.prom import Prometheus
from coldaisle.backtest.run import Window, backtest
from coldaisle.policy.loader import load_policy
from coldaisle.replay.openmetrics import recorded_run
from coldaisle.sim.run import load_plan

STEP = 5.0
SPANS = ((0.0, 360.0), (4440.0, 4620.0))
#: the families the default policy's evaluable rules read, and the job's progress (coldaisle's own series)
NEEDED = ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_PROF_PCIE_RX_BYTES",
          "DCGM_FI_PROF_NVLINK_RX_BYTES", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
          "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_SLOWDOWN_TEMP",
          "coldaisle_job_progress_age_seconds")
KILLS = ("sigterm", "sigkill")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _protected(audit: Path, rules: set[str], a: float, b: float) -> dict[tuple[str, str, str], float]:
    """(rule, action, node) -> first time, from the protected replay's audit log: decisions of the rules the
    backtest evaluates, except kills (their targets are PIDs, which Prometheus does not hold)."""
    out: dict[tuple[str, str, str], float] = {}
    for r in read(audit):
        if r.get("kind") != "decision" or r.get("restore") or r["rule"] not in rules or r["action"] in KILLS:
            continue
        t = _epoch(r["time"])
        if a <= t <= b:
            out.setdefault((r["rule"], r["action"], r["target"]["node"]), t)
    return out


@pytest.mark.slow
@pytest.mark.prometheus
def test_the_backtest_of_the_night_fires_as_the_protected_replay_did(tmp_path: Path, prometheus_with) -> None:
    plan = load_plan("prometheus-unbound")
    night, audit = tmp_path / "night.om", tmp_path / "audit.jsonl"
    recorded_run(plan, night, policy="default", every_s=STEP, interval_s=STEP, until_s=SPANS[-1][1],
                 audit_path=audit, names=NEEDED, spans=SPANS)
    server = prometheus_with(night)
    lp = load_policy("default")
    found: dict[tuple[str, str, str], float] = {}
    for a, b in SPANS:
        start, end = plan.start_epoch + a, plan.start_epoch + b
        result = backtest(Prometheus(server.url), lp, load_mapping(None), Window(start, end, STEP))
        skipped = {s.rule: s.why for s in result.skipped}
        assert {"runaway-power-process", "inlet-too-hot", "host-memory-pressure"} <= set(skipped)
        others = {r: why for r, why in skipped.items() if r not in ("runaway-power-process", "inlet-too-hot",
                                                                     "host-memory-pressure")}
        # count(kind, ...) rules, and the straggler rule (its score is exported per rank; the twin has none)
        assert all("fault history" in why or "job_straggler_score" in why for why in others.values()), others
        assert "straggler-rank" in others
        assert result.gpus == 512 and result.nodes == 128
        got = {}
        for f in result.firings:
            for act in f.actions:
                if act.do not in KILLS:
                    got.setdefault((f.rule, act.do, act.node), act.at)
        want = _protected(audit, set(result.totals), start, end)
        assert want, "the protected replay decided nothing in this span: the test would prove nothing"
        assert set(got) == set(want)
        late = {k: (got[k] - want[k]) for k in want if abs(got[k] - want[k]) > STEP}
        assert not late, f"firings more than one step apart: {late}"
        found |= got
    assert {k[:2] for k in found} == {("pcie-errors", "notify"), ("pcie-errors", "drain"),
                                      ("collective-hang", "notify"), ("collective-hang", "drain"),
                                      ("memory-runaway", "notify")}
    assert ("collective-hang", "drain", "node-gpu-88") in found  # the straggler, named from the metrics alone
