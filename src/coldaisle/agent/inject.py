"""`coldaisle inject`: write a real-format GPU fault line into the kernel log, to watch the whole path on a node.

An operator (root) checks, on their own node, that a fault the driver would print reaches the running agent:
kernel log -> the agent's follower -> the rule -> the action (dry-run unless the policy enforces) -> the audit
log and /metrics. The line is exactly what the driver or the kernel prints (NVRM Xid 79 and 48, a fatal PCIe
AER report), so it is classified by the same catalog; a marker line before it says it was injected, and by
whom, so a person reading `dmesg` later is not misled. Nothing is written without root or with `--dry-run`.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from coldaisle.errors import ColdaisleError


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault the kernel log can carry: its lines for a GPU at a PCI address, and the kernel log level."""

    name: str
    what: str
    level: int  # printk level: 3 err, 4 warning
    lines: tuple[str, ...]  # formatted with {nvrm} (0000:b1:00), {pci} (0000:b1:00.0), {port} (its root port)


FAULTS = {f.name: f for f in (
    Fault("xid79", "Xid 79: the GPU has fallen off the bus", 3,
          ("NVRM: Xid (PCI:{nvrm}): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",)),
    Fault("xid48", "Xid 48: a double-bit (uncorrectable) ECC error", 3,
          ("NVRM: Xid (PCI:{nvrm}): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) "
           "has been detected on GPU in the framebuffer at partition 6, subpartition 0.",)),
    Fault("aer-fatal", "a fatal PCIe AER error on the GPU's link", 3,
          ("pcieport {port}: AER: Uncorrected (Fatal) error received: {pci}",
           "nvidia {pci}: AER: PCIe Bus Error: severity=Uncorrected (Fatal), type=Transaction Layer, (Receiver ID)",
           "nvidia {pci}: AER:   device [10de:2331] error status/mask=00000020/00000000",
           "nvidia {pci}:    [ 5] SDES                   (First)")),
)}


def fault_lines(fault: str, pci: str) -> list[str]:
    """The kernel log records for `fault` on the GPU at `pci` (`0000:b1:00.0`), each as `<level>text`."""
    spec = FAULTS.get(fault)
    if spec is None:
        raise ColdaisleError(f"unknown fault {fault!r}", hint=f"one of {', '.join(FAULTS)}", exit_code=2)
    parts = pci.lower().split(":")
    if len(parts) != 3 or "." not in parts[2]:
        raise ColdaisleError(f"--pci: {pci!r} is not a PCI address such as 0000:b1:00.0", exit_code=2)
    bus = int(parts[1], 16)
    port = f"{parts[0]}:{max(bus - 1, 0):02x}:01.0"  # the root port one bus up, as on common GPU servers
    nvrm = pci.rsplit(".", 1)[0].lower()
    user = pwd.getpwuid(os.getuid()).pw_name
    marker = f"<5>coldaisle inject: a test {spec.what} on {pci} follows, written by {user} (not a real fault)"
    return [marker, *(f"<{spec.level}>{line.format(nvrm=nvrm, pci=pci.lower(), port=port)}" for line in spec.lines)]


def inject(fault: str, pci: str, *, kmsg: str = "/dev/kmsg", dry_run: bool = False) -> list[str]:
    """Write the fault's records to the kernel log (one write per record, as the kernel wants); returns them."""
    records = fault_lines(fault, pci)
    if dry_run:
        return records
    if os.geteuid() != 0:
        raise ColdaisleError("writing to the kernel log needs root", hint="sudo coldaisle inject ...", exit_code=1)
    try:
        fd = os.open(kmsg, os.O_WRONLY)
    except OSError as exc:
        raise ColdaisleError(f"cannot open {kmsg}: {exc.strerror}", exit_code=1) from None
    try:
        for record in records:
            os.write(fd, (record + "\n").encode())
    finally:
        os.close(fd)
    return records
