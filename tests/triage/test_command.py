"""`coldaisle triage` as a user runs it: a real process over the twin's logs, JSON, Markdown and HTML drafts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from coldaisle.triage.report_json import SCHEMA


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    return subprocess.run([sys.executable, "-m", "coldaisle.cli", "triage", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_json_markdown_html(unbound: tuple[Path, list], tmp_path: Path) -> None:
    proc = cli(str(unbound[0]), "--json", "--markdown", "pm/draft.md", "--html", "pm/draft.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == SCHEMA and doc["engine"] == "hyperscan"
    top = {h["kind"]: h for h in doc["hypotheses"]}
    assert top["collective"]["origin"] == "node-gpu-88" and top["memory"]["origin"] == "node-gpu-102"
    ev = top["memory"]["evidence"]
    assert {"time", "uptime_s", "clock", "host", "class", "severity", "raw", "file", "line"} <= set(ev[0])
    big = max(doc["groups"], key=lambda g: g["count"])
    assert big["hosts_compact"] == "node-gpu-[01-128]" and big["count"] >= 500
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]) for e in doc["events"]
               if e["time"])
    assert doc["input"]["files"] > 128 and doc["input"]["unreadable"] == []
    md = (tmp_path / "pm" / "draft.md").read_text()
    for heading in ("## Summary", "## Root cause", "## Timeline", "## Impact", "## Evidence"):
        assert heading in md
    svg = (tmp_path / "pm" / "draft-1.svg").read_text()
    assert "node-gpu-102" in md and svg.startswith("<svg") and "http://www.w3.org/2000/svg" in svg
    html = (tmp_path / "pm" / "draft.html").read_text()
    assert "<svg" in html and "node-gpu-88" in html
    assert not list((tmp_path / "pm").glob(".*"))  # nothing half-written left behind


def test_terminal_summary(unbound: tuple[Path, list], tmp_path: Path) -> None:
    proc = cli(str(unbound[0]), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Most likely root cause" in proc.stdout and "node-gpu-102" in proc.stdout


def test_nothing_to_read_is_an_error_with_a_hint(tmp_path: Path) -> None:
    proc = cli("no/such/dir", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Error: no log files under no/such/dir" in proc.stderr and "Hint:" in proc.stderr


def test_bad_signature_file_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "sig.yaml").write_text("signatures:\n  - id: a\n    class: x\n    severity: loud\n    pattern: a\n"
                                       "    meaning: m\n")
    (tmp_path / "node-1.log").write_text("x\n")
    proc = cli("node-1.log", "--signatures", "sig.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "sig.yaml:4: signatures[0].severity" in proc.stderr
