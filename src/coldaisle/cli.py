"""The `coldaisle` command: each subcommand is a thin function over a part of the package."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from coldaisle.errors import ColdaisleError
from coldaisle.health.command import health_command, slurm_app
from coldaisle.plan.cli import plan_command
from coldaisle.preflight.command import preflight as preflight_command
from coldaisle.top.command import top_command
from coldaisle.triage.command import triage_command
from coldaisle.version import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Keep GPU clusters from cooking themselves and jobs from failing silently.")
sim_app = typer.Typer(no_args_is_help=True, help="The digital twin: run scenarios on a simulated cluster.")
app.add_typer(sim_app, name="sim")
policy_app = typer.Typer(no_args_is_help=True, help="Validate, export and backtest policies.")
agent_app = typer.Typer(invoke_without_command=True,
                        help="The node agent: telemetry, /metrics, policy enforcement (docs/agent.md).")
app.add_typer(agent_app, name="agent")
app.add_typer(policy_app, name="policy")
app.command("plan")(plan_command)
app.command("preflight")(preflight_command)
app.command("triage")(triage_command)
app.command("top")(top_command)
app.command("health")(health_command)
app.add_typer(slurm_app, name="slurm")

out = Console()
err = Console(stderr=True)


def _progress(console: Console, label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.fields[clock]}"),
                    TimeRemainingColumn(), console=console, transient=True)


def _run(plan_name: str, until: str | None, console: Console, label: str, policy: str | None = None,
         audit: Path | None = None, openmetrics: Path | None = None,
         scrape_s: float = 15.0):  # type: ignore[no-untyped-def]
    """Replay a scenario with a progress bar; with `policy`, the agent enforces it (returns a Guarded); with
    `openmetrics`, its history is written there in dcgm-exporter names (replay/openmetrics.py)."""
    from coldaisle.replay.paced import protected_run
    from coldaisle.replay.summary import iso
    from coldaisle.sim.run import load_plan, parse_until, replay

    plan = load_plan(plan_name)
    until_s = parse_until(until, plan)
    end = plan.duration_s if until_s is None else until_s
    with _progress(console, label) as bar:
        task = bar.add_task("run", total=end, clock="")

        def tick(t: float, total: float) -> None:
            bar.update(task, completed=t, clock=iso(plan.start_epoch + t)[:16].replace("T", " "))

        if openmetrics is not None:
            from coldaisle.replay.openmetrics import recorded_run

            twin, guarded = recorded_run(plan, openmetrics, policy=policy, every_s=scrape_s, until_s=until_s,
                                         audit_path=audit, progress=tick)
            return twin if guarded is None else guarded
        if policy is None:
            return replay(plan, until_s=until_s, progress=tick)
        return protected_run(plan, policy, until_s=until_s, audit_path=audit, progress=tick)  # paced for a mix


@sim_app.command("run")
def sim_run(
    scenario: Annotated[str, typer.Argument(help="Scenario file, or the name of a shipped one.")],
    until: Annotated[str | None, typer.Option(help='Stop early: "+6 h", "09:00" or an ISO time.')] = None,
    policy: Annotated[str | None, typer.Option(help="Protect the run with this policy file, or `default`.")] = None,
    audit: Annotated[Path | None, typer.Option(help="Audit log path for a protected run.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON (docs/sim.md).")] = False,
    logs: Annotated[Path | None, typer.Option(help="Write every node's logs, in real formats, here.")] = None,
    openmetrics: Annotated[Path | None, typer.Option(
        help="Write the run's history as dcgm-exporter (and coldaisle) series in OpenMetrics text, for "
             "`promtool tsdb create-blocks-from openmetrics` (docs/policy.md).")] = None,
    scrape_interval: Annotated[str, typer.Option(help="--openmetrics: one sample every this long.")] = "15s",
    html: Annotated[Path | None, typer.Option(help="Also write the report as HTML here (with ETTR for a failure "
                                                   "mix).")] = None,
) -> None:
    """Run SCENARIO on the twin (protected by --policy, if given) and print what happened."""
    from coldaisle.backtest.times import duration
    from coldaisle.replay.demo import build_report, protected_report
    from coldaisle.replay.summary import summarize
    from coldaisle.report import render_terminal

    scrape_s = duration(scrape_interval, "--scrape-interval")
    result = _run(scenario, until, err, "simulating", policy, audit, openmetrics, scrape_s)
    if openmetrics is not None:
        err.print(f"history written to {openmetrics}; load it with: promtool tsdb create-blocks-from openmetrics "
                  f"{openmetrics} <prometheus data dir>", soft_wrap=True)
    guarded = result if policy is not None else None
    twin = guarded.twin if guarded is not None else result
    if logs is not None:
        from coldaisle.sim.run import write_logs

        write_logs(twin, logs)
        err.print(f"logs written to {logs}/")
    if as_json:
        summary = summarize(twin)
        if guarded is not None:
            from coldaisle.replay.summary import action_counts, audit_records

            summary["policy"] = guarded.policy.source
            summary["audit_log"] = str(guarded.audit_path)
            summary["actions"] = action_counts(guarded.runner.counts)
            summary["decisions"], summary["outcomes"] = audit_records(guarded.audit_path)
            # false when the log no longer holds the whole run (rotated away) or holds more (an earlier run's)
            summary["audit_complete"] = len(summary["outcomes"]) == summary["actions"]["decisions"]
        sys.stdout.write(json.dumps(summary, indent=1) + "\n")
    if html is None and as_json:
        return
    report = build_report(twin) if guarded is None else protected_report(guarded)
    if html is not None:
        from coldaisle.report import write_html

        write_html(report, html)
        err.print(f"HTML report: {html}")
    if not as_json:
        render_terminal(report, out)


@sim_app.command("compare")
def sim_compare(
    policy_a: Annotated[str, typer.Argument(help="Policy file, `default`, `no-hang-detection` or `none`.")],
    policy_b: Annotated[str, typer.Argument(help="The policy to set beside it.")],
    scenario: Annotated[str, typer.Argument(help="Scenario file, or the name of a shipped one.")],
    until: Annotated[str | None, typer.Option(help='Stop early: "+6 h", "09:00" or an ISO time.')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print both sides as JSON (docs/sim.md).")] = False,
    html: Annotated[Path | None, typer.Option(help="Also write the comparison as HTML here.")] = None,
) -> None:
    """Run SCENARIO under POLICY_A and POLICY_B (same seeded faults) and show ETTR and costs side by side."""
    from coldaisle.replay.compare import compare_report, compare_summary, run_side
    from coldaisle.replay.summary import iso
    from coldaisle.report import render_terminal, write_html
    from coldaisle.sim.run import load_plan, parse_until

    plan = load_plan(scenario)
    until_s = parse_until(until, plan)
    sides = []
    # the two runs' audit logs are gone with the command (a long run's fill gigabytes); the counts it shows are
    # the runners'
    with tempfile.TemporaryDirectory(prefix="coldaisle-compare-") as tmp:
        for side, spec in zip("ab", (policy_a, policy_b), strict=True):
            with _progress(err, f"{scenario} under {spec}") as bar:
                task = bar.add_task("run", total=plan.duration_s if until_s is None else until_s, clock="")

                def tick(t: float, _end: float, bar: Progress = bar, task: TaskID = task) -> None:
                    bar.update(task, completed=t, clock=iso(plan.start_epoch + t)[:16].replace("T", " "))

                sides.append(run_side(plan, spec, until_s=until_s, progress=tick,
                                      audit_path=Path(tmp) / f"audit-{side}.jsonl"))
    report = compare_report(plan, sides[0], sides[1])
    if html is not None:
        write_html(report, html)
        err.print(f"HTML report: {html}")
    if as_json:
        sys.stdout.write(json.dumps(compare_summary(plan, sides[0], sides[1]), indent=1) + "\n")
    else:
        render_terminal(report, out)


@sim_app.command("test")
def sim_test(
    policy: Annotated[str, typer.Argument(help="Policy file, or `default`.")],
    scenarios: Annotated[list[str], typer.Argument(help="Scenario files or shipped names, with `expect:` lists.")],
) -> None:
    """Run each SCENARIO protected by POLICY and check the expectations written in it (exit 1 if any fails)."""
    from coldaisle.replay.expect import check_all

    failed = 0
    for name in scenarios:
        with tempfile.TemporaryDirectory(prefix="coldaisle-sim-test-") as tmp:  # the audit the checks read
            g = _run(name, None, err, f"testing {name}", policy, audit=Path(tmp) / "audit.jsonl")
            checks = check_all(g)
        if not checks:
            err.print(f"[yellow]{name}: the scenario has no `expect:` list; nothing to check[/yellow]")
        for c in checks:
            mark = "[green]PASS[/green]" if c.ok else "[red]FAIL[/red]"
            out.print(f"{mark} {name}: {escape(c.name)} [dim]({escape(c.detail)})[/dim]", soft_wrap=True)
            failed += not c.ok
    if failed:
        raise typer.Exit(1)


@app.command()
def demo(
    html: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path("coldaisle-demo.html"),
    scenario: Annotated[str, typer.Option(help="Scenario to replay.")] = "prometheus-unbound",
    until: Annotated[str, typer.Option(help='How far to replay: "+6 h" (the night, every event), "+72 h" '
                                            '(the whole scenario), "09:00" or an ISO time.')] = "+6 h",
    policy: Annotated[str, typer.Option(help="Policy for the protected run (`default`).")] = "default",
) -> None:
    """Replay the incident on the simulator without and with coldaisle, in the terminal and as HTML."""
    from coldaisle.replay.demo import build_report
    from coldaisle.report import render_terminal, write_html

    twin = _run(scenario, until, out, "replaying the incident, unprotected")
    guarded = _run(scenario, until, out, "replaying it again, protected by coldaisle", policy)
    report = build_report(twin, guarded)
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


@policy_app.command("reference")
def policy_reference() -> None:
    """Print the policy reference (docs/policy.md), generated from the schema."""
    from coldaisle.policy.reference import render

    sys.stdout.write(render())


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


@policy_app.command("backtest")
def policy_backtest(
    file: Annotated[str, typer.Argument(help="Policy file, or `default`.")],
    prometheus: Annotated[str, typer.Option(help="Prometheus URL, e.g. http://prometheus:9090.")],
    start: Annotated[str, typer.Option(help="Window start: 2024-05-21T03:00:00Z, unix seconds, or now-7d.")],
    end: Annotated[str, typer.Option(help="Window end, the same forms.")] = "now",
    step: Annotated[str, typer.Option(help="Evaluate every this long (the data's scrape interval or more).")] = "15s",
    selector: Annotated[str | None, typer.Option(help="Label matchers for every series, e.g. '{cluster=\"a\"}'.")
                        ] = None,
    mapping: Annotated[Path | None, typer.Option(help="Mapping file for relabelled series (docs/policy.md).")] = None,
    lost_after: Annotated[str | None, typer.Option(
        help="A GPU whose newest sample is older than this is lost (default: three scrape intervals).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (coldaisle.backtest/1).")] = False,
    html: Annotated[Path | None, typer.Option(help="Write the report as HTML here.")] = None,
) -> None:
    """Run FILE over a fleet's Prometheus history (dcgm-exporter's or coldaisle's series): what would have fired."""
    from coldaisle.backtest.command import backtest_command

    backtest_command(file, prometheus, start, end, step, selector, mapping, lost_after, as_json, html, err, out)


