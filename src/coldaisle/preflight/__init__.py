"""`coldaisle preflight`: refuse a deployment that will deadlock, mislink or overheat before it starts.

    from coldaisle.preflight import Options, run_preflight
    report = run_preflight(Options())
    if report.failed: ...  # refuse to start; report.exit_code(strict) for a shell
"""

from coldaisle.preflight.context import Options
from coldaisle.preflight.interface import Check, Finding, Note, PreflightError, Severity
from coldaisle.preflight.report import Report
from coldaisle.preflight.runner import run_preflight

__all__ = ["Check", "Finding", "Note", "Options", "PreflightError", "Report", "Severity", "run_preflight"]
