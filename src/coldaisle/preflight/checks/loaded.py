"""For a running job (--pid): the libraries it actually mapped, not what its environment suggests."""

from __future__ import annotations

import os
from collections.abc import Iterable

from coldaisle.preflight.checks.duplicates import soname_of
from coldaisle.preflight.checks.rpath import risky_dir
from coldaisle.preflight.context import Context
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note, Skip
from coldaisle.preflight.procmaps import DELETED


class LoadedLibraries(Check):
    """Two NCCLs in one process, a library loaded from /tmp or a home directory, or replaced under it."""

    id = "stack.loaded-libs"
    title = "libraries a running job loaded (/proc/PID/maps)"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Fail on two copies of one library in the process; warn on risky or deleted files."""
        if ctx.options.pid is None:
            raise Skip("no --pid given")
        pid = ctx.options.pid
        by_soname: dict[str, list[str]] = {}
        for path in ctx.loaded_libraries:
            clean = path.removesuffix(DELETED)
            key = soname_of(clean, "")
            if key:
                by_soname.setdefault(key, []).append(clean)
            if path.endswith(DELETED) and ".so" in clean:
                yield self.finding(CheckSeverity.WARN, f"process {pid} runs {clean}, which was deleted or replaced on "
                                   "disk after it was loaded", clean, "restart the job so it runs the installed "
                                   "library (and preflight checks what it will really load)")
            why = risky_dir(os.path.dirname(clean), ctx.env)
            if why and ".so" in os.path.basename(clean):
                sev = CheckSeverity.WARN if why.startswith("a temporary") else CheckSeverity.INFO
                yield self.finding(sev, f"process {pid} loaded {clean} from {why}", clean,
                                   "install the library under a system or environment directory")
        for soname, paths in sorted(by_soname.items()):
            real = list(dict.fromkeys(os.path.realpath(p) for p in paths))
            if len(real) > 1:
                yield self.finding(CheckSeverity.FAIL, f"process {pid} has {len(real)} copies of {soname} loaded: "
                                   f"{', '.join(paths)}; which one a call reaches depends on symbol order",
                                   soname, "make every component load one copy (clean LD_LIBRARY_PATH, RPATHs)",
                                   copies=paths)
