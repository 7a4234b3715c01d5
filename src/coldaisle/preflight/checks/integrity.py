"""Files named like shared objects that are not usable ones: truncated, corrupt, unreadable, not ELF."""

from __future__ import annotations

from collections.abc import Iterable

from coldaisle.preflight.context import Context
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note


class ElfIntegrity(Check):
    """A truncated .so fails at load time; a file preflight cannot read is one it cannot vouch for."""

    id = "elf.integrity"
    title = "shared objects that cannot be read or parsed"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Warn on corrupt and unreadable objects; note non-ELF files, symlink loops and dangling links."""
        scan = ctx.elf
        for bad in scan.problems:
            if bad.problem == "corrupt":
                yield self.finding(CheckSeverity.WARN,
                                   f"not a loadable ELF object (truncated or corrupt: {bad.detail})", bad.path,
                                   "reinstall the package that owns it")
            elif bad.problem == "unreadable":
                yield self.finding(CheckSeverity.WARN, f"cannot be read ({bad.detail}), so it was not inspected",
                                   bad.path, "run preflight as the job's user, or fix the file's permissions")
            else:
                yield self.note(f"skipped: named like a shared object but {bad.problem} ({bad.detail})", bad.path)
        for path, why in scan.notes:
            yield self.note(f"skipped: {why}", path)
        for subject, why in ctx.notes:
            yield self.note(why, subject)
        yield self.note(f"{len(scan.objects)} shared objects inspected ({scan.parsed} parsed, {scan.cached} from "
                        "the cache)")
