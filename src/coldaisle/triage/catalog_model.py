"""The signature file's schema: signatures, context lines, value rules and the Xid table, as pydantic models.

A signature is one kind of event (node-problem-detector's `{type, reason, pattern}` plus severity, meaning and
action). A context line is not an event on its own; it belongs to the event before or after it (an AER report's
detail lines, the `CPU: N PID: N Comm: x` line of an oops, the `CA 'mlx5_0'` header of an ibstat block, a
journal export entry's `__REALTIME_TIMESTAMP=`). Value rules normalise what the kernel spells many ways
(`Correctable` / `Corrected`, `RxErr` / `Receiver Error`) so severities and reports speak one vocabulary.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SeverityName = Literal["debug", "info", "warning", "error", "critical"]
ContextRole = Literal["lead", "detail", "both", "boundary"]
_LOOKAROUND = re.compile(r"\(\?<?[=!]")


def _checked(value: str) -> str:
    """A pattern both engines (Python's re and the Hyperscan/grep translations) read the same way."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    if "(?P=" in value:
        raise ValueError("back-references cannot run in the multi-pattern scanner")
    if _LOOKAROUND.search(value):
        raise ValueError("look-around cannot be translated for grep; list a benign signature before this one")
    return value


class AlarmRate(BaseModel):
    """A kind that alarms only when frequent: `lines` lines of it per host and device within `window_s`."""

    model_config = ConfigDict(extra="forbid")

    field: str  # the field whose value selects the rate-gated kind (e.g. aer_kind)
    value: str  # e.g. corrected
    lines: int = Field(ge=1)
    window_s: float = Field(gt=0)
    per: list[str] = ["pci"]  # with the host, what counts as one device


class SignatureSpec(BaseModel):
    """One signature as written in the YAML file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    cls: str = Field(alias="class", pattern=r"^[a-z][a-z0-9_]*$")
    severity: SeverityName
    source: str = "log"
    pattern: str
    ignore_case: bool = False
    meaning: str
    action: str = ""
    group_by: list[str] = []
    severity_by: dict[str, dict[str, SeverityName]] = {}  # field -> value -> severity (e.g. AER kind)
    class_by: dict[str, dict[str, str]] = {}  # field -> value -> class (a GHES record's `section_type`)
    constant: dict[str, int | str] = {}  # fields every match carries (xid 79 on a bus loss)
    xid_table: bool = True  # take severity and meaning from the Xid table when an `xid` field is set
    joins: int = 0  # merge into the open event of the same class that ended at most this many lines before
    # (and agrees on its group_by fields)
    needs: list[str] = []  # context ids of which one must lead this line (within its `within`) for it to count
    alarm_rate: AlarmRate | None = None
    refs: list[str] = []

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return _checked(value)


class ContextSpec(BaseModel):
    """A line that belongs to a neighbouring event: `lead` ones to the next, `detail` ones to the last."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    role: ContextRole
    pattern: str
    classes: list[str] = []  # the event classes it may join (empty: any)
    within: int = Field(default=3, ge=1)  # lines between it and the event it joins
    ignore_case: bool = False
    meaning: str = ""
    refs: list[str] = []

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return _checked(value)


class ValueRule(BaseModel):
    """Rewrites a field's value when `match` is found in it; `derive` fills other fields that are missing."""

    model_config = ConfigDict(extra="forbid")

    field: str
    match: str
    value: str
    derive: dict[str, str] = {}

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return _checked(value)


class XidSpec(BaseModel):
    """What NVIDIA documents for one Xid code, and what to do about it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    severity: SeverityName
    meaning: str
    action: str


class CatalogFile(BaseModel):
    """A signature file: signatures, context lines, value rules and (in the shipped file) the Xid code table."""

    model_config = ConfigDict(extra="forbid")

    signatures: list[SignatureSpec]
    contexts: list[ContextSpec] = []
    normalize: list[ValueRule] = []
    fallbacks: dict[str, list[str]] = {}  # field -> fields whose value it takes when it has none
    xids: dict[int, XidSpec] = {}
    refs: list[str] = []
