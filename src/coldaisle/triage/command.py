"""`coldaisle triage PATH...`: the CLI face of the triage package (registered in coldaisle.cli)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from coldaisle.triage.analyze import TriageResult, triage
from coldaisle.triage.engine import MAX_EVENTS
from coldaisle.triage.interface import TriageError

PROGRESS_FROM_BYTES = 64 << 20  # show a progress bar from this much input on


def _run(paths: list[Path], console: Console, **kw: object) -> TriageResult:
    progress = Progress(TextColumn("[bold]reading logs"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), console=console, transient=True)
    task = progress.add_task("read", total=None)

    def on_files(total: int) -> None:
        progress.update(task, total=total)
        if total >= PROGRESS_FROM_BYTES and console.is_terminal:
            progress.start()

    try:
        return triage(paths, on_files=on_files, on_bytes=lambda n: progress.advance(task, n), **kw)  # type: ignore[arg-type]
    finally:
        progress.stop()


def triage_command(
    paths: Annotated[list[Path], typer.Argument(help="Log files or directories (one folder or file per node).")],
    host: Annotated[str | None, typer.Option(help="Host for lines that name none (default: from the folder "
                                                  "or file name).")] = None,
    signatures: Annotated[list[Path] | None, typer.Option("--signatures", help="Extra signature YAML file "
                                                          "(tried before the shipped catalog); repeatable.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the coldaisle.triage/1 JSON document "
                                                          "(docs/triage.md).")] = False,
    markdown: Annotated[Path | None, typer.Option(help="Write a Markdown post-mortem draft here (plots as SVG "
                                                       "beside it).")] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML post-mortem draft here.")] = None,
    align_clocks: Annotated[bool, typer.Option(help="Correct each host's time by its estimated clock skew.")] = False,
    max_events: Annotated[int, typer.Option(help="Events kept in full; more are counted only.")] = MAX_EVENTS,
) -> None:
    """Read a cluster's logs, put them on one clock, group repeats, and rank where the failure started."""
    from coldaisle.triage import report_json

    out, err = Console(), Console(stderr=True)
    result = _run(paths, err, signatures=signatures or [], host=host, align_clocks=align_clocks,
                  max_events=max_events)
    if result.reading.stats.files == 0:
        raise TriageError(f"no log files under {', '.join(map(str, paths))}",
                          hint="; ".join(result.reading.stats.unreadable) or "pass files or directories of logs")
    if json_out and markdown is None and html is None:  # the drafts (and matplotlib) only when asked for
        report_json.write(result, sys.stdout)
        return
    from coldaisle.report import render_terminal, write_html
    from coldaisle.triage import report_doc

    report = report_doc.build(result, time.time())
    for target in (markdown, html):
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
    if markdown is not None:
        report_doc.write_atomic(markdown, report_doc.markdown(report, markdown.with_suffix("")))
    if html is not None:
        write_html(report, html)
    if json_out:
        report_json.write(result, sys.stdout)
        return
    render_terminal(report_doc.terminal_view(report), out)
