"""The BMC power cycle against OpenIPMI's simulated BMC (ipmi_sim) on loopback, through the real ipmitool.

ipmi_sim answers IPMI 2.0 (RMCP+) on a UDP port and hands chassis power control to an external program
(`chassis_control` in its lan.conf): here a small script that keeps the "host's" power state in a file and
logs every change, so a test can see the off-then-on of a cycle that the BMC carried out.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coldaisle.actions.audit import AuditLog
from coldaisle.actions.bmc import Bmc, BmcFile, IpmiPowerCycle, ipmitool_argv, load_bmcs
from coldaisle.actions.fleet import FleetBreaker, NodeState
from coldaisle.actions.interface import ActionKind, Decision, Status, Target
from coldaisle.actions.runner import ActionRunner
from coldaisle.errors import ConfigError
from coldaisle.telemetry.clock import RealClock

pytestmark = pytest.mark.ipmi
PASSWORD = "s3cret-bmc-pass"

CHASSIS = """#!{python}
# ipmi_sim's chassis_control program: `PROG 0x20 get power` prints power:N; `PROG 0x20 set power N` sets it
import sys, time
state, log = {state!r}, {log!r}
if sys.argv[2] == "get":
    try:
        print("power:" + open(state).read().strip())
    except OSError:
        print("power:1")
elif sys.argv[2] == "set" and sys.argv[3] == "power":
    open(state, "w").write(sys.argv[4])
    open(log, "a").write("%.3f power %s\\n" % (time.time(), sys.argv[4]))
"""

EMU = """\
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
"""


@dataclass
class SimBmc:
    """A running ipmi_sim and the chassis log of its simulated host."""

    port: int
    events: Path
    proc: subprocess.Popen[bytes]

    def power_events(self) -> list[str]:
        """`0` / `1` for each power change the BMC made, in order."""
        return [line.split()[-1] for line in self.events.read_text().splitlines()] if self.events.exists() else []

    def bmc(self, **kw: object) -> Bmc:
        """How coldaisle reaches it."""
        return Bmc(host="127.0.0.1", port=self.port, user="admin", cipher_suite=3, timeout_s=1, retries=1,
                   **kw)  # type: ignore[arg-type]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sim_bmc(tmp_path: Path) -> Iterator[SimBmc]:
    """ipmi_sim on 127.0.0.1 with one admin user; its host's power starts on. Fails (never skips) without it."""
    missing = [b for b in ("ipmi_sim", "ipmitool") if shutil.which(b) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed; run ./scripts/install-test-deps.sh", pytrace=False)
    d = tmp_path / "bmc"
    (d / "state").mkdir(parents=True)
    chassis = d / "chassis"
    chassis.write_text(CHASSIS.format(python=sys.executable, state=str(d / "power"), log=str(d / "events")))
    chassis.chmod(0o755)
    port = _free_udp_port()
    (d / "lan.conf").write_text(
        f'name "coldaisle-test"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n'
        "    priv_limit admin\n    allowed_auths_admin md5 straight\n    guid a123456789abcdefa123456789abcdef\n"
        f'  endlan\n  chassis_control "{chassis} 0x20"\n'
        f'  user 2 true "admin" "{PASSWORD}" admin 10 md5 straight\n')
    (d / "emu").write_text(EMU)
    proc = subprocess.Popen(["ipmi_sim", "-c", str(d / "lan.conf"), "-f", str(d / "emu"), "-s", str(d / "state"),
                             "-n"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=(d / "ipmi_sim.log").open("wb"), start_new_session=True)
    sim = SimBmc(port, d / "events", proc)
    try:
        argv = ipmitool_argv(sim.bmc(password_env="BMC_PW"), "chassis", "power", "status")
        deadline = time.monotonic() + 15
        while True:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False,
                                env={**os.environ, "IPMI_PASSWORD": PASSWORD})
            if cp.returncode == 0 and "on" in cp.stdout:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ipmi_sim did not answer: {cp.stderr}\n{(d / 'ipmi_sim.log').read_text()}",
                            pytrace=False)
            time.sleep(0.1)
        yield sim
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _decision(node: str = "node-gpu-102") -> Decision:
    return Decision(time.time(), "gpu-off-the-bus-wedged", "critical", ActionKind.POWER_CYCLE, Target(node),
                    step=3, params={"reason": "gpu3 fell off the bus; pid 4242 in D state; drained 10 min ago"})


def _executor(sim: SimBmc, tmp_path: Path, *, enabled: bool = True, password: str = PASSWORD,
              nodes: tuple[str, ...] = ("node-gpu-102",)) -> IpmiPowerCycle:
    pw = tmp_path / "bmc.pass"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    bmcs = BmcFile(enabled=enabled, confirm_s=20, nodes={n: sim.bmc(password_file=pw) for n in nodes})
    return IpmiPowerCycle(bmcs)


