"""LD_LIBRARY_PATH and PATH entries that are empty, relative, missing, world-writable or someone's home."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from coldaisle.preflight.checks.rpath import risky_dir
from coldaisle.preflight.context import Context
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note


def entry_problem(entry: str, env: dict[str, str]) -> tuple[CheckSeverity, str] | None:
    """The worst problem of one search-path entry (LD_LIBRARY_PATH severities), or None."""
    if entry == "":
        return CheckSeverity.WARN, "an empty entry searches the current directory"
    if not os.path.isabs(entry):
        return CheckSeverity.WARN, f"{entry!r} is relative: it depends on the current directory"
    try:
        st = os.stat(entry)
    except OSError:
        return CheckSeverity.WARN, f"{entry!r} does not exist"
    if st.st_mode & stat.S_IWOTH:
        return CheckSeverity.FAIL, f"{entry!r} is world-writable: anyone on the host can plant code there"
    why = risky_dir(entry, env)
    if why:
        return CheckSeverity.WARN, f"{entry!r} is {why}"
    return None


class SearchPaths(Check):
    """The incident's LD_LIBRARY_PATH reached into /home/user/tmp; the deployment failed on every other node."""

    id = "env.paths"
    title = "LD_LIBRARY_PATH and PATH entries"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """LD_LIBRARY_PATH problems at full severity; PATH's one step lower (fail -> warn -> info)."""
        lower = {CheckSeverity.FAIL: CheckSeverity.WARN, CheckSeverity.WARN: CheckSeverity.INFO,
                 CheckSeverity.INFO: CheckSeverity.INFO}
        for var in ("LD_LIBRARY_PATH", "PATH"):
            raw = ctx.env.get(var)
            if not raw:
                continue
            for i, entry in enumerate(raw.split(":")):
                problem = entry_problem(entry, ctx.env)
                if problem:
                    sev, why = problem
                    yield self.finding(sev if var == "LD_LIBRARY_PATH" else lower[sev], f"{var} entry {i + 1}: {why}",
                                       f"{var}[{i + 1}]={entry}", f"remove {entry or 'the empty entry'!r} from {var}",
                                       variable=var, entry=entry)
