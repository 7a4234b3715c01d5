"""Real services for the integration tests: a single-node Slurm (munged + slurmctld + slurmd) on loopback.

Everything the cluster writes lives in one private directory under /tmp: its own munge key and socket,
slurm.conf, state, spool, pid files and logs. Nothing under /etc or /run is touched, so the fixture runs
beside a system Slurm (or another test session's cluster) without either noticing. Teardown stops the
three daemons and fails the session if any process that belongs to this cluster is still alive.

If the daemons cannot start, the fixture fails with the tail of their logs: it never skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from slurm_daemons import (  # beside this file; pytest puts the folder on sys.path
    TEST_PLUGINS,
    Daemon,
    parse_scontrol_oneliner,
    processes_of,
    start_daemon,
    stop_daemon,
    wait_for_socket,
)

START_TIMEOUT_S = 45.0  # the whole cluster normally comes up in a few seconds
POLL_S = 0.1
REQUIRED_BINARIES = ("munged", "slurmctld", "slurmd", "scontrol", "sinfo")


@dataclass
class SlurmCluster:
    """A running single-node Slurm. Every client call gets SLURM_CONF explicitly through `env`."""

    node: str
    root: Path
    conf: Path
    env: dict[str, str]
    start_seconds: float
    daemons: list[Daemon] = field(default_factory=list)

    def run(self, *argv: str, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (`scontrol`, `sinfo` ...) against this cluster."""
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}\n"
                + self.log_tails()
            )
        return result

    def scontrol(self, *args: str) -> str:
        """`scontrol ARGS`, checked; returns stdout."""
        return self.run("scontrol", *args).stdout

    def sinfo_state(self) -> str:
        """The node's compact state from sinfo (`idle`, `drain`, `drng`, `mix` ...), without flags like `*`."""
        out = self.run("sinfo", "-N", "-h", "-n", self.node, "-o", "%N %t").stdout.split()
        return out[1].rstrip("*~#!%$@^-") if len(out) >= 2 else ""

    def show_node(self) -> dict[str, str]:
        """`scontrol show node -o NODE` as a mapping (values may contain spaces, e.g. Reason)."""
        return parse_scontrol_oneliner(self.scontrol("show", "node", "-o", self.node))

    def wait_node(
        self, predicate: Callable[[dict[str, str]], bool], what: str, timeout: float = 15.0
    ) -> dict[str, str]:
        """Poll `scontrol show node` until `predicate` holds; fail with the last state and the logs."""
        deadline = time.monotonic() + timeout
        info = self.show_node()
        while not predicate(info):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"node {self.node}: {what} not reached in {timeout:.0f}s: {info}\n{self.log_tails()}"
                )
            time.sleep(POLL_S)
            info = self.show_node()
        return info

    def wait_idle(self, timeout: float = 15.0) -> dict[str, str]:
        """Wait for plain `State=IDLE`. RESUME sets NOT_RESPONDING until slurmctld's ping comes back (~1 s)."""
        return self.wait_node(lambda info: info.get("State") == "IDLE", "State=IDLE", timeout)

    def resume_if_drained(self) -> None:
        """Put the node back to service (tests share one session-wide node) and wait until it is idle."""
        if "DRAIN" in self.show_node().get("State", ""):
            self.scontrol("update", f"NodeName={self.node}", "State=RESUME")
        self.wait_idle()

    def log_tails(self, lines: int = 40) -> str:
        """Every daemon's log tail, for failure messages."""
        return "\n".join(d.tail(lines) for d in self.daemons)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _real_memory_mb() -> int:
    """A bit under what the kernel reports, so slurmd never finds less memory than configured."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return max(1, int(int(line.split()[1]) / 1024 * 0.9))
    return 1


def _slurm_conf(root: Path, node: str, munge_socket: Path, ctld_port: int, slurmd_port: int) -> str:
    cpus = len(os.sched_getaffinity(0))  # what `nproc` says
    return f"""\
