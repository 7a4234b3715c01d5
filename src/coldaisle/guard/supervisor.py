"""`coldaisle run`'s core: start a job in its own session, look at it through its watches, end it cleanly.

Every `interval_s` each watch looks at the job (`guard.watch.Watch`: heartbeats, the job's GPUs, its stacks,
its host memory, the telemetry recorder); the first verdict ends the run. A hang is judged first
(`guard.judge`: name the straggler, or wait for a rank in I/O). Starting is `guard.launch`, ending (stacks,
SIGTERM, SIGKILL, the bundle, the exit code) is `guard.finish`. Whatever way the job ends, no process of it
is left running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from coldaisle.errors import ColdaisleError
from coldaisle.guard.finish import Ending, RunResult
from coldaisle.guard.gpuwatch import GpuWatch
from coldaisle.guard.heartbeat import HeartbeatReader, HeartbeatSnapshot
from coldaisle.guard.judge import HangJudge
from coldaisle.guard.launch import Forwarding, child_env, start
from coldaisle.guard.output import OutputTee
from coldaisle.guard.peers import PeerWatch
from coldaisle.guard.procs import job_processes
from coldaisle.guard.recent import RecentTelemetry, TelemetryWatch
from coldaisle.guard.rhythm import RankActivity, Rhythm
from coldaisle.guard.stacks import StackCache
from coldaisle.guard.stackwatch import StackWatch
from coldaisle.guard.straggler import RankGpus, StragglerWatch
from coldaisle.guard.watch import HangWatch, Look, MemoryWatch, Verdict, VerdictKind, Watch
from coldaisle.telemetry.clock import Clock
from coldaisle.telemetry.procfs import ProcessInfo

__all__ = ["RunResult", "Supervisor"]


class Supervisor:
    """Runs one command under supervision; `run()` returns when the job and all its processes are gone."""

    def __init__(self, cmd: Sequence[str], *, hang_timeout_s: float, grace_s: float, bundle_dir: Path,
                 memory_limit_bytes: float | None = None, clock: Clock, env: Mapping[str, str] | None = None,
                 interval_s: float = 0.5, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                 say: Callable[[str], None] | None = None, io_timeout_s: float | None = None,
                 drain: Callable[[str], str] | None = None, gpu: GpuWatch | None = None,
                 stack_watch: str = "auto", rhythm: Rhythm | None = None) -> None:
        if not cmd:
            raise ColdaisleError("no command to run", hint="put the job after `--`: coldaisle run -- python train.py",
                                 exit_code=2)
        self.cmd, self.clock, self.interval_s = tuple(cmd), clock, interval_s
        self.env = dict(os.environ if env is None else env)
        self.sinks = (stdout or sys.stdout.buffer, stderr or sys.stderr.buffer)
        self.say = say or (lambda msg: print(f"coldaisle run: {msg}", file=sys.stderr, flush=True))
        self.run_id, self.tee, self.forwarding = uuid.uuid4().hex, OutputTee(), Forwarding(clock, grace_s)
        self.heartbeats: HeartbeatSnapshot | None = None
        self._flight: Path | None = None  # the run's Flight Recorder directory, set at start
        stacks, recent = StackCache(), RecentTelemetry()  # the last dumps and the last ten minutes, for the bundle
        self.rhythm, self.activity = rhythm, RankActivity()  # the job's learned step time; each rank's CPU and I/O
        self.straggler = StragglerWatch(self.activity, self.say, host=socket.gethostname().split(".")[0],
                                        gpus=RankGpus(self.activity, gpu is not None),
                                        out=lambda: self._flight.with_name("heartbeat") if self._flight else None)
        self.meeting = PeerWatch(self.activity, clock, self.say, suspect=lambda age: age >= min(
            hang_timeout_s, (rhythm.threshold_s() if rhythm is not None else None) or hang_timeout_s),
                                 host=self.straggler.host, gpus=self.straggler.gpus)
        self.watches = self._watches(hang_timeout_s, grace_s, memory_limit_bytes, gpu, stack_watch, stacks, recent)
        # a rank in I/O (D state, a checkpoint write) is not a collective hang: wait up to io_timeout_s for it
        self.judge = HangJudge(hang_timeout_s=hang_timeout_s, stacks=stacks, clock=clock, say=self.say,
                               io_timeout_s=io_timeout_s if io_timeout_s is not None else max(10 * hang_timeout_s,
                                                                                              1800.0),
                               flight_dir=lambda: self._flight, activity=self.activity,
                               peers=lambda: self.meeting.peers, place=self.meeting.place)
        self.ending = Ending(self.cmd, grace_s, bundle_dir, clock, self.say, drain, stacks, self.tee, recent,
                             notes=lambda: {**self.judge.notes(), **self.straggler.evidence()})  # for the bundle

    def _watches(self, hang_timeout_s: float, grace_s: float, memory_limit_bytes: float | None,
                 gpu: GpuWatch | None, stack_mode: str, stacks: StackCache, recent: RecentTelemetry) -> list[Watch]:
        """Hang signals first (heartbeats, the GPUs, stacks alone), then host memory, then the recorder."""
        watches: list[Watch] = [HangWatch(hang_timeout_s, self.rhythm, self.activity),
                                *([gpu] if gpu is not None else []),
                                StackWatch(hang_timeout_s, mode=stack_mode, stacks=stacks, gpu_watched=gpu is not None)]
        if memory_limit_bytes:
            watches.append(MemoryWatch(memory_limit_bytes, lead_s=grace_s + 2 * self.interval_s))
        return [*watches, self.straggler, self.meeting, TelemetryWatch(recent, gpu)]

    @property
    def actions(self) -> list[str]:
        """What the supervisor did, in order (for the user and the bundle)."""
        return self.ending.actions

    def run(self) -> RunResult:
        """Start, watch and finish the job; raises ColdaisleError only when it cannot be started."""
        started = self.clock.time()
        with tempfile.TemporaryDirectory(prefix="coldaisle-run-") as work:
            env = child_env(self.env, Path(work), self.run_id)
            self._flight = Path(work) / "flight"
            with self.forwarding.installed():
                proc = start(self.cmd, env, self.tee, self.sinks)
                self.forwarding.attach(proc)
                verdict = self._watch(proc, HeartbeatReader(Path(work) / "heartbeat", self.clock))
                return self.ending.finish(proc, verdict, lambda: self._members(proc), self.forwarding.signal,
                                          started, self._flight, self.heartbeats)

    def _watch(self, proc: subprocess.Popen[bytes], reader: HeartbeatReader) -> Verdict | None:
        """Loop until the job exits (None), a forwarded signal's grace runs out (None), or a watch gives a verdict."""
        while proc.poll() is None:
            if self.forwarding.signal is not None:
                if self.forwarding.expired:
                    return None
            else:
                self.heartbeats = reader.read()
                verdict = self.look(Look(self.clock.monotonic(), self.clock.time(), self.heartbeats,
                                         lambda: self._members(proc)))
                if verdict is not None:
                    if self.meeting.peers is not None:  # the store may live on this node: let the others read
                        self.meeting.peers.wait_for_readers()
                    return verdict
            self.clock.sleep(self.interval_s)
        return None

    def look(self, job: Look) -> Verdict | None:
        """One look through every watch; the first verdict wins, a hang only once the judge has confirmed it."""
        hang_seen = False
        for watch in self.watches:
            verdict = watch.look(job)
            if verdict is None:
                continue
            if verdict.kind is not VerdictKind.HANG:
                return verdict
            if not hang_seen:
                hang_seen = True
                verdict = self.judge.judge(verdict, job)
                if verdict is not None:
                    return verdict
        if not hang_seen:
            self.judge.progressing()
        return None

    def _members(self, proc: subprocess.Popen[bytes]) -> list[ProcessInfo]:
        """Every live process of the job but us (py-spy and our own children carry no run id)."""
        return job_processes(proc.pid, self.run_id, exclude=frozenset({os.getpid()}))
