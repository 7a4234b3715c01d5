"""The signature catalog (data) and the per-line matcher every log reader shares.

Signatures are shaped like node-problem-detector's `{type, reason, pattern}`: a class, a severity, a Python
regex whose named groups become the event's fields, and the meaning and recommended action a reader needs.
`signatures.yaml` ships in the package; `--signatures FILE` adds a user's own, which are tried first. The
first signature that matches a line wins, so benign look-alikes are listed before the alarms they resemble.

    from coldaisle.triage.catalog import load_catalog
    matcher = load_catalog().matcher()
    for m in matcher.match("NVRM: Xid (PCI:0000:b1:00): 79, pid=12855, name=python3, GPU has fallen off the bus."):
        print(m.cls, m.severity.name, m.fields)      # xid CRITICAL {'pci': '0000:b1:00.0', 'xid': 79, ...}
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from coldaisle.config import Located, load_model, parse_model
from coldaisle.errors import ConfigError
from coldaisle.telemetry.events import Severity

SeverityName = Literal["debug", "info", "warning", "error", "critical"]
_NAMED = re.compile(r"\(\?P<(\w+)>")
_PCI_SHORT = re.compile(r"^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}$")
_NONE_VALUES = frozenset({"<unknown>", "N/A", "n/a", "(null)", ""})
_TEXT_FIELDS = frozenset({"address", "ip", "op_count", "comm", "bus", "version", "detail", "reason", "error",
                          "tried", "rtc_time", "gpu_uuid"})  # hex or free text: never turned into numbers


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
    refs: list[str] = []

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if "(?P=" in value:
            raise ValueError("back-references cannot run in the multi-pattern scanner")
        return value


class XidSpec(BaseModel):
    """What NVIDIA documents for one Xid code, and what to do about it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    severity: SeverityName
    meaning: str
    action: str


class CatalogFile(BaseModel):
    """A signature file: signatures, and (in the shipped file) the Xid code table."""

    model_config = ConfigDict(extra="forbid")

    signatures: list[SignatureSpec]
    xids: dict[int, XidSpec] = {}
    refs: list[str] = []


@dataclass(frozen=True, slots=True)
class Signature:
    """A compiled signature."""

    spec: SignatureSpec
    regex: re.Pattern[str]
    origin: str  # file:line, for error messages and the report

    @property
    def id(self) -> str:
        """The signature's id (unique in a catalog)."""
        return self.spec.id


@dataclass(frozen=True, slots=True)
class Match:
    """One signature matching one line: its class, resolved severity, typed fields, meaning and action."""

    signature: Signature
    cls: str
    severity: Severity
    fields: dict[str, Any]
    meaning: str
    action: str


def _value(key: str, raw: str) -> Any:
    """Typed field value: integers as int, NVRM's short PCI id with its function, unknowns dropped."""
    text = raw.strip().strip("'\"")
    if text in _NONE_VALUES:
        return None
    if key in ("pci", "device_pci") and _PCI_SHORT.match(text):
        return text.lower() + ".0"  # NVRM prints 0000:b1:00; NVML and the kernel name 0000:b1:00.0
    if key in ("pci", "device_pci"):
        return text.lower()
    if text.isdigit() and len(text) < 19 and key not in _TEXT_FIELDS:
        return int(text)
    return text


class Catalog:
    """Every signature in precedence order, plus the Xid code table."""

    def __init__(self, signatures: Sequence[Signature], xids: dict[int, XidSpec]) -> None:
        self.signatures = tuple(signatures)
        self.xids = dict(xids)
        self.by_id = {s.id: s for s in self.signatures}

    @property
    def classes(self) -> list[str]:
        """Every class the catalog can emit, in first-seen order."""
        return list(dict.fromkeys(s.spec.cls for s in self.signatures))

    def resolve(self, sig: Signature, m: re.Match[str]) -> Match:
        """A regex match made into a Match: typed fields, severity and meaning (per Xid code for Xids)."""
        fields = {k: v for k, raw in m.groupdict().items() if raw is not None
                  and (v := _value(k, raw)) is not None}
        spec, severity, meaning, action = sig.spec, sig.spec.severity, sig.spec.meaning, sig.spec.action
        for key, table in spec.severity_by.items():
            value = str(fields.get(key, ""))
            severity = next((sev for k, sev in table.items() if value.lower().startswith(k.lower())), severity)
        if isinstance(fields.get("xid"), int) and fields["xid"] in self.xids:
            info = self.xids[fields["xid"]]
            severity, meaning, action = info.severity, f"Xid {fields['xid']} ({info.name}): {info.meaning}", \
                info.action
            fields["xid_name"] = info.name
        return Match(sig, spec.cls, Severity[severity.upper()], fields, meaning, action)

    def matcher(self) -> Matcher:
        """A per-line matcher over this catalog (multi-pattern engine when available)."""
        from coldaisle.triage.scanner import build_matcher

        return build_matcher(self)


