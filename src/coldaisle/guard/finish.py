"""How a supervised run ends: act on the verdict, leave nothing of the job running, pick the exit code, bundle.

On a verdict every process's stacks are dumped while it is still stuck, then the whole job is stopped (SIGTERM,
SIGKILL after the grace); a process that survives SIGKILL is in D state and its node is drained. Whatever way
the job ended, processes that outlived it (daemonised, left behind) are stopped too. The exit code is the
verdict's (docs/run.md), else the job's own; a death by a signal nobody here sent is a failure of its own.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from coldaisle.guard import flight
from coldaisle.guard.bundle import Incident, write_bundle
from coldaisle.guard.heartbeat import HeartbeatSnapshot
from coldaisle.guard.output import OutputTee
from coldaisle.guard.reap import ReapResult, reap
from coldaisle.guard.recent import RecentTelemetry
from coldaisle.guard.stacks import StackCache
from coldaisle.guard.watch import ExitCode, Verdict, VerdictKind
from coldaisle.telemetry.clock import Clock
from coldaisle.telemetry.procfs import ProcessInfo


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a supervised run ended: our exit code, the verdict (None: the job ended by itself, cleanly) and bundle."""

    exit_code: int
    verdict: Verdict | None
    bundle: Path | None
    job_status: str
    actions: tuple[str, ...]


