"""Host facts read from files (/proc, /sys, /etc, dpkg's status): never by running a program.

Every reader takes `HostPaths`, whose `root` is `/` on a node and a directory of captured files in tests,
so the parsers are exercised on real formats without the host they came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_DRIVER = re.compile(r"Kernel Module\s+(?:for\s+\S+\s+)?(\d+\.\d+(?:\.\d+)?)")
_MEMINFO = re.compile(r"^(\w+):\s+(\d+)(?:\s+kB)?$", re.M)


@dataclass(frozen=True, slots=True)
class HostPaths:
    """Where the host's files are; tests point `root` at captured copies."""

    root: Path = Path("/")

    def p(self, path: str) -> Path:
        """`path` (absolute on the host) under root."""
        return self.root / path.lstrip("/")

    def read(self, path: str) -> str | None:
        """A text file's contents, or None when it is absent or unreadable."""
        try:
            return self.p(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None


def driver_version(h: HostPaths) -> str | None:
    """The loaded NVIDIA kernel module's version (/proc/driver/nvidia/version, else /sys/module)."""
    text = h.read("/proc/driver/nvidia/version")
    if text:
        m = _DRIVER.search(text)
        if m:
            return m.group(1)
    text = h.read("/sys/module/nvidia/version")
    return text.strip() or None if text else None


def kernel_release(h: HostPaths) -> str | None:
    """`uname -r`, from /proc/sys/kernel/osrelease."""
    text = h.read("/proc/sys/kernel/osrelease")
    return text.strip() or None if text else None


def kernel_modules(h: HostPaths) -> set[str]:
    """Names of loaded kernel modules (/proc/modules)."""
    text = h.read("/proc/modules") or ""
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def dpkg_versions(h: HostPaths, prefix: str) -> dict[str, str]:
    """Installed Debian packages whose name starts with `prefix` -> version (from dpkg's status file)."""
    text = h.read("/var/lib/dpkg/status") or ""
    out: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        name = fields.get("Package", "")
        if name.startswith(prefix) and "installed" in fields.get("Status", "").split() and "Version" in fields:
            out[name] = fields["Version"]
    return out


def fabric_manager_version(h: HostPaths) -> str | None:
    """The installed NVIDIA fabric manager's version (its Debian package), upstream part only."""
    versions = dpkg_versions(h, "nvidia-fabricmanager")
    if not versions:
        return None
    version = next(iter(sorted(versions.values())))
    return version.split(":")[-1].split("-")[0]


def meminfo(h: HostPaths) -> dict[str, int]:
    """/proc/meminfo in bytes."""
    text = h.read("/proc/meminfo") or ""
    return {k: int(v) * 1024 for k, v in _MEMINFO.findall(text)}


def net_interfaces(h: HostPaths) -> list[str]:
    """Network interface names (/sys/class/net)."""
    try:
        return sorted(p.name for p in h.p("/sys/class/net").iterdir())
    except OSError:
        return []


def ib_devices(h: HostPaths) -> list[str]:
    """InfiniBand/RoCE device names (/sys/class/infiniband)."""
    try:
        return sorted(p.name for p in h.p("/sys/class/infiniband").iterdir())
    except OSError:
        return []


def memlock_limit(h: HostPaths, pid: int | str = "self") -> int | None:
    """The soft RLIMIT_MEMLOCK in bytes from /proc/PID/limits; -1 for unlimited, None when unreadable."""
    text = h.read(f"/proc/{pid}/limits") or ""
    for line in text.splitlines():
        if line.startswith("Max locked memory"):
            soft = line[len("Max locked memory"):].split()[0]
            return -1 if soft == "unlimited" else int(soft)
    return None


@dataclass(frozen=True, slots=True)
class IdleState:
    """One CPU idle state of cpu0 (/sys/devices/system/cpu/cpu0/cpuidle/stateN)."""

    name: str
    latency_us: int
    disabled: bool


def idle_states(h: HostPaths) -> list[IdleState]:
    """cpu0's idle states, shallowest first (the kernel numbers them that way)."""
    base = h.p("/sys/devices/system/cpu/cpu0/cpuidle")
    try:
        dirs = sorted((p for p in base.iterdir() if p.name.startswith("state")), key=lambda p: int(p.name[5:]))
    except (OSError, ValueError):
        return []
    out = []
    for d in dirs:
        try:
            out.append(IdleState((d / "name").read_text().strip(), int((d / "latency").read_text()),
                                 (d / "disable").read_text().strip() == "1"))
        except (OSError, ValueError):
            continue
    return out
