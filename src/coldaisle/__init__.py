"""coldaisle: keep GPU clusters from cooking themselves and jobs from failing silently."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # checkers see the real signatures; at run time they load on first use
    from coldaisle.guard.heartbeat import latency as latency
    from coldaisle.guard.heartbeat import phase as phase
    from coldaisle.guard.heartbeat import progress as progress

from coldaisle.version import __version__ as __version__


def __getattr__(name: str) -> object:  # lazy: `import coldaisle` stays cheap
    """`coldaisle.progress`, `.latency` and `.phase` (the heartbeat API) load guard.heartbeat on first use."""
    if name in ("progress", "latency", "phase"):
        from coldaisle.guard import heartbeat

        globals()[name] = value = getattr(heartbeat, name)  # cached: later lookups are a plain dict hit
        return value
    raise AttributeError(f"module 'coldaisle' has no attribute {name!r}")
