"""A real Slurm fleet on one host: one slurmctld and N slurmd, each slurmd in its own network namespace.

Each node is a real slurmd with its own address on a private bridge (10.199.X.0/24), registered and IDLE like
a node of a real cluster; they share the host's filesystem and one munged (its socket is a file). `nsenter
--net` enters only the network namespace (`ip netns exec` would remount /sys, where slurmd's cgroup plugin
looks). Everything lives in one private directory; teardown stops every daemon, removes the namespaces and the
bridge, and fails if a process of this fleet is left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from slurm_daemons import (
    TEST_PLUGINS,
    Daemon,
    parse_scontrol_oneliner,
    processes_of,
    start_daemon,
    stop_daemon,
    wait_for_socket,
)

REQUIRED = ("munged", "slurmctld", "slurmd", "scontrol", "sinfo", "ip", "nsenter")


@dataclass
class SlurmFleet:
    """A running fleet: node names, SLURM_CONF in `env`, and the daemons (slurmctld is `daemons[1]`)."""

    nodes: list[str]
    root: Path
    conf: Path
    env: dict[str, str]
    daemons: list[Daemon] = field(default_factory=list)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this fleet."""
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=20, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr}\n{self.log_tails()}")
        return r

    def show(self, node: str) -> dict[str, str]:
        """`scontrol show node -o NODE` as a mapping."""
        return parse_scontrol_oneliner(self.run("scontrol", "show", "node", "-o", node).stdout)

    def reasons(self) -> dict[str, str]:
        """`sinfo -R`: node -> reason, for every node that has one (drained, down ...)."""
        out = self.run("sinfo", "-R", "-N", "-h", "-o", "%N|%E").stdout
        return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)

    def drained_by_coldaisle(self) -> list[str]:
        """Nodes whose reason is coldaisle's, as Slurm's own `sinfo -R` shows them."""
        return sorted(n for n, reason in self.reasons().items() if reason.startswith("coldaisle:"))

    def reset(self) -> None:
        """Every node back in service (between tests)."""
        self.run("scontrol", "update", f"NodeName={','.join(self.nodes)}", "State=RESUME", check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = self.run("sinfo", "-N", "-h", "-o", "%N %t").stdout.split("\n")
            if all(line.split()[1].rstrip("*~#!%$@^-") == "idle" for line in states if line.strip()):
                return
            time.sleep(0.2)
        raise AssertionError(f"fleet not idle after RESUME:\n{self.run('sinfo', '-N').stdout}")

    def log_tails(self, lines: int = 20) -> str:
        """The controller's and munged's log tails, for failure messages."""
        return "\n".join(d.tail(lines) for d in self.daemons[:2])


def _conf(root: Path, n: int, subnet: str, host: str, ports: tuple[int, int]) -> str:
    return f"""\
# Fleet test cluster written by tests/integration/slurm_fleet.py
ClusterName=coldaisle-fleet
SlurmctldHost={host}({subnet}.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/run/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.%n.log
SlurmdParameters=config_overrides
{TEST_PLUGINS}
NodeName=node-gpu-[01-{n:02d}] NodeAddr={subnet}.[11-{10 + n}] CPUs=1 RealMemory=100 State=UNKNOWN
PartitionName=gpu Nodes=node-gpu-[01-{n:02d}] Default=YES MaxTime=INFINITE State=UP
"""


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def _namespaces(n: int, tag: str, subnet: str) -> Iterator[list[str]]:
    """n network namespaces on one bridge, addresses subnet.11 ...; removed on exit."""
    bridge, names = f"cab{tag}", [f"ca{tag}{i:02d}" for i in range(1, n + 1)]
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i, ns in enumerate(names, start=11):
            _ip("netns", "add", ns)
            _ip("link", "add", f"v{ns}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", f"v{ns}", "master", bridge, "up")
            _ip("-n", ns, "addr", "add", f"{subnet}.{i}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield names
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


def _ports() -> tuple[int, int]:
    out = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("", 0))
            out.append(int(s.getsockname()[1]))
    return out[0], out[1]


@contextlib.contextmanager
def slurm_fleet(n: int) -> Iterator[SlurmFleet]:
    """A fleet of n real slurmd (node-gpu-01 ...), all IDLE; stopped, with nothing left behind, on exit."""
    missing = [b for b in REQUIRED if shutil.which(b) is None]
    if missing or os.geteuid() != 0:
        pytest.fail(f"slurm fleet: needs root and {', '.join(missing) or 'nothing more'}", pytrace=False)
    tag = secrets.token_hex(2)
    subnet = f"10.199.{int(tag, 16) % 250 + 1}"
    root = Path(tempfile.mkdtemp(prefix="coldaisle-fleet-", dir="/tmp"))
    root.chmod(0o755)
    for d, mode in (("key", 0o700), ("run", 0o755), ("log", 0o755), ("state", 0o755), ("spool", 0o755)):
        (root / d).mkdir(mode=mode)
    (root / "key" / "munge.key").write_bytes(os.urandom(1024))
    (root / "key" / "munge.key").chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, n, subnet, socket.gethostname().split(".")[0], _ports()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")} | {"SLURM_CONF": str(conf)}
    fleet = SlurmFleet([f"node-gpu-{i:02d}" for i in range(1, n + 1)], root, conf, env)
    logs = root / "log"
    with _namespaces(n, tag, subnet) as namespaces:
        try:
            _start(fleet, namespaces)
            yield fleet
        finally:
            pids = {d.proc.pid for d in fleet.daemons}
            for d in reversed(fleet.daemons):
                stop_daemon(d)
            left = processes_of(root, pids)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(root, ignore_errors=True)
            assert not left, f"the slurm fleet left processes behind (now killed): {left}\n{logs}"


def _start(fleet: SlurmFleet, namespaces: list[str]) -> None:
    root, env, logs = fleet.root, fleet.env, fleet.root / "log"
    deadline = time.monotonic() + 60
    munged = start_daemon("munged", ["munged", "--foreground", f"--key-file={root}/key/munge.key",
                                     f"--socket={root}/run/munge.socket", f"--pid-file={root}/run/munged.pid",
                                     f"--seed-file={root}/key/seed", "--num-threads=4"], env, logs, [])
    fleet.daemons.append(munged)
    wait_for_socket(root / "run" / "munge.socket", munged, deadline)
    fleet.daemons.append(start_daemon("slurmctld", ["slurmctld", "-D", "-f", str(fleet.conf)], env, logs,
                                      [logs / "slurmctld.log"]))
    for node, ns in zip(fleet.nodes, namespaces, strict=True):
        fleet.daemons.append(start_daemon(node, ["nsenter", f"--net=/var/run/netns/{ns}", "slurmd", "-D", "-f",
                                                 str(fleet.conf), "-N", node], env, logs,
                                          [logs / f"slurmd.{node}.log"]))
    while time.monotonic() < deadline:
        r = fleet.run("sinfo", "-N", "-h", "-o", "%N %t", check=False)
        idle = [ln for ln in r.stdout.splitlines() if ln.split()[1:2] == ["idle"]]
        if len(idle) == len(fleet.nodes):
            return
        time.sleep(0.2)
    pytest.fail(f"slurm fleet: not every node idle in 60 s\n{fleet.run('sinfo', '-N', check=False).stdout}\n"
                f"{fleet.log_tails()}", pytrace=False)
