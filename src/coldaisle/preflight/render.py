"""A preflight PreflightReport for people (a rich table per severity) and for machines (JSON, JUnit XML)."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from coldaisle.preflight.interface import CheckSeverity
from coldaisle.preflight.report import PreflightReport

STYLES = {CheckSeverity.FAIL: "bold red", CheckSeverity.WARN: "bold yellow", CheckSeverity.INFO: "cyan"}
TITLES = {CheckSeverity.FAIL: "FAIL", CheckSeverity.WARN: "WARN", CheckSeverity.INFO: "INFO"}


def render_table(report: PreflightReport, console: Console, *, strict: bool = False, notes: bool = False) -> None:
    """One table per severity (worst first), each row with its one-line fix, then a summary line."""
    for sev in CheckSeverity:
        rows = [f for f in report.sorted_findings() if f.severity == sev]
        if not rows:
            continue
        table = Table(title=f"[{STYLES[sev]}]{TITLES[sev]}[/] ({len(rows)})", title_justify="left", expand=True,
                      show_lines=False)
        table.add_column("check", style="dim", no_wrap=True)
        table.add_column("subject", overflow="fold", ratio=2)
        table.add_column("problem", overflow="fold", ratio=3)
        table.add_column("fix", overflow="fold", ratio=2, style="green")
        for f in rows:
            table.add_row(f.check, escape(f.subject), escape(f.message), escape(f.fix))
        console.print(table)
    if notes and report.notes:
        for n in report.notes:
            console.print(f"[dim]note {n.check}: {escape(n.subject + ': ' if n.subject else '')}{escape(n.message)}")
    code = report.exit_code(strict)
    verdict = {0: "[bold green]PASS", 1: "[bold yellow]WARN", 2: "[bold red]FAIL"}.get(code, "UNKNOWN")
    ran = sum(c.status == "ran" for c in report.checks)
    console.print(f"{verdict}[/] {report.count(CheckSeverity.FAIL)} failed, "
                  f"{report.count(CheckSeverity.WARN)} warnings, "
                  f"{report.count(CheckSeverity.INFO)} info; {ran}/{len(report.checks)} checks ran, "
                  f"{len(report.checks) - ran} skipped, in {report.duration_s:.2f} s (exit {code})")


def render_json(report: PreflightReport, strict: bool = False) -> str:
    """The JSON document of docs/preflight.md."""
    return json.dumps(report.to_json(strict), indent=1) + "\n"


def junit_xml(report: PreflightReport, strict: bool = False) -> bytes:
    """JUnit XML: a test case per check; fail findings (and warnings under --strict) are <failure>s."""
    failing = {CheckSeverity.FAIL, CheckSeverity.WARN} if strict else {CheckSeverity.FAIL}
    suite = ET.Element("testsuite", name="coldaisle.preflight", tests=str(len(report.checks)),
                       time=f"{report.duration_s:.3f}", hostname=report.host)
    failures = skipped = 0
    for run in report.checks:
        case = ET.SubElement(suite, "testcase", classname="coldaisle.preflight", name=run.id,
                             time=f"{run.duration_s:.4f}")
        mine = [f for f in report.sorted_findings() if f.check == run.id]
        bad = [f for f in mine if f.severity in failing]
        if bad:
            failures += 1
            text = "\n".join(f"[{f.severity}] {f.subject}: {f.message} (fix: {f.fix})" for f in bad)
            ET.SubElement(case, "failure", message=bad[0].message, type=str(bad[0].severity)).text = text
        elif run.status == "skipped":
            skipped += 1
            ET.SubElement(case, "skipped", message=run.reason)
        rest = [f for f in mine if f not in bad]
        if rest:
            ET.SubElement(case, "system-out").text = "\n".join(
                f"[{f.severity}] {f.subject}: {f.message} (fix: {f.fix})" for f in rest)
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def write_junit(report: PreflightReport, path: Path, strict: bool = False) -> None:
    """Write the JUnit file to a temporary name, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(junit_xml(report, strict))
    tmp.replace(path)
