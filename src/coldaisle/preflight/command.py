"""The `coldaisle preflight` command: options in, table/JSON/JUnit out, a Nagios-style exit code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from coldaisle.preflight.context import PreflightOptions
from coldaisle.preflight.interface import PreflightError
from coldaisle.preflight.registry import CHECKS
from coldaisle.preflight.render import render_json, render_table, write_junit
from coldaisle.preflight.runner import run_preflight
from coldaisle.telemetry.backend import BackendKind
from coldaisle.units import UnitError, parse_quantity


def preflight(
    python: Annotated[Path | None, typer.Option(help="Inspect this environment's interpreter (default: this one).")
                      ] = None,
    advisories: Annotated[list[Path] | None, typer.Option(
        help="Site-local OSV advisory directory or file (repeatable).")] = None,
    pid: Annotated[int | None, typer.Option(help="Also inspect what this running job loaded (/proc/PID/maps).")
                   ] = None,
    backend: Annotated[str, typer.Option(help="GPU readings: auto (NVML if present), nvml, sim or none.")] = "auto",
    scenario: Annotated[str, typer.Option(help="With --backend sim: the scenario.")] = "healthy-training",
    node: Annotated[str | None, typer.Option(help="With --backend sim: one node's GPUs.")] = None,
    expect_gpus: Annotated[int | None, typer.Option(help="Fail unless this many GPUs are visible.")] = None,
    checkpoint_dir: Annotated[Path, typer.Option(help="Where checkpoints will be written.")] = Path("."),
    min_free_disk: Annotated[str, typer.Option(help='Free space wanted there, e.g. "100 GiB".')] = "20 GiB",
    scan: Annotated[list[Path] | None, typer.Option(help="More directories to inspect for shared objects.")
                    ] = None,
    only: Annotated[list[str] | None, typer.Option(help="Run only these checks (ids or prefixes, repeatable).")
                    ] = None,
    skip: Annotated[list[str] | None, typer.Option(help="Skip these checks (ids or prefixes).")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 on warnings.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report (docs/preflight.md).")] = False,
    junit: Annotated[Path | None, typer.Option(help="Also write a JUnit XML report here.")] = None,
    notes: Annotated[bool, typer.Option(help="Also print what was skipped and why.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the ELF cache.")] = False,
    list_checks: Annotated[bool, typer.Option("--list", help="List the checks and exit.")] = False,
) -> None:
    """Check this host and environment before a job starts (exit 0 clean, 1 warnings with --strict, 2 failures)."""
    out = Console()
    if list_checks:
        for c in CHECKS:
            out.print(f"{c.id:24s} {c.title}", highlight=False)
        return
    try:
        free = parse_quantity(min_free_disk, "bytes")
    except UnitError as exc:
        raise PreflightError(f"--min-free-disk: {exc}") from None
    BackendKind.parse(backend)  # a misspelt --backend is a usage error before any check runs
    opts = PreflightOptions(python=python, advisories=list(advisories or []), pid=pid, backend=backend,
                            scenario=scenario, node=node, expected_gpus=expect_gpus, checkpoint_dir=checkpoint_dir,
                            min_free_disk_bytes=free, scan=list(scan or []), only=list(only or []),
                            skip=list(skip or []), cache=not no_cache)
    report = run_preflight(opts)
    if as_json:
        sys.stdout.write(render_json(report, strict))
    else:
        render_table(report, out, strict=strict, notes=notes)
    if junit is not None:
        write_junit(report, junit, strict)
    sys.exit(report.exit_code(strict))
