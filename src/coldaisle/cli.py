"""The `coldaisle` command: each subcommand is a thin function over a part of the package."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from coldaisle import __version__
from coldaisle.errors import ColdaisleError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Keep GPU clusters from cooking themselves and jobs from failing silently.")
sim_app = typer.Typer(no_args_is_help=True, help="The digital twin: run scenarios on a simulated cluster.")
app.add_typer(sim_app, name="sim")
policy_app = typer.Typer(no_args_is_help=True, help="Validate and export policies.")
app.add_typer(policy_app, name="policy")

out = Console()
err = Console(stderr=True)


def _progress(console: Console, label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.fields[clock]}"),
                    TimeRemainingColumn(), console=console, transient=True)


def _run(plan_name: str, until: str | None, console: Console, label: str):  # type: ignore[no-untyped-def]
    from coldaisle.sim.replay import load_plan, parse_until, replay
    from coldaisle.sim.summary import iso

    plan = load_plan(plan_name)
    until_s = parse_until(until, plan)
    end = plan.duration_s if until_s is None else until_s
    with _progress(console, label) as bar:
        task = bar.add_task("run", total=end, clock="")

        def tick(t: float, total: float) -> None:
            bar.update(task, completed=t, clock=iso(plan.start_epoch + t)[:16].replace("T", " "))

        return replay(plan, until_s=until_s, progress=tick)


@sim_app.command("run")
def sim_run(
    scenario: Annotated[str, typer.Argument(help="Scenario file, or the name of a shipped one.")],
    until: Annotated[str | None, typer.Option(help='Stop early: "+6 h", "09:00" or an ISO time.')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (docs/sim.md).")] = False,
    logs: Annotated[Path | None, typer.Option(help="Write every node's logs, in real formats, here.")] = None,
) -> None:
    """Run SCENARIO on the twin and print what happened."""
    from coldaisle.report import render_terminal
    from coldaisle.sim.demo import build_report
    from coldaisle.sim.summary import summarize

    twin = _run(scenario, until, err, "simulating")
    if logs is not None:
        from coldaisle.sim.replay import write_logs

        write_logs(twin, logs)
        err.print(f"logs written to {logs}/")
    if as_json:
        sys.stdout.write(json.dumps(summarize(twin), indent=1) + "\n")
        return
    render_terminal(build_report(twin), out)


@app.command()
def demo(
    html: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path("coldaisle-demo.html"),
    scenario: Annotated[str, typer.Option(help="Scenario to replay.")] = "prometheus-unbound",
    until: Annotated[str | None, typer.Option(help='Stop early: "+6 h", "09:00" or an ISO time.')] = None,
) -> None:
    """Replay the incident on the simulator and show what happened, in the terminal and as HTML."""
    from coldaisle.report import render_terminal, write_html
    from coldaisle.sim.demo import build_report

    twin = _run(scenario, until, out, "replaying the incident")
    report = build_report(twin)
    render_terminal(report, out)
    write_html(report, html)
    out.print(f"\n[bold]HTML report:[/bold] {html.resolve()}")


@policy_app.command("check")
def policy_check(
    file: Annotated[str, typer.Argument(help="Policy file, or `default` for the shipped one.")],
) -> None:
    """Validate FILE: schema, every condition compiled; errors name file:line:field."""
    from coldaisle.policy.loader import load_policy

    lp = load_policy(file)
    out.print(f"{lp.source}: {len(lp.rules)} rules OK (mode: {lp.policy.mode})")
    for cr in lp.rules:
        rungs = ", ".join(f"{r.do}" + (f"+{r.after:g}s" if r.after else "") for r in cr.rule.actions)
        out.print(f"  {cr.rule.name:32s} {cr.rule.scope:8s} for {cr.rule.for_:>4g} s  -> {rungs}", highlight=False)


@policy_app.command("export")
def policy_export(
    file: Annotated[str, typer.Argument(help="Policy file, or `default`.")],
    fmt: Annotated[str, typer.Option("--format", help="Only `prometheus` (alerting rules) for now.")] = "prometheus",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
) -> None:
    """Export FILE as Prometheus alerting rules for fleet-level alerting."""
    from coldaisle.policy.loader import load_policy
    from coldaisle.policy.promql import export_prometheus

    if fmt != "prometheus":
        raise ColdaisleError(f"unknown export format {fmt!r}", hint="use --format prometheus", exit_code=2)
    text = export_prometheus(load_policy(file))
    if output is None:
        sys.stdout.write(text)
        return
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)
    err.print(f"wrote {output}")


@app.command()
def version() -> None:
    """Print coldaisle's version."""
    out.print(__version__)


def main() -> None:
    """Entry point: run the app, turning ColdaisleError into `Error:`/`Hint:` and its exit code."""
    try:
        app(standalone_mode=False)
    except ColdaisleError as exc:
        err.print(f"[bold red]Error:[/bold red] {escape(exc.message)}", highlight=False, soft_wrap=True)
        if exc.hint:
            err.print(f"[bold]Hint:[/bold] {escape(exc.hint)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("Aborted.")
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
