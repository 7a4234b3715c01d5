"""Free space where checkpoints go: a job that cannot write its checkpoint loses everything since the last."""

from __future__ import annotations

import os
from collections.abc import Iterable

from coldaisle.preflight.context import Context
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note

_GIB = 1024**3


class FreeDisk(Check):
    """Fails under --min-free-disk, warns under twice that."""

    id = "host.disk"
    title = "free disk space for checkpoints"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """statvfs of the checkpoint directory (blocks available to unprivileged users)."""
        path = ctx.options.checkpoint_dir
        try:
            st = os.statvfs(path)
        except OSError as exc:
            yield self.finding(CheckSeverity.FAIL, f"checkpoint directory cannot be examined: {exc.strerror}",
                               str(path), "create it, or pass --checkpoint-dir")
            return
        free, need = st.f_bavail * st.f_frsize, ctx.options.min_free_disk_bytes
        if free < 2 * need:
            sev = CheckSeverity.FAIL if free < need else CheckSeverity.WARN
            yield self.finding(sev, f"{free / _GIB:.1f} GiB free, {need / _GIB:.0f} GiB wanted for checkpoints",
                               str(path), "free space or point --checkpoint-dir at a larger volume",
                               free_bytes=free, wanted_bytes=need)
