"""RPATH/RUNPATH entries that point into home directories, /tmp, nowhere, or the current directory."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from coldaisle.preflight.context import Context
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note
from coldaisle.preflight.loader import expand

TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 - matched against, never written to


def _under(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def risky_dir(path: str, env: Mapping[str, str]) -> str:
    """Why a library directory is no place to load code from ("" when it is fine)."""
    path = os.path.normpath(path)
    if any(_under(path, t) for t in TMP_DIRS):
        return "a temporary directory (world-writable, wiped at reboot)"
    home = env.get("HOME", "")
    if _under(path, "/home") or _under(path, "/root") or (home not in ("", "/") and _under(path, home)):
        return "a home directory (one person's files, absent on other nodes)"
    return ""


def entry_problems(entry: str, origin: str, env: Mapping[str, str]) -> tuple[CheckSeverity, str] | None:
    """The worst problem of one RPATH/RUNPATH entry, or None."""
    if entry == "":
        return CheckSeverity.WARN, "an empty entry, which means the current directory"
    if not entry.startswith(("/", "$ORIGIN", "${ORIGIN}")):
        return CheckSeverity.WARN, f"{entry!r} is relative to whatever the current directory is"
    why = "" if entry.startswith(("$ORIGIN", "${ORIGIN}")) else risky_dir(entry, env)
    if why:  # an $ORIGIN entry moves with its object: where the object lives is not the RPATH's fault
        return CheckSeverity.FAIL, f"{entry!r} points into {why}"
    if not any(os.path.isdir(p) for p in expand(entry, origin)):
        return CheckSeverity.WARN, f"{entry!r} does not exist on this host"
    return None


class Rpath(Check):
    """The incident's binaries had RPATHs into a researcher's home directory: fine on one laptop, nowhere else."""

    id = "elf.rpath"
    title = "RPATH/RUNPATH of shared objects"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """One finding per object and bad entry."""
        for obj in ctx.elf.objects:
            origin = os.path.dirname(obj.path)
            for tag, entries in (("RPATH", obj.rpath), ("RUNPATH", obj.runpath)):
                for entry in entries:
                    problem = entry_problems(entry, origin, ctx.env)
                    if problem:
                        sev, why = problem
                        yield self.finding(sev, f"{tag} {why}", obj.path,
                                           f"relink without it (-Wl,-rpath,'$ORIGIN/...') or patchelf --remove-rpath "
                                           f"{os.path.basename(obj.path)}", entry=entry, tag=tag)
