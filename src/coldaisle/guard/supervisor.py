"""`coldaisle run`'s core: start a job in its own session, watch it, and on a verdict leave evidence and stop it.

The job gets a heartbeat directory (COLDAISLE_HEARTBEAT), a run id (COLDAISLE_RUN_ID, which survives setsid
and double forks, so strays are found in /proc) and, unless the user chose otherwise, PyTorch's NCCL Flight
Recorder settings. Its output is tee'd to ours and its last lines kept. Every `interval_s` the watches look at
heartbeats and memory; a verdict dumps every process's stacks, stops the whole job (SIGTERM, SIGKILL after the
grace) and writes a bundle. Whatever way the job ends, no process of it is left running.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from coldaisle.actions.safety import ProcessInfo
from coldaisle.errors import ColdaisleError
from coldaisle.guard import flight
from coldaisle.guard.bundle import Incident, write_bundle
from coldaisle.guard.gpuwatch import GpuWatch
from coldaisle.guard.heartbeat import ENV_VAR, HeartbeatReader, HeartbeatSnapshot
from coldaisle.guard.output import OutputTee
from coldaisle.guard.procs import RUN_ID_VAR, job_processes, total_rss_bytes
from coldaisle.guard.ranks import RankView, analyse, rank_leads, stuck_in_io
from coldaisle.guard.reap import ReapResult, reap
from coldaisle.guard.recent import RecentTelemetry, gpu_values
from coldaisle.guard.stacks import dump_stacks
from coldaisle.guard.stackscan import parse_dump
from coldaisle.guard.stackwatch import StackWatch
from coldaisle.guard.watch import ExitCode, HangWatch, Kind, MemoryWatch, Verdict
from coldaisle.telemetry.clock import Clock

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# PyTorch Flight Recorder (docs: torch_nccl_environment_variables): keep a ring of collectives, dump on timeout.
FLIGHT_RECORDER = {"TORCH_NCCL_TRACE_BUFFER_SIZE": "2000", "TORCH_NCCL_DUMP_ON_TIMEOUT": "1"}
FLIGHT_RECORDER_FILE = "TORCH_NCCL_DEBUG_INFO_TEMP_FILE"


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a supervised run ended: our exit code, the verdict (None: the job ended by itself, cleanly) and bundle."""

    exit_code: int
    verdict: Verdict | None
    bundle: Path | None
    job_status: str
    actions: tuple[str, ...]