@dataclass
class Ending:
    """What the end of a run needs: the command, grace, where bundles go, and who to tell."""

    cmd: tuple[str, ...]
    grace_s: float
    bundle_dir: Path
    clock: Clock
    say: Callable[[str], None]
    drain: Callable[[str], str] | None  # called with a reason when a process survives SIGKILL
    stacks: StackCache
    tee: OutputTee
    recent: RecentTelemetry
    notes: Callable[[], dict[str, Any]] = lambda: {}  # what the run learned on the way (pauses, stragglers)

    def __post_init__(self) -> None:
        self.actions: list[str] = []

    def finish(self, proc: subprocess.Popen[bytes], verdict: Verdict | None, members: Callable[[], list[ProcessInfo]],
               forwarded: signal.Signals | None, started: float, flight_dir: Path,
               heartbeats: HeartbeatSnapshot | None) -> RunResult:
        """Stop what must stop, wait for the job, decide the exit code; a bundle for every verdict."""
        stacks: dict[int, str] = {}
        if verdict is not None:
            self.straggler_node(verdict)
            stacks = self._stop(verdict, members())
        elif proc.poll() is None:  # a forwarded signal's grace ran out
            self._record("the job outlived the forwarded signal's grace", reap(members(), 0, self.clock))
        rc = proc.wait()
        leftovers = members()
        if leftovers:
            self._record(f"{len(leftovers)} process(es) outlived the job (daemonised or left behind)",
                         reap(leftovers, self.grace_s, self.clock))
        self.tee.join(2.0)
        verdict, code, status = outcome(rc, verdict, forwarded)
        notes = self.notes()
        if verdict is not None and notes:
            verdict = replace(verdict, evidence={**verdict.evidence, **notes})
        elif verdict is None and notes.get("stragglers_named"):  # a clean end, but a slow rank to look at
            named = ", ".join(f"rank {n['rank']}" + (f" on {n['host']}" if n.get("host") else "")
                              for n in notes["stragglers_named"])
            verdict = Verdict(VerdictKind.STRAGGLER, f"the job {status}, with a straggler: {named}", notes)
        bundle = None
        if verdict is not None:
            incident = Incident(verdict, self.cmd, started, self.clock.time(), code, status, stacks,
                                self.tee.last_lines(), heartbeats, list(self.actions), _files(flight_dir),
                                self.recent)
            bundle = write_bundle(self.bundle_dir, incident)
            self.say(f"incident bundle written to {bundle}")
        return RunResult(code, verdict, bundle, status, tuple(self.actions))

    def _stop(self, verdict: Verdict, members: list[ProcessInfo]) -> dict[int, str]:
        """Dump every process's stacks while they are still stuck, then stop the whole job."""
        self.say(f"{verdict.kind}: {verdict.reason}; stacks of {len(members)} process(es) dumped, then "
                 f"SIGTERM, SIGKILL after {self.grace_s:g} s")
        stacks = self.stacks.with_missing(p.pid for p in members)
        self.actions.append(f"dumped the stacks of {len(stacks)} process(es)")
        result = reap(members, self.grace_s, self.clock)
        self._record(f"stopped the job on {verdict.kind}", result)
        if result.unkillable:
            self._escalate(result.unkillable)
        return stacks

    def _escalate(self, pids: tuple[int, ...]) -> None:
        """A process that outlives SIGKILL is in D state: only a reboot frees it, so the node must not take work."""
        self.take_out(f"job process(es) {', '.join(map(str, pids))} survive SIGKILL (uninterruptible sleep)",
                      "unkillable job process")

    def take_out(self, why: str, tag: str) -> None:
        """Drain this node (as --drain says), and say so; a failing drain is reported, never raised."""
        if self.drain is None:
            line = f"{why}: drain this node by hand (no drain configured; see --drain)"
        else:
            try:
                line = f"{why}: {self.drain(f'{tag}: {why}')}"
            except Exception as exc:  # the supervisor still finishes and writes the bundle
                line = f"{why}: drain failed: {type(exc).__name__}: {exc}"
        self.actions.append(line)
        self.say(line)

    def straggler_node(self, verdict: Verdict) -> None:
        """A hang agreed across nodes: the straggler's node is taken out, the others say why they stay."""
        nodes = verdict.evidence.get("straggler_nodes")
        if not nodes:
            return
        ranks = ", ".join(str(r) for r in verdict.evidence.get("straggler_ranks", []))
        if verdict.evidence.get("straggler_here"):
            self.take_out(f"straggler rank(s) {ranks} of the hung job ran on this node", "hung job's straggler")
        else:
            line = f"straggler rank(s) {ranks} on node(s) {', '.join(map(str, nodes))}: this node stays in service"
            self.actions.append(line)
            self.say(line)

    def _record(self, why: str, result: ReapResult) -> None:
        """One line for the user and the bundle about who was signalled and how they ended."""
        parts = [f"{len(result.terminated)} ended on SIGTERM", f"{len(result.killed)} needed SIGKILL"]
        if result.unkillable:
            parts.append(f"still alive after SIGKILL: {', '.join(map(str, result.unkillable))}")
        line = f"{why}: {'; '.join(parts)}"
        self.actions.append(line)
        self.say(line)


def outcome(rc: int, verdict: Verdict | None, forwarded: signal.Signals | None) -> tuple[Verdict | None, int, str]:
    """Our exit code: the verdict's, or the job's own; a death by a signal nobody here sent is JOB_FAILED."""
    status = f"exited {rc}" if rc >= 0 else f"killed by {signal.Signals(-rc).name}"
    if verdict is not None:
        return verdict, int(ExitCode[verdict.kind.name]), status
    if rc < 0 and forwarded is not None:
        return None, 128 - rc, status
    if rc < 0:
        return Verdict(VerdictKind.JOB_FAILED, f"the job was {status} (not sent by coldaisle)",
                       {"signal": signal.Signals(-rc).name}), int(ExitCode.JOB_FAILED), status
    if rc != 0 and forwarded is None:
        why = f"the job failed by itself: {status}"
        return Verdict(VerdictKind.JOB_FAILED, why, {"exit_status": rc}), rc, status
    return None, rc, status


def _files(directory: Path) -> dict[str, bytes]:
    """Flight Recorder dumps the job left, to copy into the bundle (they vanish with the work directory)."""
    with suppress(OSError):
        return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
                if p.is_file() and p.name != flight.REQUEST and not p.name.endswith((".ready", ".tmp"))}
    return {}
