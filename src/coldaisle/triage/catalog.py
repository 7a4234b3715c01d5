"""The signature catalog (data) and the per-line matcher every log reader shares.

Signatures are shaped like node-problem-detector's `{type, reason, pattern}`: a class, a severity, a Python
regex whose named groups become the event's fields, and the meaning and recommended action a reader needs.
`signatures.yaml` ships in the package (schema in `catalog_model.py`); `--signatures FILE` adds a user's own,
which are tried first. The first signature that matches a line wins, so benign look-alikes are listed before
the alarms they resemble. Context lines (not events on their own) and value rules come from the same files.

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
from typing import Any

import yaml
from pydantic import ValidationError

from coldaisle.config import Located, load_model, parse_model
from coldaisle.errors import ConfigError
from coldaisle.telemetry.events import Severity
from coldaisle.triage.catalog_model import CatalogFile, ContextSpec, SignatureSpec, ValueRule, XidSpec
from coldaisle.triage.matcher import Matcher

_NAMED = re.compile(r"\(\?P<(\w+?)(?:__\d+)?>")
_PCI_SHORT = re.compile(r"^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}$")
_PCI_LONG_DOMAIN = re.compile(r"^0{4}([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?)$")
_NONE_VALUES = frozenset({"<unknown>", "N/A", "n/a", "(null)", ""})
_TEXT_FIELDS = frozenset({"address", "ip", "op_count", "comm", "bus", "version", "detail", "reason", "error",
                          "tried", "rtc_time", "gpu_uuid", "sector_hex", "state", "device", "node", "server",
                          "peer", "pod", "task"})  # hex, names or free text: never turned into numbers
_PCI_FIELDS = frozenset({"pci", "device_pci", "port_pci"})


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
class Context:
    """A compiled context-line pattern."""

    spec: ContextSpec
    regex: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class Match:
    """One signature matching one line: its class, resolved severity, typed fields, meaning and action."""

    signature: Signature
    cls: str
    severity: Severity
    fields: dict[str, Any]
    meaning: str
    action: str


def pci_value(text: str) -> str:
    """`0000:b1:00` (NVRM) -> `0000:b1:00.0`; `00000000:86:00.0` (NVSwitch, NVML) -> `0000:86:00.0`."""
    text = text.lower()
    if m := _PCI_LONG_DOMAIN.match(text):
        text = m[1]
    return text + ".0" if _PCI_SHORT.match(text) else text


def value(key: str, raw: str) -> Any:
    """Typed field value: integers as int, PCI addresses in the kernel's form, unknowns dropped."""
    text = raw.strip().strip("'\"")
    if text in _NONE_VALUES:
        return None
    if key in _PCI_FIELDS:
        return pci_value(text)
    if text.lstrip("-").isdigit() and len(text) < 19 and key not in _TEXT_FIELDS:
        return int(text)
    return text


