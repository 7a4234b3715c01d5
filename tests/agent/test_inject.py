"""`coldaisle inject`: real-format fault lines, classified by the same catalog; on the real kernel log, they reach a
running agent's rule, a dry-run action, the audit log and the node's history (as an operator would check)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from coldaisle.agent.inject import FAULTS, fault_lines, inject
from coldaisle.errors import ColdaisleError
from coldaisle.triage.catalog import load_catalog
from promserver import free_port


def test_each_fault_is_a_line_the_catalog_classifies_with_its_gpu() -> None:
    match = load_catalog().matcher().first
    seen = {}
    for fault in FAULTS:
        records = fault_lines(fault, "0000:B1:00.0")
        assert records[0].startswith("<5>coldaisle inject: a test ") and "(not a real fault)" in records[0]
        hits = [h for r in records[1:] if (h := match(r.split(">", 1)[1])) is not None]
        seen[fault] = hits[0]
    assert seen["xid79"].cls == "xid" and seen["xid79"].fields["xid"] == 79
    assert seen["xid79"].fields["pci"] == "0000:b1:00.0"
    assert seen["xid48"].cls == "xid" and seen["xid48"].fields["xid"] == 48
    assert seen["aer-fatal"].cls.startswith("pcie_aer")


def test_bad_input_is_one_clear_error() -> None:
    with pytest.raises(ColdaisleError, match="unknown fault 'xid99'"):
        fault_lines("xid99", "0000:b1:00.0")
    with pytest.raises(ColdaisleError, match="not a PCI address"):
        fault_lines("xid79", "b1:00")
    assert inject("xid79", "0000:b1:00.0", kmsg="/nonexistent", dry_run=True)[1].startswith("<3>NVRM: Xid")


def test_an_injected_xid_reaches_the_running_agent_through_the_real_kernel_log(tmp_path: Path) -> None:
    """The whole path on a node: /dev/kmsg -> follower -> gpu-lost-or-critical-xid -> dry-run drain, audited, and
    the Xid on /metrics (NVML never reports a GPU that fell off the bus: only the kernel log does)."""
    assert os.access("/dev/kmsg", os.W_OK), "the kernel log is not writable here (the test runs as root)"
    audit, port = tmp_path / "audit.jsonl", free_port()
    agent = subprocess.Popen([sys.executable, "-m", "coldaisle", "agent", "--backend", "sim", "--scenario",
                              "runaway-process", "--node", "infer-01", "--kmsg", "/dev/kmsg", "--dry-run",
                              "--listen", f"127.0.0.1:{port}", "--audit", str(audit), "--priority", "normal"],
                             stdout=subprocess.DEVNULL, stderr=(tmp_path / "agent.log").open("wb"))
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "state.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        r = subprocess.run([sys.executable, "-m", "coldaisle", "inject", "xid79", "--pci", "0000:b1:00.0"],
                           capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0 and "NVRM: Xid (PCI:0000:b1:00): 79" in r.stdout, r.stderr
        drains: list[dict] = []
        while not drains and time.monotonic() < deadline + 30:
            time.sleep(0.2)
            records = [json.loads(x) for x in audit.read_text().splitlines() if x.strip()]
            drains = [x for x in records if x["kind"] == "outcome" and x["action"] == "drain"
                      and x["rule"] == "gpu-lost-or-critical-xid"]
        assert drains and drains[0]["status"] == "dry_run" and "infer-01/gpu2" in drains[0]["detail"], records
        history = json.loads((tmp_path / "node-history.json").read_text())["events"]
        assert ("xid", 79, "kernel log") in [(e["kind"], e["code"], e["detail"]) for e in history]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert _gauge(metrics, "coldaisle_gpu_last_xid", gpu="2") == 79, metrics[:2000]
        assert _gauge(metrics, "coldaisle_gpu_xid_errors_total", gpu="2") == 1
    finally:
        agent.terminate()
        agent.wait(30)


def _gauge(text: str, name: str, **labels: str) -> float | None:
    """The value of `name` whose labels include `labels` in a text exposition (None: no such sample)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None
