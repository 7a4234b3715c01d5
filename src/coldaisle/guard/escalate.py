"""The last rung of `coldaisle run`: a node that must not take the next job is taken out of service.

Two reasons: a job process that survives SIGKILL (D state), and, in a job on several nodes, the node whose
rank the others waited for when the job hung (guard.peers).

Only a reboot frees a process in uninterruptible sleep, and a node holding one (and its GPU memory) must
not be given the next job. Under Slurm the node is drained through the same tagged, never-override-a-person
executor the agent uses; elsewhere the user is told what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from coldaisle.errors import ColdaisleError

MODES = ("slurm", "dry-run", "off")


def drain_hook(mode: str, env: dict[str, str] | None = None) -> Callable[[str], str] | None:
    """A `reason -> what happened` callable for the supervisor, or None (`off`)."""
    if mode not in MODES:
        raise ColdaisleError(f"--drain: unknown mode {mode!r}", hint=f"one of {', '.join(MODES)}", exit_code=2)
    if mode == "off":
        return None
    node = (env if env is not None else os.environ).get("SLURMD_NODENAME")

    def drain(reason: str) -> str:
        if not node:
            return "not under Slurm (no SLURMD_NODENAME): drain this node by hand"
        from coldaisle.actions.drain import SlurmDrain

        status, detail = SlurmDrain().drain(node, reason, dry_run=mode == "dry-run")
        return f"{status}: {detail}"

    return drain