class Catalog:
    """Every signature in precedence order, the context lines, value rules and the Xid code table."""

    def __init__(self, signatures: Sequence[Signature], xids: dict[int, XidSpec],
                 contexts: Sequence[Context] = (), rules: Sequence[ValueRule] = (),
                 fallbacks: dict[str, list[str]] | None = None) -> None:
        self.signatures = tuple(signatures)
        self.contexts = tuple(contexts)
        self.xids = dict(xids)
        self.rules = [(r, re.compile(r.match)) for r in rules]
        self.fallbacks = dict(fallbacks or {})
        self.by_id = {s.id: s for s in self.signatures}

    @property
    def classes(self) -> list[str]:
        """Every class the catalog can emit, in first-seen order."""
        return list(dict.fromkeys(s.spec.cls for s in self.signatures))

    def fields(self, groups: dict[str, str | None], constant: dict[str, Any] | None = None) -> dict[str, Any]:
        """Typed, normalised fields from a regex's named groups (plus a signature's constant ones)."""
        out: dict[str, Any] = {}
        for name, raw in groups.items():  # `pid__2`: the same field in another alternative of the pattern
            key = name.split("__", 1)[0] if "__" in name[1:] else name
            if raw is not None and key not in out and (v := value(key, raw)) is not None:
                out[key] = v
        for k, v in (constant or {}).items():
            out.setdefault(k, v)
        self.normalize(out)
        return out

    def normalize(self, fields: dict[str, Any]) -> None:
        """Apply the value rules (first match per field wins); derived fields fill only what is missing."""
        done: set[str] = set()
        for rule, rx in self.rules:
            v = fields.get(rule.field)
            if rule.field in done or v is None or not (v == rule.value or rx.search(str(v))):
                continue
            done.add(rule.field)
            fields[rule.field] = rule.value
            for k, d in rule.derive.items():
                fields.setdefault(k, d)

    def complete(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Fill fields that have none from their fallbacks (an AER report's pci from its root port's)."""
        for key, others in self.fallbacks.items():
            if key not in fields and (have := next((o for o in others if o in fields), None)) is not None:
                fields[key] = fields[have]
        return fields

    def severity(self, sig: Signature, fields: dict[str, Any]) -> tuple[Severity, str, str]:
        """(severity, meaning, action): the signature's, the Xid table's for its code, then `severity_by`."""
        spec = sig.spec
        severity, meaning, action = spec.severity, spec.meaning, spec.action
        xid = fields.get("xid")
        if spec.xid_table and isinstance(xid, int) and xid in self.xids:
            info = self.xids[xid]
            severity, meaning, action = info.severity, f"Xid {xid} ({info.name}): {info.meaning}", info.action
        for key, table in spec.severity_by.items():
            v = str(fields.get(key, "")).lower()
            severity = next((sev for k, sev in table.items() if v and v.startswith(k.lower())), severity)
        return Severity[severity.upper()], meaning, action

    def cls(self, sig: Signature, fields: dict[str, Any]) -> str:
        """The event's class: the signature's, unless a `class_by` field names another."""
        for key, table in sig.spec.class_by.items():
            v = str(fields.get(key, "")).lower()
            if found := next((c for k, c in table.items() if v and v.startswith(k.lower())), None):
                return found
        return sig.spec.cls

    def resolve(self, sig: Signature, m: re.Match[str]) -> Match:
        """A regex match made into a Match: typed fields, severity and meaning (per Xid code for Xids)."""
        fields = self.fields(m.groupdict(), sig.spec.constant)
        severity, meaning, action = self.severity(sig, fields)
        if sig.spec.xid_table and isinstance(fields.get("xid"), int) and fields["xid"] in self.xids:
            fields["xid_name"] = self.xids[fields["xid"]].name
        return Match(sig, self.cls(sig, fields), severity, fields, meaning, action)

    def matcher(self) -> Matcher:
        """A per-line matcher over this catalog (multi-pattern engine when available; `Matcher` in matcher.py)."""
        from coldaisle.triage.scanner import build_matcher

        return build_matcher(self)


def _flags(ignore_case: bool) -> int:
    return re.IGNORECASE if ignore_case else 0


def _signatures(model: CatalogFile, file: str, lines: dict[Any, int]) -> list[Signature]:
    where = Located(file, lines)
    ids = {c.id for c in model.contexts}
    for i, spec in enumerate(model.signatures):
        missing = [g for g in spec.group_by if g not in _NAMED.findall(spec.pattern)]
        if missing:
            raise where.error(("signatures", i, "group_by"), f"{missing[0]!r} is not a named group of the pattern")
        unknown = [c for c in spec.needs if c not in ids]
        if unknown and model.contexts:
            raise where.error(("signatures", i, "needs"), f"{unknown[0]!r} is not a context id of this file")
    return [Signature(s, re.compile(s.pattern, _flags(s.ignore_case)), f"{file}:{lines.get(('signatures', i), 0)}")
            for i, s in enumerate(model.signatures)]


def _contexts(model: CatalogFile) -> list[Context]:
    return [Context(c, re.compile(c.pattern, _flags(c.ignore_case))) for c in model.contexts]


@cache
def _shipped() -> tuple[tuple[Signature, ...], CatalogFile]:
    text = resources.files("coldaisle.triage").joinpath("signatures.yaml").read_text(encoding="utf-8")
    try:  # the fast C loader; the line-mapping loader only runs to explain an error
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        model = CatalogFile.model_validate(yaml.load(text, Loader=loader))  # noqa: S506 - a safe loader
        lines: dict[Any, int] = {("signatures", i): 0 for i in range(len(model.signatures))}
        sigs = _signatures(model, "signatures.yaml", lines)
    except (ValidationError, yaml.YAMLError, ConfigError):
        model, lines = parse_model(text, "coldaisle/triage/signatures.yaml", CatalogFile, with_lines=True)
        sigs = _signatures(model, "signatures.yaml", lines)
    return tuple(sigs), model


def load_catalog(extra: Sequence[str | Path] = ()) -> Catalog:
    """The shipped catalog, with each `extra` signature file's signatures tried before it."""
    shipped, model = _shipped()
    xids, contexts = dict(model.xids), _contexts(model)
    mine: list[Signature] = []
    for path in extra:
        user, lines = load_model(path, CatalogFile, with_lines=True)
        mine += _signatures(user, str(path), lines)
        xids, contexts = {**xids, **user.xids}, [*_contexts(user), *contexts]
    seen: dict[str, str] = {}
    for sig in mine:
        if sig.id in seen:
            file, _, line = sig.origin.rpartition(":")
            raise ConfigError(f"signature id {sig.id!r} is already defined at {seen[sig.id]}", file=file,
                              line=int(line), field="id")
        seen[sig.id] = sig.origin
    shipped = tuple(s for s in shipped if s.id not in seen)  # a user's signature replaces the shipped one
    return Catalog([*mine, *shipped], xids, contexts, model.normalize, model.fallbacks)

