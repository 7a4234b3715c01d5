"""Advisories in the OSV format (https://ossf.github.io/osv-schema/), shipped and site-local.

A file holds one OSV record or a JSON list of them. Python packages use OSV's `PyPI` ecosystem; what is
not a Python package uses ecosystems named here (docs/preflight.md): `NVIDIA` (`driver`, `nccl`,
`cudart`, `fabricmanager`) and `Linux` (`Kernel`, as OSV names it). coldaisle reads three keys of the
record's `database_specific`: `severity` (fail or warn), `fix` (one line) and `when` (conditions that
must also hold: environment values, machine, a loaded kernel module, another package in a range), which
is how a record states a bad *combination* rather than a bad version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coldaisle.config import Loc, load_yaml_with_lines, validation_to_config_error
from coldaisle.errors import ConfigError
from coldaisle.preflight.versions import normalize_name, parse_version

SHIPPED_DIR = Path(__file__).with_name("advisories")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Package(_Strict):
    """What a record is about: OSV's ecosystem and name."""

    ecosystem: str
    name: str
    purl: str | None = None


class Range(_Strict):
    """OSV's ordered events: introduced, fixed, last_affected, limit."""

    type: Literal["ECOSYSTEM", "SEMVER"] = "ECOSYSTEM"
    repo: str | None = None
    events: list[dict[Literal["introduced", "fixed", "last_affected", "limit"], str]] = Field(min_length=1)
    database_specific: dict[str, Any] | None = None


class Affected(_Strict):
    """One affected package with its ranges and/or explicit versions."""

    package: Package
    ranges: list[Range] = []
    versions: list[str] = []
    severity: list[dict[str, Any]] | None = None
    ecosystem_specific: dict[str, Any] | None = None
    database_specific: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _versions_parse(self) -> Affected:
        eco = self.package.ecosystem
        for i, r in enumerate(self.ranges):
            for j, ev in enumerate(r.events):
                for kind, ver in ev.items():
                    if ver != "0" and parse_version(ver, eco) is None:
                        raise ValueError(f"ranges.{i}.events.{j}.{kind}: {ver!r} is not a version")
        return self


class When(_Strict):
    """Conditions beside the version that make a record apply (all must hold)."""

    env: dict[str, str] = {}  # the variable has this value
    env_not: dict[str, str] = {}  # the variable does not have this value (unset counts as not)
    machine: list[str] = []  # platform.machine() is one of these
    kernel_module: str | None = None  # this module is loaded (/proc/modules)
    with_: list[Affected] = Field([], alias="with")  # another subject is installed in its range


class Coldaisle(_Strict):
    """coldaisle's keys inside `database_specific`."""

    severity: Literal["fail", "warn"] = "fail"
    fix: str = ""
    when: When = When()
    source: str | None = None  # which release note or issue establishes the affected range


class Advisory(_Strict):
    """One OSV record (the fields coldaisle reads are typed; the rest of OSV's keys are accepted)."""

    schema_version: str | None = None
    id: str
    modified: str
    published: str | None = None
    withdrawn: str | None = None
    aliases: list[str] = []
    related: list[str] = []
    upstream: list[str] = []
    summary: str = ""
    details: str = ""
    severity: list[dict[str, Any]] | None = None
    affected: list[Affected] = Field(min_length=1)
    references: list[dict[str, str]] = []
    credits: list[dict[str, Any]] = []
    database_specific: Coldaisle = Coldaisle()
    file: str = Field("", exclude=True)



def _records(data: Any, lines: dict[Loc, int], file: str) -> list[Advisory]:
    """Validate one record or each record of a list; errors keep the line of the offending key."""
    items = data if isinstance(data, list) else [data]
    out = []
    for i, item in enumerate(items):
        sub = lines if not isinstance(data, list) else {k[1:]: v for k, v in lines.items() if k and k[0] == i}
        try:
            out.append(Advisory.model_validate(item).model_copy(update={"file": file}))
        except ValidationError as exc:
            raise validation_to_config_error(exc, file, sub, item) from None
    return out


def load_file(path: Path) -> list[Advisory]:
    """The records of one file; a bad file is a ConfigError naming file, line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read advisory file: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("advisory file is not UTF-8 text", file=str(path)) from None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
    data, lines = load_yaml_with_lines(text, str(path))
    return [r for r in _records(data, lines, str(path)) if r.withdrawn is None]


def advisory_files(directory: Path) -> list[Path]:
    """The *.json files of a directory, sorted, so every host reads them in the same order."""
    return sorted(p for p in directory.glob("*.json") if p.is_file())


def in_range(version: str, ecosystem: str, rng: Range) -> bool:
    """OSV range semantics: introduced <= v < fixed (or <= last_affected); later introduced events reopen."""
    v = parse_version(version, ecosystem)
    if v is None:
        return False
    start = None
    for ev in rng.events:
        for kind, text in ev.items():
            bound = None if text == "0" else parse_version(text, ecosystem)
            if kind == "introduced":
                start = bound if bound is not None else parse_version("0", ecosystem)
            elif start is not None and bound is not None and kind in ("fixed", "limit"):
                if start <= v < bound:
                    return True
                start = None
            elif start is not None and bound is not None and kind == "last_affected":
                if start <= v <= bound:
                    return True
                start = None
    return start is not None and v >= start


def affects(affected: Affected, ecosystem: str, name: str, version: str) -> bool:
    """Whether `name` at `version` is inside this affected entry."""
    pkg = affected.package
    if pkg.ecosystem != ecosystem or normalize_name(pkg.name, ecosystem) != normalize_name(name, ecosystem):
        return False
    v = parse_version(version, ecosystem)
    if v is not None and any(parse_version(x, ecosystem) == v for x in affected.versions):
        return True
    return any(in_range(version, ecosystem, r) for r in affected.ranges)
