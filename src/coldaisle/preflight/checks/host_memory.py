"""Locked-memory limit (InfiniBand registers memory) and swap (a GPU job's host memory must not page)."""

from __future__ import annotations

from collections.abc import Iterable

from coldaisle.preflight import host
from coldaisle.preflight.context import Context
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note

_MIB = 1024**2


class MemoryLimits(Check):
    """RDMA pins buffers (RLIMIT_MEMLOCK); the incident's spill to host memory ended in D state and a panic."""

    id = "host.memory"
    title = "memlock limit and swap"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Warn on a bounded memlock limit where RDMA devices exist, and on swap being enabled."""
        pid = ctx.options.pid if ctx.options.pid is not None else "self"
        limit = host.memlock_limit(ctx.host, pid)
        ib = host.ib_devices(ctx.host)
        who = f"process {pid}" if pid != "self" else "this shell"
        if limit is None:
            yield self.note(f"cannot read /proc/{pid}/limits", "RLIMIT_MEMLOCK")
        elif limit != -1:
            sev = CheckSeverity.WARN if ib else CheckSeverity.INFO
            where = f"RDMA devices present ({', '.join(ib)})" if ib else "no RDMA device found"
            yield self.finding(sev, f"max locked memory for {who} is {limit // _MIB} MiB, not unlimited; {where}: "
                               "NCCL/IB memory registration can fail", "RLIMIT_MEMLOCK",
                               "set `* - memlock unlimited` in /etc/security/limits.conf (and "
                               "LimitMEMLOCK=infinity for slurmd/containerd)", limit_bytes=limit)
        swap = host.meminfo(ctx.host).get("SwapTotal", 0)
        if swap > 0:
            yield self.finding(CheckSeverity.WARN, f"swap is enabled ({swap // _MIB} MiB): a runaway process pages "
                               "for minutes in D state instead of being OOM-killed", "swap",
                               "swapoff -a (and remove swap from /etc/fstab) on GPU nodes", swap_bytes=swap)