@agent_app.callback()
def agent(
    ctx: typer.Context,
    backend: Annotated[str, typer.Option(help="auto (NVML), nvml, or sim.")] = "auto",
    scenario: Annotated[str, typer.Option(help="With --backend sim: the scenario to play.")] = "healthy-training",
    node: Annotated[str | None, typer.Option(help="With --backend sim: watch one node (default: the cluster).")] = None,
    speed: Annotated[float, typer.Option(help="With --backend sim: simulated seconds per real second.")] = 1.0,
    policy: Annotated[str, typer.Option(help="Policy file, or `default`.")] = "default",
    enforce: Annotated[bool | None, typer.Option("--enforce/--dry-run",
                                                 help="Act, or only decide and audit (default: the policy's mode; "
                                                      "the simulator enforces).")] = None,
    listen: Annotated[str, typer.Option(help="HOST:PORT for /metrics and /healthz.")] = "127.0.0.1:9410",
    interval: Annotated[float, typer.Option(help="Seconds between samples.")] = 1.0,
    audit: Annotated[Path, typer.Option(help="Audit log (JSON lines).")] = Path("/var/lib/coldaisle/audit.jsonl"),
    dcgm_names: Annotated[bool, typer.Option(help="Also export dcgm-exporter's metric names.")] = False,
    webhook: Annotated[str | None, typer.Option(help="Alertmanager-compatible webhook URL for notify.")] = None,
    priority: Annotated[str, typer.Option(help="realtime, high or normal scheduling.")] = "realtime",
    duration: Annotated[float | None, typer.Option(help="Stop after this many (simulated) seconds.")] = None,
    signatures: Annotated[list[Path] | None, typer.Option(help="Site signature file(s) for the kernel log, in "
                                                               "`coldaisle triage`'s format (repeatable).")] = None,
    bmc: Annotated[Path | None, typer.Option(help="BMC file for the `power_cycle` action (docs/systemd.md); "
                                                  "without it power cycles are refused.")] = None,
    drain: Annotated[str, typer.Option(help="Where drains go: slurm, kubernetes or twin (auto: the twin with "
                                            "--backend sim, else the scheduler the node has).")] = "auto",
    kmsg: Annotated[str, typer.Option(help="Kernel log to follow: auto (/dev/kmsg on a real node, none on the "
                                           "simulator), a path, or off.")] = "auto",
    history: Annotated[Path | None, typer.Option(help="The node's fault history file (default: beside the audit "
                                                      "log).")] = None,
) -> None:
    """Run the node agent (until SIGTERM/Ctrl-C)."""
    if ctx.invoked_subcommand is not None:
        return
    from coldaisle.agent.main import AgentOptions, run

    opts = AgentOptions(backend, scenario, node, speed, policy, enforce, listen, interval, audit, dcgm_names, webhook,
                        priority, duration, list(signatures or []), bmc=bmc, drain=drain, kmsg=kmsg,
                        history=history)
    raise typer.Exit(run(opts, lambda msg: err.print(escape(msg), soft_wrap=True)))


