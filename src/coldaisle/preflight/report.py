"""The result of a preflight run and its exit code (0 clean, 1 warnings with --strict, 2 failures)."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

from coldaisle.preflight.interface import CheckSeverity, Finding, Note

SCHEMA = "coldaisle.preflight/1"
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3  # Nagios plugin exit codes


@dataclass(frozen=True, slots=True)
class CheckRun:
    """How one check went: ran (with how many findings), skipped (why), or crashed."""

    id: str
    title: str
    status: str  # ran | skipped | error
    duration_s: float
    reason: str = ""


@dataclass
class PreflightReport:
    """Every finding, note and check of one run."""

    findings: list[Finding] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    checks: list[CheckRun] = field(default_factory=list)
    started: float = 0.0
    duration_s: float = 0.0
    host: str = field(default_factory=platform.node)

    def count(self, severity: CheckSeverity) -> int:
        """Findings of one severity."""
        return sum(f.severity == severity for f in self.findings)

    @property
    def failed(self) -> bool:
        """At least one `fail` finding: refuse the deployment."""
        return self.count(CheckSeverity.FAIL) > 0

    def exit_code(self, strict: bool = False) -> int:
        """2 on failures, 1 on warnings under --strict, else 0 (Nagios CRITICAL / WARNING / OK)."""
        if self.failed:
            return CRITICAL
        return WARNING if strict and self.count(CheckSeverity.WARN) else OK

    def sorted_findings(self) -> list[Finding]:
        """Worst first, then by check and subject."""
        return sorted(self.findings, key=lambda f: (f.severity.rank, f.check, f.subject))

    def to_json(self, strict: bool = False) -> dict[str, Any]:
        """The documented JSON document (docs/preflight.md)."""
        return {
            "schema": SCHEMA, "host": self.host, "started": self.started, "duration_s": round(self.duration_s, 3),
            "exit_code": self.exit_code(strict), "strict": strict,
            "summary": {s.value: self.count(s) for s in CheckSeverity},
            "findings": [f.to_json() for f in self.sorted_findings()],
            "notes": [n.to_json() for n in self.notes],
            "checks": [{"id": c.id, "title": c.title, "status": c.status, "duration_s": round(c.duration_s, 4),
                        "reason": c.reason} for c in self.checks],
        }
