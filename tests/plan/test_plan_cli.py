"""`coldaisle plan` as an operator runs it: a real process, JSON they can parse, HTML they can open, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    return subprocess.run([sys.executable, "-m", "coldaisle.cli", "plan", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


INCIDENT = ["--model", "megatron-1t", "--gpu", "h100-pcie-80gb", "--gpus", "512", "--tp", "1", "--pp", "32",
            "--mode", "inference", "--batch", "1", "--context", "100000", "--dtype", "fp16"]


def test_incident_json_answers_the_questions_and_exits_1(tmp_path: Path) -> None:
    proc = cli(*INCIDENT, "--site", "dc4-incident", "--power", "700 W", "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # does not fit: scripts can gate on it
    doc = json.loads(proc.stdout)
    mem, power = doc["memory"], doc["power"]
    assert mem["schema_id"] == "coldaisle.plan.memory/1" and power["schema_id"] == "coldaisle.plan.power/1"
    assert mem["fits"] is False and mem["dominant"] == "weights" and mem["margin_bytes"] < 0
    assert sum(t["bytes"] for t in mem["terms"]) == mem["total_bytes"]
    assert 0 < mem["largest_context"] < 100_000
    assert power["cap_w"] == 435 and 3 < power["minutes_to_limit"] < 6


def test_terminal_table_bar_and_html(tmp_path: Path) -> None:
    html = tmp_path / "plan.html"
    proc = cli("--model", "llama-3.1-8b", "--gpu", "h100-sxm-80gb", "--context", "32768", "--html", str(html),
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "FITS" in out and "GiB" in out and "81,559 MiB" in out
    assert "KV cache" in out and "█" in out  # the breakdown and its stacked bar
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "<svg" in page and "KV cache" in page
    assert not list(tmp_path.glob(".*.tmp"))  # written then renamed
