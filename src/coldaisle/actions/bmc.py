"""The out-of-band last rung: power-cycle a wedged node through its BMC with `ipmitool` (IPMI over LAN).

When a GPU has fallen off the bus or a process sits in D state holding it, nothing on the node can free it:
only a power cycle can. The agent may be the one thing still running there, so this goes through the node's
BMC. It is off unless the BMC file says `enabled: true`, it sits behind the runner's circuit breaker and
rate limiter like a drain, every Decision and Outcome is audited, and dry-run says which command it would
have run. ipmitool is called with an argv (no shell); the password never appears in the argv (`ps` shows
it) or the audit log: it goes through a password file (`-f`) or the environment (`-E`, IPMI_PASSWORD).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from coldaisle.actions.drain import Runner
from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status
from coldaisle.config import load_model
from coldaisle.telemetry.clock import Clock, RealClock

#: Why a power cycle is refused while the BMC file does not enable them (the twin's simulated BMC says the same).
POWER_CYCLES_OFF = "power cycles are off (set `enabled: true` in the BMC file to allow them)"


class Bmc(BaseModel):
    """One node's BMC as ipmitool reaches it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, description="BMC address")
    port: int = Field(623, ge=1, le=65535)
    user: str = Field(min_length=1)
    password_file: Path | None = Field(None, description="file holding the password (ipmitool -f)")
    password_env: str | None = Field(None, description="environment variable holding it (ipmitool -E)")
    interface: str = Field("lanplus", pattern=r"^(lan|lanplus)$")
    cipher_suite: int | None = Field(None, ge=0, le=17, description="ipmitool -C (lanplus)")
    timeout_s: int = Field(5, ge=1, description="ipmitool -N: seconds per try")
    retries: int = Field(2, ge=1, description="ipmitool -R")


class BmcFile(BaseModel):
    """/etc/coldaisle/bmc.yaml: whether power cycles are allowed at all, and each node's BMC."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    confirm_s: float = Field(60.0, gt=0, description="how long to wait for the power to be back on")
    nodes: dict[str, Bmc] = Field(default_factory=dict)


def load_bmcs(path: str | Path) -> BmcFile:
    """The BMC file; errors name file, line and field."""
    return load_model(path, BmcFile)


def ipmitool_argv(bmc: Bmc, *command: str, ipmitool: str = "ipmitool") -> list[str]:
    """argv for one ipmitool command against `bmc`; the password is referenced, never included."""
    argv = [ipmitool, "-I", bmc.interface, "-H", bmc.host, "-p", str(bmc.port), "-U", bmc.user,
            "-N", str(bmc.timeout_s), "-R", str(bmc.retries)]
    if bmc.cipher_suite is not None:
        argv += ["-C", str(bmc.cipher_suite)]
    if bmc.password_file is not None:
        argv += ["-f", str(bmc.password_file)]
    elif bmc.password_env is not None:
        argv += ["-E"]
    return [*argv, *command]


class IpmiPowerCycle:
    """POWER_CYCLE executor: `ipmitool chassis power cycle`, then waits until the chassis reports power on."""

    kind = ActionKind.POWER_CYCLE

    def __init__(self, bmcs: BmcFile, *, ipmitool: str = "ipmitool", runner: Runner = subprocess.run,
                 clock: Clock | None = None, sleep: Callable[[float], None] = time.sleep,
                 env: Mapping[str, str] | None = None) -> None:
        self.bmcs, self.ipmitool, self.runner = bmcs, ipmitool, runner
        self.clock = clock or RealClock()
        self.sleep = sleep
        self.env = os.environ if env is None else env

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Power-cycle the target's node (or say what would be done); never raises."""
        try:
            status, detail = self._cycle(decision.target.node, dry_run)
        except Exception as exc:
            status, detail = Status.FAILED, f"{type(exc).__name__}: {exc}"
        return Outcome(decision, status, detail, self.clock.time())

    def _cycle(self, node: str, dry_run: bool) -> tuple[Status, str]:
        if not self.bmcs.enabled:
            return Status.REFUSED, POWER_CYCLES_OFF
        bmc = self.bmcs.nodes.get(node)
        if bmc is None:
            return Status.FAILED, f"no BMC is configured for {node}"
        argv = ipmitool_argv(bmc, "chassis", "power", "cycle", ipmitool=self.ipmitool)
        if dry_run:
            return Status.DRY_RUN, f"would have power-cycled {node} through its BMC {bmc.host}: {' '.join(argv)}"
        ok, before = self._power(bmc)
        if not ok:
            return Status.FAILED, f"BMC {bmc.host} of {node} does not answer: {before}"
        ok, text = self._call(bmc, argv)
        if not ok:
            return Status.FAILED, f"power cycle of {node} refused by its BMC {bmc.host}: {text}"
        return self._confirm(node, bmc, before)

    def _confirm(self, node: str, bmc: Bmc, before: str) -> tuple[Status, str]:
        """Wait until the chassis reports power on again (a cycle is off, a pause of a second or more, then on)."""
        deadline = self.clock.monotonic() + self.bmcs.confirm_s
        seen = [before]
        while self.clock.monotonic() < deadline:
            self.sleep(0.5)
            ok, state = self._power(bmc)
            if ok and state != seen[-1]:
                seen.append(state)
            if ok and state == "on":
                return Status.DONE, f"power-cycled {node} through its BMC {bmc.host}: power {' -> '.join(seen)}"
        return Status.DONE, (f"power cycle of {node} accepted by its BMC {bmc.host}, but power is not reported "
                             f"back on after {self.bmcs.confirm_s:g} s (seen: {' -> '.join(seen)})")

    def _power(self, bmc: Bmc) -> tuple[bool, str]:
        """(True, "on"/"off") from `chassis power status`, or (False, why)."""
        ok, text = self._call(bmc, ipmitool_argv(bmc, "chassis", "power", "status", ipmitool=self.ipmitool))
        if not ok:
            return False, text
        words = text.strip().split()
        return (True, words[-1].lower()) if words and words[-1].lower() in ("on", "off") else (False, text.strip())

    def _call(self, bmc: Bmc, argv: list[str]) -> tuple[bool, str]:
        env = dict(self.env)
        if bmc.password_file is None and bmc.password_env is not None:
            env["IPMI_PASSWORD"] = self.env.get(bmc.password_env, "")
        budget = bmc.timeout_s * (bmc.retries + 1) + 5
        try:
            cp = self.runner(argv, capture_output=True, text=True, timeout=budget, check=False, env=env)
        except FileNotFoundError:
            return False, f"{argv[0]} not found (install ipmitool)"
        except subprocess.TimeoutExpired:
            return False, f"ipmitool gave no answer in {budget} s"
        if cp.returncode != 0:
            lines = (cp.stderr or cp.stdout or "").strip().splitlines()
            return False, lines[-1] if lines else f"ipmitool exited {cp.returncode}"
        return True, cp.stdout