@agent_app.command("reset")
def agent_reset(
    rule: Annotated[str | None, typer.Option(help="Only this rule (default: every rule).")] = None,
    breaker: Annotated[bool, typer.Option("--breaker", help="Close the fleet breaker instead (it refuses every "
                                                            "drain while open; docs/agent.md).")] = False,
    url: Annotated[str, typer.Option(help="The running agent.")] = "http://127.0.0.1:9410",
) -> None:
    """Clear the running agent's latched rule state, or close its fleet breaker, by hand (audited)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise ColdaisleError(f"not an http URL: {url}", exit_code=2)
    if breaker and rule:
        raise ColdaisleError("--breaker and --rule reset different things", hint="give one of them", exit_code=2)
    query = "?breaker=1" if breaker else f"?rule={urllib.parse.quote(rule)}" if rule else ""
    req = urllib.request.Request(f"{url}/reset{query}", method="POST", data=b"")  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - scheme checked above
            out.print(resp.read().decode())
    except urllib.error.HTTPError as exc:
        raise ColdaisleError(f"the agent refused the reset: {exc.code} {exc.read().decode().strip()}") from None
    except OSError as exc:
        raise ColdaisleError(f"no agent answers at {url}: {exc}",
                             hint="is `coldaisle agent` running? pass --url if it listens elsewhere") from None


@app.command()
def inject(
    fault: Annotated[str, typer.Argument(help="xid79, xid48 or aer-fatal.")],
    pci: Annotated[str | None, typer.Option(help="The GPU's PCI address, e.g. 0000:b1:00.0 (default: the first GPU "
                                                 "NVML lists).")] = None,
    kmsg: Annotated[str, typer.Option(help="The kernel log device.")] = "/dev/kmsg",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the lines, write nothing.")] = False,
) -> None:
    """Write a real-format GPU fault line into the kernel log (root), to watch the agent's whole path on a node."""
    from coldaisle.agent.inject import inject as write_fault

    if pci is None:
        from coldaisle.sim.open import BackendChoice, open_backend

        opened = open_backend(BackendChoice("nvml"), hint="give the GPU with --pci 0000:b1:00.0")
        pci = opened.backend.devices()[0].pci_bus_id if opened.backend else ""  # type: ignore[union-attr]
        opened.close()
    for record in write_fault(fault, pci, kmsg=kmsg, dry_run=dry_run):
        out.print(("would write: " if dry_run else "wrote: ") + escape(record), highlight=False, soft_wrap=True)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    hang_timeout: Annotated[float, typer.Option(help="Seconds without heartbeat progress that make a hang at the "
                                                     "latest, whatever the job's rhythm or phase.")] = 300.0,
    adaptive: Annotated[bool, typer.Option(help="Learn the job's step time from its heartbeats and suspect a hang "
                                                "after a few of its steps (docs/run.md).")] = True,
    hang_floor: Annotated[float, typer.Option(help="With --adaptive: never suspect a hang sooner than this many "
                                                   "seconds after the last progress.")] = 8.0,
    grace: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL when stopping the job.")] = 30.0,
    bundle: Annotated[Path | None, typer.Option(help="Incident bundle directory (default: "
                                                     "./coldaisle-run-<UTC time>).")] = None,
    memory_limit: Annotated[str | None, typer.Option(help='Stop the job gracefully before its memory reaches '
                                                          'this, e.g. "20GiB".')] = None,
    io_timeout: Annotated[float | None, typer.Option(help="Seconds to wait for a rank stuck in I/O (D state, a "
                                                          "checkpoint write) before giving up (default: 10x "
                                                          "--hang-timeout, at least 1800).")] = None,
    drain: Annotated[str, typer.Option(help="When a job process survives SIGKILL: `slurm` drains this node "
                                            "(SLURMD_NODENAME), `dry-run` says what it would do, `off`.")] = "slurm",
    no_preflight: Annotated[bool, typer.Option("--no-preflight", help="Start even when `coldaisle preflight` "
                                                                      "finds failures.")] = False,
    plan_file: Annotated[Path | None, typer.Option("--plan", help="A plan request (YAML, `coldaisle plan`'s "
                                                                  "fields): refuse to start when it does not "
                                                                  "fit.")] = None,
    backend: Annotated[str, typer.Option(help="GPU telemetry for the spin and device-memory watches: auto "
                                              "(NVML if present), nvml, sim, none.")] = "auto",
    scenario: Annotated[str, typer.Option(help="With --backend sim: the scenario.")] = "prometheus-unbound",
    sim_node: Annotated[str | None, typer.Option(help="With --backend sim: the node whose GPUs the job "
                                                      "holds.")] = None,
    sim_start: Annotated[str | None, typer.Option(help='With --backend sim: scenario time to start at, '
                                                       'e.g. "03:03".')] = None,
    policy: Annotated[str, typer.Option(help="Policy whose thermal and memory rules may stop the job (needs a "
                                             "backend): default, a file, or none.")] = "default",
    stack_watch: Annotated[str, typer.Option(help="Hang from stacks alone: auto (while no rank reports progress "
                                                  "and no GPU is watched), on, off.")] = "auto",
) -> None:
    """Run a job under supervision: `coldaisle run [OPTIONS] -- CMD ARGS...` (exit codes: docs/run.md)."""
    import time

    from coldaisle.guard.bundle import default_bundle_dir
    from coldaisle.guard.rhythm import Rhythm
    from coldaisle.guard.supervisor import Supervisor
    from coldaisle.telemetry.clock import RealClock
    from coldaisle.units import UnitError, parse_quantity

    try:
        limit = parse_quantity(memory_limit, "bytes") if memory_limit is not None else None
    except UnitError as exc:
        raise ColdaisleError(f"--memory-limit: {exc}", exit_code=2) from None
    from coldaisle.guard.escalate import drain_hook
    from coldaisle.guard.launch import check_executable

    if stack_watch not in ("auto", "on", "off"):
        raise ColdaisleError(f"--stack-watch: unknown mode {stack_watch!r}", hint="auto, on or off", exit_code=2)
    from coldaisle.telemetry.backend import BackendKind

    BackendKind.parse(backend)  # usage errors before any gate runs
    drain_hook(drain)

    if ctx.args:  # a missing program is one error line, before any gate speaks
        check_executable(ctx.args[0], os.environ.get("PATH", os.defpath))
    if plan_file is not None:
        _plan_gate(plan_file)
    if not no_preflight:
        _preflight_gate()
    from coldaisle.guard.telemetry import gpu_watch

    say = lambda msg: err.print(f"coldaisle run: {escape(msg)}", highlight=False, soft_wrap=True)  # noqa: E731
    gpu = gpu_watch(backend, hang_timeout_s=hang_timeout, lead_s=grace + 1.0, env=dict(os.environ),
                    scenario=scenario, node=sim_node, start=sim_start, say=say, policy=policy)
    sup = Supervisor(list(ctx.args), hang_timeout_s=hang_timeout, grace_s=grace,
                     bundle_dir=bundle or default_bundle_dir(time.time()), memory_limit_bytes=limit,
                     io_timeout_s=io_timeout, drain=drain_hook(drain), gpu=gpu, stack_watch=stack_watch,
                     clock=RealClock(), say=say, rhythm=Rhythm(floor_s=hang_floor) if adaptive else None)
    sys.exit(sup.run().exit_code)  # not typer.Exit: click returns its code from app() and main() drops it


