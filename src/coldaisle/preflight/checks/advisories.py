"""Installed packages, the driver, the kernel and NCCL/CUDA libraries against known-bad advisories (OSV)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from coldaisle.errors import ConfigError
from coldaisle.preflight.context import Context, Subject
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note
from coldaisle.preflight.osv import SHIPPED_DIR, Advisory, When, advisory_files, affects, load_file


def load_advisories(ctx: Context) -> tuple[list[Advisory], list[Finding | Note]]:
    """Shipped and site-local records; a bad site file is a finding naming file, line and field."""
    paths: list[Path] = advisory_files(SHIPPED_DIR) if ctx.options.shipped_advisories else []
    out: list[Finding | Note] = []
    for p in ctx.options.advisories:
        if p.is_dir():
            found = advisory_files(p)
            if not found:
                out.append(Note(Advisories.id, "no *.json advisory files in this directory", str(p)))
            paths += found
        else:
            paths.append(p)
    records: list[Advisory] = []
    for path in paths:
        try:
            records += load_file(path)
        except ConfigError as exc:
            out.append(Finding(Advisories.id, CheckSeverity.FAIL, f"advisory file rejected: {exc.message}", str(path),
                               "fix the file (OSV JSON, docs/preflight.md) so its advisories are checked"))
    return records, out


def holds(when: When, ctx: Context, subjects: list[Subject]) -> bool:
    """Whether every condition of a record's `when` holds on this host."""
    env = ctx.env
    if any(env.get(k) != v for k, v in when.env.items()):
        return False
    if any(env.get(k) == v for k, v in when.env_not.items()):
        return False
    if when.machine and ctx.machine not in when.machine:
        return False
    if when.kernel_module and when.kernel_module not in ctx.kernel_modules:
        return False
    return all(any(affects(a, s.ecosystem, s.name, s.version) for s in subjects) for a in when.with_)


class Advisories(Check):
    """Every subject (package, driver, kernel, library) against every advisory record."""

    id = "advisories"
    title = "known-bad versions and combinations (OSV advisories)"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """One finding per (record, subject) match whose conditions hold."""
        records, out = load_advisories(ctx)
        yield from out
        subjects = ctx.subjects()
        yield from (self.note(n, "site-packages") for n in getattr(ctx, "dist_notes", []))
        for rec in records:
            spec = rec.database_specific
            if not holds(spec.when, ctx, subjects):
                continue
            for s in subjects:
                if any(affects(a, s.ecosystem, s.name, s.version) for a in rec.affected):
                    sev = CheckSeverity(spec.severity)
                    refs = [r["url"] for r in rec.references if "url" in r]
                    label = s.name if s.ecosystem == "PyPI" else f"{s.ecosystem}/{s.name}"
                    yield self.finding(sev, f"{label} {s.version}: {rec.summary} [{rec.id}]",
                                       f"{label}=={s.version} ({s.where})",
                                       spec.fix or f"move {label} out of the affected range of {rec.id}",
                                       advisory=rec.id, references=refs, file=rec.file)
