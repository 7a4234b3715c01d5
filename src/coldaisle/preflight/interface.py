"""The preflight plug-in family: a `Check` looks at one aspect of a host and returns `Finding`s.

A check never raises to stop the run: it returns findings, or raises `Skip` with the reason it could not
look (no GPU backend, no fabric manager); the runner turns any other exception into a finding too, so one
broken check never hides what the others saw.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from coldaisle.errors import ColdaisleError

if TYPE_CHECKING:
    from coldaisle.preflight.context import Context


class CheckSeverity(StrEnum):
    """How bad a finding is; `fail` refuses a deployment, `warn` refuses it only with --strict."""

    FAIL = "fail"
    WARN = "warn"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Sort order, worst first."""
        return {CheckSeverity.FAIL: 0, CheckSeverity.WARN: 1, CheckSeverity.INFO: 2}[self]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: which check saw it, how bad it is, what it concerns and the one-line fix."""

    check: str
    severity: CheckSeverity
    message: str
    subject: str = ""  # the file, path, package, variable or device it concerns
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The documented JSON shape (docs/preflight.md)."""
        out: dict[str, Any] = {"check": self.check, "severity": str(self.severity), "message": self.message,
                               "subject": self.subject, "fix": self.fix}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True, slots=True)
class Note:
    """Something a check skipped or could not look at, and why (never a failure on its own)."""

    check: str
    message: str
    subject: str = ""

    def to_json(self) -> dict[str, str]:
        """The documented JSON shape."""
        return {"check": self.check, "message": self.message, "subject": self.subject}


class Skip(Exception):
    """Raised by a check that cannot run here; the reason becomes a Note."""


class PreflightError(ColdaisleError):
    """Preflight itself could not run (bad options); Nagios' UNKNOWN."""

    exit_code = 3


class Check(ABC):
    """One aspect of a host, looked at through the shared Context; subclasses set `id` and `title`."""

    id: ClassVar[str]
    title: ClassVar[str]

    @abstractmethod
    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Findings (problems) and notes (what was skipped); raise Skip when nothing could be looked at."""

    def finding(self, severity: CheckSeverity, message: str, subject: str = "", fix: str = "",
                **details: Any) -> Finding:
        """A Finding attributed to this check."""
        return Finding(self.id, severity, message, subject, fix, details)

    def note(self, message: str, subject: str = "") -> Note:
        """A Note attributed to this check."""
        return Note(self.id, message, subject)
