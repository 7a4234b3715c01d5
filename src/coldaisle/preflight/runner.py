"""Run the selected checks over one Context; no check can stop the others."""

from __future__ import annotations

import logging

from coldaisle.errors import ColdaisleError
from coldaisle.preflight.context import Context, PreflightOptions
from coldaisle.preflight.interface import CheckSeverity, Finding, Note, PreflightError, Skip
from coldaisle.preflight.registry import select
from coldaisle.preflight.report import CheckRun, PreflightReport

log = logging.getLogger("coldaisle.preflight")


def run_preflight(options: PreflightOptions) -> PreflightReport:
    """Run preflight and return the PreflightReport; `report.failed` means: refuse to start the job."""
    checks = select(options.only, options.skip)
    ctx = Context(options)
    if options.pid is not None:
        _ = ctx.loaded_libraries  # a --pid that cannot be read is a usage error (exit 3), not a finding
    report = PreflightReport(started=ctx.clock.time())
    t0 = ctx.clock.monotonic()
    try:
        for check in checks:
            start = ctx.clock.monotonic()
            status, reason = "ran", ""
            try:
                for item in check.run(ctx):
                    (report.notes if isinstance(item, Note) else report.findings).append(item)
            except Skip as why:
                status, reason = "skipped", str(why)
                report.notes.append(Note(check.id, f"skipped: {why}"))
            except PreflightError:
                raise
            except ColdaisleError as exc:
                status, reason = "error", exc.message
                report.findings.append(Finding(check.id, CheckSeverity.FAIL, exc.message, check.title, exc.hint))
            except Exception as exc:  # a bug in one check is reported, and the others still run
                log.exception("preflight check %s crashed", check.id)
                status, reason = "error", f"{type(exc).__name__}: {exc}"
                report.findings.append(Finding(check.id, CheckSeverity.WARN, f"the check itself failed: {reason}",
                                               check.title, "report this as a coldaisle bug"))
            report.checks.append(CheckRun(check.id, check.title, status, ctx.clock.monotonic() - start, reason))
    finally:
        ctx.close()
    report.duration_s = ctx.clock.monotonic() - t0
    return report