def _plan_gate(path: Path) -> None:
    """`coldaisle run --plan job.yaml` refuses a job whose memory (or power) plan does not fit."""
    from coldaisle.plan import require_fit

    verdict = require_fit(path)
    err.print(f"coldaisle run: plan fits: {escape('; '.join(verdict.reasons) or 'ok')}", highlight=False)


def _preflight_gate() -> None:
    """`coldaisle run` refuses a job that preflight fails (a known-deadlocking NCCL, a broken RPATH ...)."""
    from coldaisle.preflight import PreflightOptions, run_preflight
    from coldaisle.preflight.render import render_table

    report = run_preflight(PreflightOptions())
    if report.failed:
        render_table(report, err)
        raise ColdaisleError("preflight failed: the job was not started",
                             hint="fix the failures above, or start anyway with --no-preflight", exit_code=2)


@app.command()
def version() -> None:
    """Print coldaisle's version."""
    out.print(__version__)


def main() -> None:
    """Entry point: run the app, turning ColdaisleError into `Error:`/`Hint:` and its exit code."""
    try:
        rc = app(standalone_mode=False)  # a `raise typer.Exit(code)` comes back here as the return value
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
    except Exception as exc:  # usage errors (typer's own click) arrive here in non-standalone mode
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):  # typer >= 0.29 vendors click: no import to test against
            show()
            sys.exit(code)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