def test_a_wedged_node_is_power_cycled_through_its_bmc_and_audited(sim_bmc: SimBmc, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    runner = ActionRunner({ActionKind.POWER_CYCLE: _executor(sim_bmc, tmp_path)}, audit)
    outcome = runner.submit(_decision())
    audit.close()
    assert outcome is not None and outcome.status == Status.DONE, outcome
    assert outcome.detail.startswith("power-cycled node-gpu-102 through its BMC 127.0.0.1: power on"), outcome.detail
    assert sim_bmc.power_events() == ["0", "1"]  # the BMC switched the host off, then on again
    log = (tmp_path / "audit.jsonl").read_text()
    entries = [json.loads(line) for line in log.splitlines()]
    assert [(e["kind"], e.get("status")) for e in entries if e.get("action") == "power_cycle"] == [
        ("decision", None), ("outcome", "done")]
    assert PASSWORD not in log


def test_dry_run_says_the_command_and_touches_nothing(sim_bmc: SimBmc, tmp_path: Path) -> None:
    outcome = _executor(sim_bmc, tmp_path).execute(_decision(), dry_run=True)
    assert outcome.status == Status.DRY_RUN
    assert "would have power-cycled node-gpu-102 through its BMC 127.0.0.1: ipmitool -I lanplus" in outcome.detail
    assert outcome.detail.endswith("chassis power cycle") and PASSWORD not in outcome.detail
    assert sim_bmc.power_events() == []


def test_off_by_default(sim_bmc: SimBmc, tmp_path: Path) -> None:
    outcome = _executor(sim_bmc, tmp_path, enabled=False).execute(_decision(), dry_run=False)
    assert outcome.status == Status.REFUSED and "power cycles are off" in outcome.detail
    assert sim_bmc.power_events() == []
    assert BmcFile().enabled is False


class _TenNodes:
    """The scheduler's view of a 10-node fleet; `down` are out of service."""

    def __init__(self) -> None:
        self.down = {"node-gpu-9"}

    def fleet(self) -> list[NodeState]:
        return [NodeState(f"node-gpu-{i}", unavailable=f"node-gpu-{i}" in self.down) for i in range(10)]


def test_the_fleet_breaker_stops_a_power_cycle_over_the_cap(sim_bmc: SimBmc, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    executor = _executor(sim_bmc, tmp_path, nodes=("node-gpu-1", "node-gpu-2"))
    fleet = _TenNodes()
    breaker = FleetBreaker(fleet, max_share=0.2, window_s=3600, clock=RealClock(), settle_s=0)
    runner = ActionRunner({ActionKind.POWER_CYCLE: executor}, audit, breaker=breaker)
    first = runner.submit(_decision("node-gpu-1"))  # 1 down + this one: 2 of 10, the limit
    fleet.down.add("node-gpu-1")  # the scheduler sees it down while it cycles
    second = runner.submit(_decision("node-gpu-2"))  # 2 down + this one would be 3 of 10
    audit.close()
    assert first is not None and first.status == Status.DONE
    assert second is not None and second.status == Status.REFUSED and "fleet breaker" in second.detail
    assert sim_bmc.power_events() == ["0", "1"]  # one cycle, not two


def test_a_wrong_password_fails_without_showing_it(sim_bmc: SimBmc, tmp_path: Path) -> None:
    outcome = _executor(sim_bmc, tmp_path, password="wrong-" + PASSWORD).execute(_decision(), dry_run=False)
    assert outcome.status == Status.FAILED and "does not answer" in outcome.detail
    assert PASSWORD not in outcome.detail and sim_bmc.power_events() == []


def test_password_from_the_environment_never_in_argv(sim_bmc: SimBmc) -> None:
    seen: list[list[str]] = []

    def spy(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        seen.append(argv)
        return subprocess.run(argv, **kw)  # type: ignore[call-overload,no-any-return]  # noqa: PLW1510 - check=False is in kw

    bmcs = BmcFile(enabled=True, confirm_s=20, nodes={"n1": sim_bmc.bmc(password_env="SITE_BMC_PASSWORD")})
    executor = IpmiPowerCycle(bmcs, runner=spy, env={**os.environ, "SITE_BMC_PASSWORD": PASSWORD})
    assert executor.execute(_decision("n1"), dry_run=False).status == Status.DONE
    assert seen and all(PASSWORD not in " ".join(a) and "-E" in a for a in seen)


def test_a_bmc_that_does_not_answer_fails_in_bounded_time() -> None:
    bmcs = BmcFile(enabled=True, nodes={"n1": Bmc(host="127.0.0.1", port=_free_udp_port(), user="admin",
                                                   password_env="X", timeout_s=1, retries=1)})
    t0 = time.monotonic()
    outcome = IpmiPowerCycle(bmcs, env={"X": "x"}).execute(_decision("n1"), dry_run=False)
    assert outcome.status == Status.FAILED and "does not answer" in outcome.detail
    assert time.monotonic() - t0 < 15


def test_the_bmc_file_names_file_line_and_field(tmp_path: Path) -> None:
    f = tmp_path / "bmc.yaml"
    f.write_text("enabled: true\nnodes:\n  node-gpu-1:\n    host: 10.0.0.1\n    user: admin\n    prot: 623\n")
    with pytest.raises(ConfigError) as exc:
        load_bmcs(f)
    assert exc.value.line == 6 and "prot" in (exc.value.field or ""), exc.value
    f.write_text("nodes:\n  node-gpu-1: {host: 10.0.0.1, user: admin, password_file: /etc/coldaisle/bmc.pass}\n")
    loaded = load_bmcs(f)
    assert loaded.enabled is False and loaded.nodes["node-gpu-1"].port == 623
