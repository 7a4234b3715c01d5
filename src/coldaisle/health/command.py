"""`coldaisle health` (Slurm's HealthCheckProgram, a Nagios check) and `coldaisle slurm prolog|epilog`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from coldaisle.health.check import DEFAULT_STATE, HealthOptions, run_health
from coldaisle.health.epilog import EpilogOptions, run_epilog
from coldaisle.health.prolog import PrologOptions, run_prolog
from coldaisle.health.verdict import Limits

Opt = typer.Option
slurm_app = typer.Typer(no_args_is_help=True, help="Slurm hooks: prolog (plan gate, GPU preflight) and epilog "
                                                   "(bundles, kernel log) (docs/slurm.md).")


def _say(lines: tuple[str, ...] | list[str], stream: object = None) -> None:
    """Plain lines (Slurm and Nagios read text, not colours)."""
    out = stream or sys.stdout
    for line in lines:
        print(line, file=out)  # type: ignore[call-overload]


def health_command(
    state: Annotated[Path, Opt(help="The agent's state file (beside its audit log).")] = DEFAULT_STATE,
    slurm: Annotated[bool, Opt("--slurm", help="Act as Slurm's HealthCheckProgram: drain this node on CRITICAL "
                                               "(reason `coldaisle: health: ...`), resume it on OK if we drained "
                                               "it.")] = False,
    node: Annotated[str | None, Opt(help="Slurm node name (default: SLURMD_NODENAME, else the host name).")] = None,
    max_age: Annotated[float, Opt(help="Seconds after which the state is stale (UNKNOWN).")] = 30.0,
    hung_after: Annotated[float, Opt(help="Seconds without an answer from a GPU that make it CRITICAL.")] = 30.0,
    warn_headroom: Annotated[float, Opt(help="Kelvin to slowdown under which a GPU is WARNING.")] = 5.0,
    expect_gpus: Annotated[int | None, Opt(help="GPUs this node must show (fewer: CRITICAL).")] = None,
    dry_run: Annotated[bool, Opt("--dry-run", help="Say what would be drained or resumed; change nothing.")] = False,
    scontrol: Annotated[str, Opt(help="The scontrol program.")] = "scontrol",
) -> None:
    """Judge the node from the agent's last state: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    o = HealthOptions(state=state, limits=Limits(max_age, hung_after, warn_headroom, expect_gpus), slurm=slurm,
                      node=node, dry_run=dry_run, scontrol=scontrol)
    result = run_health(o)
    _say(result.lines())
    raise typer.Exit(int(result.verdict.status))


@slurm_app.command("prolog")
def prolog_command(
    stage: Annotated[str, Opt(help="auto (from SLURM_SCRIPT_CONTEXT), ctld (PrologSlurmctld: the plan gate) or "
                                   "node (Prolog: GPU preflight).")] = "auto",
    site: Annotated[str | None, Opt(help="Site file or name: also check the plan's power and cooling.")] = None,
    power: Annotated[float | None, Opt(help="Watts per GPU for the site check (default: the card's).")] = None,
    backend: Annotated[str, Opt(help="node stage: auto (NVML), nvml or sim.")] = "auto",
    scenario: Annotated[str, Opt(help="With --backend sim: the scenario.")] = "healthy-training",
    sim_node: Annotated[str | None, Opt(help="With --backend sim: the simulated node.")] = None,
    node: Annotated[str | None, Opt(help="Slurm node name (default: SLURMD_NODENAME).")] = None,
    dry_run: Annotated[bool, Opt("--dry-run", help="Refuse nothing; say what would be refused.")] = False,
) -> None:
    """Refuse a job before it starts: plan gate (PrologSlurmctld) or GPU preflight (Prolog)."""
    o = PrologOptions(stage=stage, site=site, power_w=power, backend=backend, scenario=scenario, sim_node=sim_node,
                      node=node, dry_run=dry_run)
    result = run_prolog(o)
    _say(result.lines, sys.stderr if result.exit_code else sys.stdout)
    raise typer.Exit(result.exit_code)


@slurm_app.command("epilog")
def epilog_command(
    into: Annotated[Path, Opt(help="Where each job's record goes (<into>/<job id>/).")] = Path(
        "/var/lib/coldaisle/jobs"),
    kmsg: Annotated[Path, Opt(help="The kernel log device.")] = Path("/dev/kmsg"),
) -> None:
    """Keep the job's incident bundles and the node's kernel log during the job; always exits 0."""
    result = run_epilog(EpilogOptions(into=into, kmsg=kmsg))
    _say(result.lines)
    raise typer.Exit(0)