# Single-node test cluster written by tests/integration/conftest.py
ClusterName=coldaisle-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
{TEST_PLUGINS}
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_real_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_for(cluster: SlurmCluster, predicate_desc: str, deadline: float) -> None:
    """Poll until sinfo shows the node idle; fail early, with logs, if a daemon dies."""
    last = ""
    while time.monotonic() < deadline:
        for d in cluster.daemons:
            if d.proc.poll() is not None:
                pytest.fail(
                    f"slurm test cluster: {d.name} exited with {d.proc.returncode} while waiting for {predicate_desc}"
                    f"\n{cluster.log_tails()}",
                    pytrace=False,
                )
        result = cluster.run("sinfo", "-N", "-h", "-n", cluster.node, "-o", "%N %t", check=False, timeout=10)
        last = (result.stdout + result.stderr).strip()
        fields = result.stdout.split()
        if result.returncode == 0 and len(fields) >= 2 and fields[1].rstrip("*~#!%$@^-") == "idle":
            return
        time.sleep(POLL_S)
    pytest.fail(
        f"slurm test cluster: {predicate_desc} not reached in {START_TIMEOUT_S:.0f}s (last sinfo: {last!r})"
        f"\n{cluster.log_tails()}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A real single-node Slurm on 127.0.0.1, idle and ready; stopped (with no orphans) at session end."""
    missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
    if missing:
        pytest.fail(f"slurm test cluster: {', '.join(missing)} not installed; run ./scripts/install-test-deps.sh",
                    pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("slurm test cluster: must run as root (SlurmUser=root)", pytrace=False)

    t0 = time.monotonic()
    deadline = t0 + START_TIMEOUT_S
    # Directly under /tmp: munged wants every directory above its socket searchable by all (pytest's
    # /tmp/pytest-of-root is 0700), and the socket path must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="coldaisle-slurm-", dir="/tmp"))
    root.chmod(0o755)
    key_dir = root / "munge-key"  # private: key and PRNG seed
    run_dir = root / "run"  # searchable: munge socket, pid files
    for d, mode in ((key_dir, 0o700), (run_dir, 0o755), (root / "log", 0o755), (root / "state", 0o755),
                    (root / "spool", 0o755)):
        d.mkdir(mode=mode)
    key = key_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munge_socket = run_dir / "munge.socket"

    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, node, munge_socket, _free_port(), _free_port()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    env["SLURM_CONF"] = str(conf)

    cluster = SlurmCluster(node=node, root=root, conf=conf, env=env, start_seconds=0.0)
    logs = root / "log"
    try:
        munged = start_daemon(
            "munged",
            ["munged", "--foreground", f"--key-file={key}", f"--socket={munge_socket}",
             f"--pid-file={run_dir / 'munged.pid'}",
             f"--seed-file={key_dir / 'munged.seed'}", "--num-threads=2"],
            env, logs, [],  # in the foreground munged logs to stderr only
        )
        cluster.daemons.append(munged)
        wait_for_socket(munge_socket, munged, deadline)
        cluster.daemons.append(
            start_daemon("slurmctld", ["slurmctld", "-D", "-f", str(conf)], env, logs, [logs / "slurmctld.log"])
        )
        cluster.daemons.append(
            start_daemon("slurmd", ["slurmd", "-D", "-f", str(conf), "-N", node], env, logs, [logs / "slurmd.log"])
        )
        _wait_for(cluster, f"node {node} idle", deadline)
        cluster.start_seconds = time.monotonic() - t0
        yield cluster
    finally:
        pids = {d.proc.pid for d in cluster.daemons}
        # slurmd first (it would otherwise log the controller going away), munged last (both use it)
        for d in reversed(cluster.daemons):
            stop_daemon(d)
        leftovers: dict[int, str] = {}
        for _ in range(20):  # /proc can lag a moment behind wait()
            leftovers = processes_of(root, pids)
            if not leftovers:
                break
            time.sleep(0.1)
        for pid in leftovers:  # report them below, but do not leave them running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        tails = cluster.log_tails()
        shutil.rmtree(root, ignore_errors=True)
        assert not leftovers, (
            "slurm test cluster left processes behind (now killed):\n" + "\n".join(leftovers.values()) + "\n" + tails
        )


@pytest.fixture
def slurm_node(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The session cluster with its node idle on entry, and put back to service (resumed) on exit."""
    slurm_cluster.resume_if_drained()
    yield slurm_cluster
    slurm_cluster.resume_if_drained()
