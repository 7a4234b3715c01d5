"""One error base for the whole toolkit: every failure a user sees has a message, a hint and an exit code."""

from __future__ import annotations


class ColdaisleError(Exception):
    """Base of every error coldaisle raises on purpose; the CLI prints it as `Error:` and `Hint:`."""

    exit_code: int = 1
    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        """The one-sentence description of what went wrong."""
        return str(self.args[0]) if self.args else ""


class ConfigError(ColdaisleError):
    """A configuration or input file is invalid; the message names file, line and field."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file, self.line, self.field = file, line, field
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        at = f"{field}: " if field else ""
        super().__init__(f"{prefix}{at}{message}", hint=hint)


class BackendUnavailable(ColdaisleError):
    """The requested telemetry backend cannot run on this host (no NVML library, no GPU)."""

    exit_code = 3


class PowerLimitError(ColdaisleError):
    """A power limit could not be set: out of range, not permitted, not supported or device gone."""
