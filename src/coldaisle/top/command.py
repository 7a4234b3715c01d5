"""The `coldaisle top` command: options in, a TopOptions out, the screen loop in `top.app`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def top_command(
    backend: Annotated[str, typer.Option(help="auto (NVML), nvml, or sim.")] = "auto",
    scenario: Annotated[str, typer.Option(help="With --backend sim: the scenario to play.")] = "prometheus-unbound",
    node: Annotated[str | None, typer.Option(help="With --backend sim: the node to watch (default: the first).")
                    ] = None,
    speed: Annotated[float, typer.Option(help="With --backend sim: simulated seconds per real second.")] = 1.0,
    start: Annotated[str | None, typer.Option(help='With --backend sim: scenario time to start from, e.g. '
                                                   '"03:03" or "+3 min".')] = None,
    policy: Annotated[str, typer.Option(help="Policy file, or `default`.")] = "default",
    enforce: Annotated[bool | None, typer.Option("--enforce/--dry-run",
                                                 help="Act, or only decide (default: the simulator enforces, a "
                                                      "real node only decides: the agent acts there).")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between samples.")] = 1.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many (simulated) seconds.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one screen and exit (also without a terminal).")
                    ] = False,
    audit: Annotated[Path | None, typer.Option(help="Keep the audit log here (default: a temporary file).")
                     ] = None,
) -> None:
    """A live view of one node: GPUs with sparklines, processes and jobs, rules pending and firing, actions."""
    from coldaisle.errors import ColdaisleError
    from coldaisle.top.app import run
    from coldaisle.top.session import TopOptions

    if speed <= 0 or interval <= 0:
        raise ColdaisleError("--speed and --interval must be positive", exit_code=2)
    o = TopOptions(backend=backend, scenario=scenario, node=node, speed=speed, start=start, policy=policy,
                   enforce=enforce, interval_s=interval, duration_s=duration, audit=audit)
    raise typer.Exit(run(o, Console(), once=once))
