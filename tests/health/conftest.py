"""Real Slurm for the health, prolog and epilog tests, and agents on the simulator.

The cluster is the integration suite's single-node one (tests/integration/conftest.py, loaded here under its
own module name), started with the slurm.conf lines deploy/slurm/ ships (coldaisle's four hooks):
PrologSlurmctld is only read when slurmctld starts, so they cannot be added later with `scontrol reconfigure`.
Each hook is a script in the cluster's directory that does nothing until a test installs a wrapper calling
coldaisle, the way a site installs deploy/slurm/'s wrappers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SNIPPET = Path(__file__).resolve().parents[2] / "deploy" / "slurm" / "slurm.conf.coldaisle"
HOOKS = ("healthcheck", "prolog", "prolog-ctld", "epilog")
NOOP = "#!/bin/sh\nexit 0\n"


def _load_integration() -> object:
    path = Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # its helper module (slurm_daemons.py) sits beside it
    spec = importlib.util.spec_from_file_location("coldaisle_health_slurm_cluster", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


_IT = _load_integration()
_base_conf = _IT._slurm_conf  # type: ignore[attr-defined]


def _conf_with_hooks(root: Path, *args: object) -> str:
    """The integration cluster's slurm.conf plus our hooks (no-ops until a test installs one)."""
    hooks = root / "hooks"
    hooks.mkdir(mode=0o755)
    for name in HOOKS:
        (hooks / name).write_text(NOOP)
        (hooks / name).chmod(0o755)
    return _base_conf(root, *args) + documented_lines(hooks)


def documented_lines(hooks: Path) -> str:
    """deploy/slurm/slurm.conf.coldaisle, the lines docs/slurm.md tells sites to add, pointed at `hooks`
    (and with a health check every second instead of every 30 s, so the tests are quick)."""
    text = SNIPPET.read_text()
    for wrapper, hook in (("coldaisle-healthcheck", "healthcheck"), ("coldaisle-prolog-slurmctld", "prolog-ctld"),
                          ("coldaisle-prolog", "prolog"), ("coldaisle-epilog", "epilog")):
        text = text.replace(f"/usr/local/sbin/{wrapper}\n", f"{hooks}/{hook}\n")
    assert "/usr/local/sbin" not in text, text
    return text.replace("HealthCheckInterval=30", "HealthCheckInterval=1")


_IT._slurm_conf = _conf_with_hooks  # type: ignore[attr-defined]
slurm_cluster = _IT.slurm_cluster  # type: ignore[attr-defined]
slurm_node = _IT.slurm_node  # type: ignore[attr-defined]


class Hooks:
    """Install coldaisle behind the cluster's hook scripts, and put the no-ops back."""

    def install(self, cluster: object, name: str, *args: str, log: Path) -> None:
        """Make hook `name` run `coldaisle ARGS`, output appended to `log`."""
        install_hook(cluster, name, *args, log=log)

    def reset(self, cluster: object) -> None:
        """Every hook back to a no-op."""
        reset_hooks(cluster)


@pytest.fixture
def hooks() -> Hooks:
    """The hook installer (conftest modules are not importable from tests: no __init__.py)."""
    return Hooks()


@pytest.fixture
def data() -> Path:
    """tests/health/data."""
    return DATA


def install_hook(cluster: object, name: str, *args: str, log: Path) -> None:
    """Make hook `name` run `coldaisle ARGS` (stdout and stderr appended to `log`), as deploy/slurm's do."""
    hook = cluster.root / "hooks" / name  # type: ignore[attr-defined]
    tmp = hook.with_name(f".{name}.tmp")
    tmp.write_text(
        "#!/bin/sh\n"
        f"export SLURM_CONF={cluster.conf}\n"  # type: ignore[attr-defined]  # slurmctld gives its scripts no SLURM_CONF
        f"exec >>{log} 2>&1\n"
        f"echo \"--- {name} $(date +%s.%N)\"\n"
        f"exec {sys.executable} -m coldaisle {' '.join(args)}\n")
    tmp.chmod(0o755)
    tmp.replace(hook)  # slurmd may be running the old one right now


def reset_hooks(cluster: object) -> None:
    """Every hook back to a no-op, then wait for runs of the old ones to finish (a health check started just
    before could still drain the node after the next test's fixture resumed it)."""
    for name in HOOKS:
        hook = cluster.root / "hooks" / name  # type: ignore[attr-defined]
        tmp = hook.with_name(f".{name}.tmp")
        tmp.write_text(NOOP)
        tmp.chmod(0o755)
        tmp.replace(hook)
    deadline = time.monotonic() + 15
    time.sleep(0.2)
    while _running_hooks() and time.monotonic() < deadline:
        time.sleep(0.1)


def _running_hooks() -> list[int]:
    """Pids of coldaisle processes a hook started (`python -m coldaisle health|slurm ...`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[1:3] == [b"-m", b"coldaisle"] and len(argv) > 3 and argv[3] in (b"health", b"slurm"):
                found.append(int(entry.name))
    return found


@dataclass
class SimAgent:
    """A `coldaisle agent --backend sim` process and the state file it writes."""

    proc: subprocess.Popen[bytes]
    state: Path
    log: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def sim_agent(tmp_path: Path) -> Iterator[object]:
    """Start agents on the simulator (dry-run, so the twin's GPU really is lost); stopped at teardown."""
    agents: list[SimAgent] = []

    def start(scenario: str, *, speed: float = 4.0, name: str = "agent") -> SimAgent:
        d = tmp_path / name
        d.mkdir()
        log = d / "agent.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "coldaisle", "agent", "--backend", "sim", "--scenario", str(DATA / scenario),
                 "--node", "gpu-node-01", "--speed", str(speed), "--dry-run", "--listen", "127.0.0.1:0",
                 "--audit", str(d / "audit.jsonl"), "--priority", "normal"],
                stdout=sink, stderr=subprocess.STDOUT, env={k: v for k, v in os.environ.items()
                                                            if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")})
        agent = SimAgent(proc, d / "state.json", log)
        agents.append(agent)
        deadline = time.monotonic() + 20
        while not agent.state.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no state file after 20 s\n{log.read_text()}"
            time.sleep(0.05)
        return agent

    yield start
    for a in agents:
        with contextlib.suppress(Exception):
            a.stop()
