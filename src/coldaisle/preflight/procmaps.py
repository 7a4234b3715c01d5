"""The libraries a running process actually loaded, from /proc/PID/maps (not what its environment says)."""

from __future__ import annotations

from coldaisle.preflight.host import HostPaths
from coldaisle.preflight.interface import PreflightError

DELETED = " (deleted)"


def parse_maps(text: str) -> list[str]:
    """Mapped file paths in first-mapped order, each once (a replaced file keeps its ` (deleted)` mark)."""
    out: dict[str, None] = {}
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            out.setdefault(parts[5], None)
    return list(out)


def mapped_files(h: HostPaths, pid: int) -> list[str]:
    """The files process `pid` has mapped; a missing or unreadable process is a PreflightError."""
    text = h.read(f"/proc/{pid}/maps")
    if text is None:
        raise PreflightError(f"--pid {pid}: cannot read /proc/{pid}/maps (no such process, or not permitted)",
                             hint="run preflight as the job's user or as root, on the job's node")
    return parse_maps(text)
