"""NCCL and ProcessGroupNCCL settings that turn a failed collective into a silent, full-power hang.

Meanings from https://pytorch.org/docs/stable/torch_nccl_environment_variables.html and
https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html (NCCL_DEBUG levels, NCCL_SOCKET_IFNAME's
`^` exclude and `=` exact-match prefixes).
"""

from __future__ import annotations

from collections.abc import Iterable

from coldaisle.preflight import host
from coldaisle.preflight.context import Context
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note

DEBUG_LEVELS = ("VERSION", "WARN", "INFO", "TRACE")
_HEARTBEAT_MAX_S = 3600


def ifname_matches(spec: str, interfaces: list[str]) -> list[str]:
    """The interfaces NCCL_SOCKET_IFNAME selects (prefix list; `^` excludes; `=` exact)."""
    exclude = spec.startswith("^")
    spec = spec.lstrip("^")
    exact = spec.startswith("=")
    names = [n for n in spec.lstrip("=").split(",") if n]

    def hit(i: str) -> bool:
        return any(i == n if exact else i.startswith(n) for n in names)

    return [i for i in interfaces if hit(i) != exclude and (not exclude or i != "lo")]


class NcclSettings(Check):
    """The incident's collective deadlocked with no timeout; these settings are how that happens by config."""

    id = "env.nccl"
    title = "NCCL / ProcessGroupNCCL environment settings"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Error handling, watchdog monitoring, debug level and socket interface settings."""
        env = ctx.env
        for var in ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "NCCL_ASYNC_ERROR_HANDLING"):
            if env.get(var, "").strip() == "0":
                yield self.finding(CheckSeverity.FAIL, f"{var}=0 turns off handling of asynchronous NCCL errors: a "
                                   "timed-out collective is noticed but the job keeps spinning", var,
                                   f"unset {var} (the default tears the process down on error)")
        if env.get("TORCH_NCCL_ENABLE_MONITORING", "").strip() == "0":
            yield self.finding(CheckSeverity.WARN, "TORCH_NCCL_ENABLE_MONITORING=0 disables the monitor that aborts a "
                               "process whose watchdog is stuck", "TORCH_NCCL_ENABLE_MONITORING",
                               "unset TORCH_NCCL_ENABLE_MONITORING")
        beat = env.get("TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC", "")
        if beat.strip().isdigit() and int(beat) > _HEARTBEAT_MAX_S:
            yield self.finding(CheckSeverity.WARN, f"TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC={beat}: a stuck watchdog is "
                               f"tolerated for over {_HEARTBEAT_MAX_S // 60} minutes at full power",
                               "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC", "use the default (480 s) or a few minutes")
        yield from self._debug(env.get("NCCL_DEBUG"))
        yield from self._ifname(ctx, env.get("NCCL_SOCKET_IFNAME"))

    def _debug(self, level: str | None) -> Iterable[Finding]:
        if level is None:
            return
        if level.upper() not in DEBUG_LEVELS:
            yield self.finding(CheckSeverity.WARN, f"NCCL_DEBUG={level!r} is not a level NCCL knows "
                               f"({', '.join(DEBUG_LEVELS)}); errors will be reported without detail",
                               "NCCL_DEBUG", "set NCCL_DEBUG=WARN")
        elif level.upper() == "TRACE":
            yield self.finding(CheckSeverity.WARN, "NCCL_DEBUG=TRACE logs every call (and needs a TRACE build of NCCL)",
                               "NCCL_DEBUG", "use NCCL_DEBUG=WARN in production, INFO to debug")

    def _ifname(self, ctx: Context, spec: str | None) -> Iterable[Finding]:
        if not spec:
            return
        interfaces = host.net_interfaces(ctx.host)
        if not interfaces:
            return
        if not ifname_matches(spec, interfaces):
            yield self.finding(CheckSeverity.FAIL, f"NCCL_SOCKET_IFNAME={spec!r} selects no interface of this host "
                               f"({', '.join(interfaces)}): NCCL bootstrap cannot connect", "NCCL_SOCKET_IFNAME",
                               "set it to the cluster network's interface name (or a prefix of it)",
                               interfaces=interfaces)