class Matcher:
    """Classifies single lines; `first()` is what log reading uses, `match()` lists every signature."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.silent: tuple[int, ...] = ()  # signatures the prefilter leaves out: always confirmed in Python

    def candidates(self, line: str) -> list[int]:
        """Indices of signatures that may match (the prefilter); subclasses narrow this."""
        return list(range(len(self.catalog.signatures)))

    def match(self, line: str) -> list[Match]:
        """Every signature matching `line`, in precedence order."""
        out = []
        for i in sorted({*self.candidates(line), *self.silent}):
            sig = self.catalog.signatures[i]
            if (m := sig.regex.search(line)) is not None:
                out.append(self.catalog.resolve(sig, m))
        return out

    def first(self, line: str, candidates: Sequence[int] | None = None) -> Match | None:
        """The winning match for `line` (first in precedence order), or None."""
        sigs = self.catalog.signatures
        found = candidates if candidates is not None else self.candidates(line)
        for i in sorted({*found, *self.silent}):
            if i < len(sigs) and (m := sigs[i].regex.search(line)) is not None:  # ids past the end are internal
                return self.catalog.resolve(sigs[i], m)
        return None


def _compile(spec: SignatureSpec, origin: str) -> Signature:
    return Signature(spec, re.compile(spec.pattern, re.IGNORECASE if spec.ignore_case else 0), origin)


def _signatures(model: CatalogFile, file: str, lines: dict[Any, int]) -> list[Signature]:
    where = Located(file, lines)
    for i, spec in enumerate(model.signatures):
        missing = [g for g in spec.group_by if g not in _NAMED.findall(spec.pattern)]
        if missing:
            raise where.error(("signatures", i, "group_by"), f"{missing[0]!r} is not a named group of the pattern")
    return [_compile(s, f"{file}:{lines.get(('signatures', i), 0)}") for i, s in enumerate(model.signatures)]


@cache
def _shipped() -> tuple[tuple[Signature, ...], dict[int, XidSpec]]:
    text = resources.files("coldaisle.triage").joinpath("signatures.yaml").read_text(encoding="utf-8")
    try:  # the fast C loader; the line-mapping loader only runs to explain an error
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        model = CatalogFile.model_validate(yaml.load(text, Loader=loader))  # noqa: S506 - a safe loader
        lines: dict[Any, int] = {("signatures", i): 0 for i in range(len(model.signatures))}
    except (ValidationError, yaml.YAMLError):
        model, lines = parse_model(text, "coldaisle/triage/signatures.yaml", CatalogFile, with_lines=True)
    return tuple(_signatures(model, "signatures.yaml", lines)), dict(model.xids)


def load_catalog(extra: Sequence[str | Path] = ()) -> Catalog:
    """The shipped catalog, with each `extra` signature file's signatures tried before it."""
    shipped, xids = _shipped()
    mine: list[Signature] = []
    for path in extra:
        model, lines = load_model(path, CatalogFile, with_lines=True)
        mine += _signatures(model, str(path), lines)
        xids = {**xids, **model.xids}
    seen: dict[str, str] = {}
    for sig in mine:
        if sig.id in seen:
            file, _, line = sig.origin.rpartition(":")
            raise ConfigError(f"signature id {sig.id!r} is already defined at {seen[sig.id]}", file=file,
                              line=int(line), field="id")
        seen[sig.id] = sig.origin
    shipped = tuple(s for s in shipped if s.id not in seen)  # a user's signature replaces the shipped one
    return Catalog([*mine, *shipped], xids)
