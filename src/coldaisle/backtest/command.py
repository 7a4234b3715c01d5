"""`coldaisle policy backtest`: options in, a progress bar while reading, the report (terminal, JSON or HTML) out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from coldaisle.backtest.mapping import load_mapping
from coldaisle.backtest.prom import Prometheus
from coldaisle.backtest.result import Result, iso
from coldaisle.backtest.run import Window, backtest
from coldaisle.backtest.times import duration, window
from coldaisle.policy.loader import load_policy


def backtest_command(policy: str, prometheus: str, start: str, end: str, step: str = "15s",
                     selector: str | None = None, mapping: Path | None = None, lost_after: str | None = None,
                     as_json: bool = False, html: Path | None = None, err: Console | None = None,
                     out: Console | None = None) -> Result:
    """Load the policy and the mapping first (their errors name file and line), then read and evaluate."""
    err, out = err or Console(stderr=True), out or Console()
    lp = load_policy(policy)
    site = load_mapping(mapping)
    s, e, dt = window(start, end, step)
    w = Window(s, e, dt, selector or "", duration(lost_after, "--lost-after") if lost_after else None)
    with Progress(TextColumn("[bold]reading {task.fields[clock]}"), BarColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("backtest", total=e - s, clock=iso(s))

        def tick(t: float) -> None:
            bar.update(task, completed=t - s, clock=iso(t))

        result = backtest(Prometheus(prometheus), lp, site, w, progress=tick)
    show(result, as_json, html, err, out)
    return result


def show(result: Result, as_json: bool, html: Path | None, err: Console, out: Console) -> None:
    """JSON on stdout, the HTML file, or the report in the terminal (whose own section lists skipped rules)."""
    if as_json or html is not None:
        for skipped in result.skipped:
            err.print(f"[yellow]not evaluated:[/yellow] {skipped.rule} {skipped.why}", highlight=False,
                      soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=1) + "\n")
        return
    from coldaisle.backtest.render import build_report
    from coldaisle.report import render_terminal, write_html

    report = build_report(result)
    if html is None:
        render_terminal(report, out)
        return
    write_html(report, html)
    err.print(f"HTML report: {html.resolve()}")
