"""`coldaisle preflight`: refuse a deployment that will deadlock, mislink or overheat before it starts.

    from coldaisle.preflight import PreflightOptions, run_preflight
    report = run_preflight(PreflightOptions())
    if report.failed: ...  # refuse to start; report.exit_code(strict) for a shell
"""

from coldaisle.preflight.context import PreflightOptions
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note, PreflightError
from coldaisle.preflight.report import PreflightReport
from coldaisle.preflight.runner import run_preflight

__all__ = ["Check", "CheckSeverity", "Finding", "Note", "PreflightError", "PreflightOptions", "PreflightReport",
           "run_preflight"]
