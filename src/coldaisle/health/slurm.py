"""What health, prolog and epilog ask of Slurm: the node's name, drains tagged as ours, a job's record.

Drains go through the agent's own executor (`actions.drain.SlurmDrain`), so a person's drain is never
overwritten. Health tags its reasons `coldaisle: health: ...` and resumes only drains with that tag: a
drain by a person, by the agent's policy or by Slurm itself (`Prolog error`) stays until its owner
lifts it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from coldaisle.actions.drain import TAG, Runner, SlurmDrain
from coldaisle.actions.fleet import FleetBreaker
from coldaisle.actions.interface import Status

HEALTH_TAG = f"{TAG} health:"
_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/.]*)=")


def node_name(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """This node as Slurm names it: --node, else SLURMD_NODENAME (set for health checks and prologs), else
    the short host name."""
    env = os.environ if env is None else env
    return explicit or env.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


@dataclass(frozen=True, slots=True)
class NodeAction:
    """What health did to the node: drained, resumed, left alone, or failed, in words."""

    status: Status
    detail: str


def drain_for_health(drain: SlurmDrain, node: str, reason: str, *, dry_run: bool = False,
                     breaker: FleetBreaker | None = None) -> NodeAction:
    """Drain `node` with `coldaisle: health: <reason>`; a node already out of service is left as it is.

    With a `breaker` (the agent's policy's fleet breaker), the drain is counted as the agent counts its own:
    refused when one more node out would exceed the share of the fleet, and undone when it raced others over it.
    """
    in_service = True
    if breaker is not None:
        why, in_service = breaker.before(node)
        if why is not None:
            return NodeAction(Status.REFUSED, f"{node} not drained: {why}")
    status, detail = drain.drain(node, f"health: {reason}", dry_run=dry_run)
    if breaker is None or dry_run or status != Status.DONE or not in_service:
        return NodeAction(status, detail)
    why = breaker.after(node)
    if why is None:
        return NodeAction(status, detail)
    _, undone = drain.undrain(node)
    return NodeAction(Status.REFUSED, f"{why}; {undone}")


def resume_if_ours(drain: SlurmDrain, node: str, *, dry_run: bool = False) -> NodeAction | None:
    """Resume `node` if, and only if, health drained it; None when there was nothing of ours to undo."""
    current = drain.show(node)
    if isinstance(current, str):
        return NodeAction(Status.FAILED, current)
    if not current.unavailable or not current.reason.startswith(HEALTH_TAG):
        return None
    status, detail = drain.undrain(node, dry_run=dry_run)
    return NodeAction(status, detail)


def parse_oneliner(line: str) -> dict[str, str]:
    """`scontrol show job -o` as a mapping; a value runs to the next `Key=` (Comment may hold spaces)."""
    line = line.strip()
    matches = list(_KEY.finditer(line))
    out: dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        out[m.group(1)] = line[m.end():end].strip()
    return out


class SlurmJobs:
    """Job records and the two job updates the prolog needs (AdminComment, cancel), through argv calls."""

    def __init__(self, scontrol: str = "scontrol", scancel: str = "scancel", runner: Runner = subprocess.run,
                 timeout_s: float = 10.0) -> None:
        self.scontrol, self.scancel, self.runner, self.timeout_s = scontrol, scancel, runner, timeout_s

    def show(self, job_id: str) -> dict[str, str]:
        """The job's record (`scontrol show job -o ID`), or {} when Slurm cannot say."""
        ok, text = self._call([self.scontrol, "show", "job", "-o", job_id])
        return parse_oneliner(text.splitlines()[0]) if ok and text.strip() else {}

    def annotate(self, job_id: str, text: str) -> tuple[bool, str]:
        """Set the job's AdminComment (shown by `scontrol show job` and kept by accounting)."""
        flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())[:1000]
        return self._call([self.scontrol, "update", f"JobId={job_id}", f"AdminComment={flat}"])

    def cancel(self, job_id: str) -> tuple[bool, str]:
        """Cancel the job (the prolog's refusal)."""
        return self._call([self.scancel, job_id])

    def _call(self, argv: list[str]) -> tuple[bool, str]:
        try:
            cp = self.runner(argv, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"{argv[0]}: {exc}"
        if cp.returncode != 0:
            return False, (cp.stderr or cp.stdout or f"exit {cp.returncode}").strip()
        return True, cp.stdout or ""