class Supervisor:
    """Runs one command under supervision; `run()` returns when the job and all its processes are gone."""

    def __init__(self, cmd: Sequence[str], *, hang_timeout_s: float, grace_s: float, bundle_dir: Path,
                 memory_limit_bytes: float | None = None, clock: Clock, env: Mapping[str, str] | None = None,
                 interval_s: float = 0.5, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                 say: Callable[[str], None] | None = None, io_timeout_s: float | None = None,
                 drain: Callable[[str], str] | None = None, gpu: GpuWatch | None = None,
                 stack_watch: str = "auto") -> None:
        if not cmd:
            raise ColdaisleError("no command to run", hint="put the job after `--`: coldaisle run -- python train.py",
                                 exit_code=2)
        self.cmd = tuple(cmd)
        self.hang, self.grace_s, self.bundle_dir, self.clock = HangWatch(hang_timeout_s), grace_s, bundle_dir, clock
        self.memory = MemoryWatch(memory_limit_bytes, lead_s=grace_s + 2 * interval_s) if memory_limit_bytes else None
        self.env = dict(os.environ if env is None else env)
        self.interval_s = interval_s
        self.sinks = (stdout or sys.stdout.buffer, stderr or sys.stderr.buffer)
        self.say = say or (lambda msg: print(f"coldaisle run: {msg}", file=sys.stderr, flush=True))
        self.run_id = uuid.uuid4().hex
        self.tee = OutputTee()
        self.actions: list[str] = []
        self._forwarded: signal.Signals | None = None
        self._forward_deadline = 0.0
        self._snapshot: HeartbeatSnapshot | None = None
        # a rank in I/O (D state, a checkpoint write) is not a collective hang: wait up to io_timeout_s for it
        self.io_timeout_s = io_timeout_s if io_timeout_s is not None else max(10 * hang_timeout_s, 1800.0)
        self._io_since: float | None = None
        self._next_look = 0.0
        self._stacks: dict[int, str] = {}
        self._flight: Path | None = None  # the run's Flight Recorder directory, set by child_env
        self.drain = drain  # called with a reason when a process survives SIGKILL (D state): drain the node
        self.gpu, self._gpu_failed = gpu, False
        self.recent = RecentTelemetry()  # the last ten minutes, for the bundle
        # stacks alone: "on", "off", or "auto" (only while no rank reports progress and no GPU is watched)
        self.stack_mode, self.stacks = stack_watch, StackWatch(hang_timeout_s)

    def run(self) -> RunResult:
        """Start, watch and finish the job; raises ColdaisleError only when it cannot be started."""
        started = self.clock.time()
        with tempfile.TemporaryDirectory(prefix="coldaisle-run-") as work:
            proc = self._start(Path(work))
            with self._forwarding(proc):
                verdict = self._watch(proc, HeartbeatReader(Path(work) / "heartbeat", self.clock))
                return self._finish(proc, verdict, started, Path(work) / "flight")

    def child_env(self, work: Path) -> dict[str, str]:
        """The job's environment: ours (or the given one) plus the heartbeat, run id and Flight Recorder defaults."""
        env = dict(self.env)
        (work / "heartbeat").mkdir()
        (work / "flight").mkdir()
        env[ENV_VAR] = str(work / "heartbeat")
        env[RUN_ID_VAR] = self.run_id
        for name, value in FLIGHT_RECORDER.items():
            env.setdefault(name, value)
        env.setdefault(FLIGHT_RECORDER_FILE, str(work / "flight" / "nccl_trace_rank_"))
        env[flight.DIR_VAR] = str(work / "flight")  # ranks answer dump requests here (guard/flight.py)
        self._flight = work / "flight"
        return env

    def _start(self, work: Path) -> subprocess.Popen[bytes]:
        """Popen in a new session (no shell), pipes tee'd; a missing or non-executable command is a clear error."""
        env = self.child_env(work)
        check_executable(self.cmd[0], env.get("PATH", os.defpath))
        try:
            proc = subprocess.Popen(self.cmd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except OSError as exc:
            raise _not_started(self.cmd[0], exc) from None
        assert proc.stdout is not None and proc.stderr is not None
        self.tee.follow("stdout", proc.stdout, self.sinks[0])
        self.tee.follow("stderr", proc.stderr, self.sinks[1])
        return proc

    @contextmanager
    def _forwarding(self, proc: subprocess.Popen[bytes]) -> Iterator[None]:
        """Pass Ctrl-C, SIGTERM (Slurm's scancel) and SIGHUP on to the job's process group while it runs."""
        def forward(signum: int, _frame: object) -> None:
            sig = signal.Signals(signum)
            if self._forwarded is None:
                self._forward_deadline = self.clock.monotonic() + self.grace_s
            self._forwarded = sig
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)

        if not _main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _watch(self, proc: subprocess.Popen[bytes], reader: HeartbeatReader) -> Verdict | None:
        """Loop until the job exits (None), a forwarded signal's grace runs out (None), or a watch gives a verdict."""
        while proc.poll() is None:
            if self._forwarded is not None:
                if self.clock.monotonic() >= self._forward_deadline:
                    return None
            else:
                verdict = self._check(proc, reader)
                if verdict is not None:
                    return verdict
            self.clock.sleep(self.interval_s)
        return None

    def _check(self, proc: subprocess.Popen[bytes], reader: HeartbeatReader) -> Verdict | None:
        """One look at the heartbeats, the job's GPUs (spin signature, device memory), then its host memory."""
        self._snapshot = reader.read()
        now = self.clock.monotonic()
        verdict = self.hang.check(self._snapshot)
        members = self._members(proc) if (self.memory or self.gpu) else []
        if verdict is None and self.gpu is not None:
            verdict = self._gpu_check(now, members)
        if verdict is None and self._stack_watch_on() and self.stacks.due(now):
            members = members or self._members(proc)
            self._stacks = dump_stacks([p.pid for p in members])
            verdict = self.stacks.add(now, self._rank_views(members))
        if verdict is None:
            self._io_since, self._next_look = None, 0.0  # progressing again: an I/O wait is over
        elif verdict.kind == Kind.HANG:  # while waiting on a rank in I/O, look again later, not at every tick
            verdict = None if now < self._next_look else self._judge_hang(proc, verdict)
        if verdict is None and self.memory is not None:
            verdict = self.memory.add(now, total_rss_bytes(members))
        self._remember(proc, members)
        return verdict

    def _remember(self, proc: subprocess.Popen[bytes], members: list[ProcessInfo]) -> None:
        """One row of the last minutes' telemetry for the bundle (at most one a second)."""
        t = self.clock.time()
        if not self.recent.due(t):
            return
        ranks = self._snapshot.ranks if self._snapshot else ()
        row = {"job host memory (GiB)": total_rss_bytes(members or self._members(proc)) / 2**30,
               "progress age (s)": min((r.age_s for r in ranks), default=math.nan),
               "step": float(max((r.step for r in ranks), default=math.nan))}
        if self.gpu is not None:
            row |= gpu_values(self.gpu.last, self.gpu.last_devices)
        self.recent.add(t, row)

    def _stack_watch_on(self) -> bool:
        if self.stack_mode == "auto":
            return self.gpu is None and not (self._snapshot and self._snapshot.ranks)
        return self.stack_mode == "on"

    def _gpu_check(self, now: float, members: list[ProcessInfo]) -> Verdict | None:
        """The Backend's view; a failing read is reported once and the other watches go on."""
        assert self.gpu is not None
        try:
            ages = [r.age_s for r in self._snapshot.ranks] if self._snapshot else []
            return self.gpu.check(now, {p.pid for p in members}, min(ages) if ages else math.nan)
        except Exception as exc:
            if not self._gpu_failed:
                self.say(f"GPU telemetry failed ({type(exc).__name__}: {exc}); heartbeat and memory watches go on")
            self._gpu_failed = True
            return None

    def _judge_hang(self, proc: subprocess.Popen[bytes], verdict: Verdict) -> Verdict | None:
        """No progress: dump every process while it is stuck, place each rank, name the straggler.

        Ranks in I/O with nobody stuck elsewhere are a slow checkpoint or NFS, not a hang: the verdict
        waits (up to io_timeout_s) and is given as an I/O stall if it never clears."""
        t0 = self.clock.monotonic()
        dumps = flight.request_dumps(self._flight) if self._flight else {}
        traces = flight.behind([t for name, data in dumps.items() if (t := flight.read_trace(name, data)) is not None])
        members = self._members(proc)
        self._stacks = dump_stacks([p.pid for p in members])
        analysis = analyse(self._rank_views(members))
        now = self.clock.monotonic()
        evidence = {**verdict.evidence, **analysis.evidence(), **traces, "analysis_s": round(now - t0, 3)}
        if not analysis.io_stall:
            self._io_since = None
            reason = f"{verdict.reason}; {analysis.summary()}"
            if traces.get("flight_recorder_behind"):
                reason += f"; Flight Recorder: rank(s) {', '.join(traces['flight_recorder_behind'])} behind on " \
                          "collectives"
            return Verdict(Kind.HANG, reason, evidence)
        if self._io_since is None:
            self._io_since = now
            self.say(f"no progress, but not a collective hang: {analysis.summary()}; waiting up to "
                     f"{self.io_timeout_s:g} s for the I/O to finish")
        if now - self._io_since < self.io_timeout_s:
            self._next_look = now + max(5.0, self.hang.timeout_s / 4)
            return None
        return Verdict(Kind.IO_STALL, f"stalled in I/O for {now - self._io_since:.0f} s (not a collective hang): "
                                      f"{analysis.summary()}", evidence)

    def _rank_views(self, members: list[ProcessInfo]) -> list[RankView]:
        """Each rank's process (from RANK in its environment, else its heartbeat) with its stack and state."""
        steps = {r.pid: r.step for r in (self._snapshot.ranks if self._snapshot else ())}
        hb_rank = {r.pid: r.rank for r in (self._snapshot.ranks if self._snapshot else ())}
        leads = {p.pid: r for r, p in rank_leads(members).items()}
        for p in members:
            if p.pid in hb_rank and p.pid not in leads:
                leads[p.pid] = hb_rank[p.pid]
        return [RankView(rank, pid, stuck_in_io(pid), parse_dump(self._stacks.get(pid, "")), steps.get(pid))
                for pid, rank in sorted(leads.items(), key=lambda kv: kv[1])]

    def _members(self, proc: subprocess.Popen[bytes]) -> list[ProcessInfo]:
        """Every live process of the job but us (py-spy and our own children carry no run id)."""
        return job_processes(proc.pid, self.run_id, exclude=frozenset({os.getpid()}))

    def _finish(self, proc: subprocess.Popen[bytes], verdict: Verdict | None, started: float,
                flight: Path) -> RunResult:
        """Act on the verdict, make sure nothing of the job survives, decide the exit code, write the bundle."""
        stacks: dict[int, str] = {}
        if verdict is not None:
            stacks = self._stop_on_verdict(proc, verdict)
        elif proc.poll() is None:  # a forwarded signal's grace ran out
            self._record("the job outlived the forwarded signal's grace", reap(self._members(proc), 0, self.clock))
        rc = proc.wait()
        leftovers = self._members(proc)
        if leftovers:
            self._record(f"{len(leftovers)} process(es) outlived the job (daemonised or left behind)",
                         reap(leftovers, self.grace_s, self.clock))
        self.tee.join(2.0)
        verdict, code, status = self._outcome(rc, verdict)
        bundle = None
        if verdict is not None:
            incident = Incident(verdict, self.cmd, started, self.clock.time(), code, status, stacks,
                                self.tee.last_lines(), self._snapshot, list(self.actions), _files(flight),
                                self.recent)
            bundle = write_bundle(self.bundle_dir, incident)
            self.say(f"incident bundle written to {bundle}")
        return RunResult(code, verdict, bundle, status, tuple(self.actions))

    def _stop_on_verdict(self, proc: subprocess.Popen[bytes], verdict: Verdict) -> dict[int, str]:
        """Dump every process's stacks while they are still stuck, then stop the whole job."""
        members = self._members(proc)
        fresh = [p.pid for p in members if p.pid not in self._stacks]
        self.say(f"{verdict.kind}: {verdict.reason}; stacks of {len(members)} process(es) dumped, then "
                 f"SIGTERM, SIGKILL after {self.grace_s:g} s")
        stacks = {**self._stacks, **(dump_stacks(fresh) if fresh else {})}
        self.actions.append(f"dumped the stacks of {len(stacks)} process(es)")
        result = reap(members, self.grace_s, self.clock)
        self._record(f"stopped the job on {verdict.kind}", result)
        if result.unkillable:
            self._escalate(result.unkillable)
        return stacks

    def _escalate(self, pids: tuple[int, ...]) -> None:
        """A process that outlives SIGKILL is in D state: only a reboot frees it, so the node must not take work."""
        why = f"job process(es) {', '.join(map(str, pids))} survive SIGKILL (uninterruptible sleep)"
        if self.drain is None:
            line = f"{why}: drain this node by hand (no drain configured; see --drain)"
        else:
            try:
                line = f"{why}: {self.drain(why)}"
            except Exception as exc:  # the supervisor still finishes and writes the bundle
                line = f"{why}: drain failed: {type(exc).__name__}: {exc}"
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

    def _outcome(self, rc: int, verdict: Verdict | None) -> tuple[Verdict | None, int, str]:
        """Our exit code: the verdict's, or the job's own; a death by a signal nobody here sent is JOB_FAILED."""
        status = f"exited {rc}" if rc >= 0 else f"killed by {signal.Signals(-rc).name}"
        if verdict is not None:
            return verdict, int(ExitCode[verdict.kind.name]), status
        if rc < 0 and self._forwarded is not None:
            return None, 128 - rc, status
        if rc < 0:
            return Verdict(Kind.JOB_FAILED, f"the job was {status} (not sent by coldaisle)",
                           {"signal": signal.Signals(-rc).name}), int(ExitCode.JOB_FAILED), status
        if rc != 0 and self._forwarded is None:
            return Verdict(Kind.JOB_FAILED, f"the job failed by itself: {status}", {"exit_status": rc}), rc, status
        return None, rc, status


def check_executable(program: str, path: str) -> None:
    """Fail before starting anything when the command cannot run: 127 not found, 126 not executable."""
    found = program if os.sep in program else shutil.which(program, path=path)
    if found is None or not os.path.exists(found):
        raise ColdaisleError(f"command not found: {program}", exit_code=int(ExitCode.NOT_FOUND),
                             hint="check the spelling, or give the full path after `--`")
    if os.path.isdir(found) or not os.access(found, os.X_OK):
        raise ColdaisleError(f"not executable: {found}", exit_code=int(ExitCode.NOT_EXECUTABLE),
                             hint=f"chmod +x {found}, or run it through its interpreter")


def _not_started(program: str, exc: OSError) -> ColdaisleError:
    """The job could not be started although the checks passed (a bad interpreter line, a race)."""
    code = ExitCode.NOT_FOUND if isinstance(exc, FileNotFoundError) else ExitCode.NOT_EXECUTABLE
    return ColdaisleError(f"cannot start {program}: {exc.strerror or exc}", exit_code=int(code))


def _files(directory: Path) -> dict[str, bytes]:
    """Flight Recorder dumps the job left, to copy into the bundle (they vanish with the work directory)."""
    with suppress(OSError):
        return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
                if p.is_file() and p.name != flight.REQUEST and not p.name.endswith((".ready", ".tmp"))}
    return {}


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
