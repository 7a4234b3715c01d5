"""Version comparison for every kind of subject: PEP 440 for Python packages, dotted numbers for the rest.

A driver says `535.104.05`, a kernel `5.15.0-101-generic`, a library file `libnccl.so.2.20.5`; none is PEP
440, but each orders by its numbers. `packaging` compares release segments of any length with zero padding,
so those numbers joined by dots become a `Version` and every comparison goes through one type.
"""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

_NUMBERS = re.compile(r"\d+")
_LEADING = re.compile(r"^[vV]?(\d+(?:[.\-_]\d+)*)")
PYPI = "PyPI"


def parse_version(text: str, ecosystem: str = PYPI) -> Version | None:
    """A comparable version, or None when `text` holds no number at all."""
    text = text.strip()
    if ecosystem == PYPI:
        try:
            return Version(text)
        except InvalidVersion:
            pass
    lead = _LEADING.match(text)
    numbers = _NUMBERS.findall(lead.group(1) if lead else text)
    if not numbers:
        return None
    return Version(".".join(str(int(n)) for n in numbers))


def normalize_name(name: str, ecosystem: str = PYPI) -> str:
    """PEP 503 names for Python packages, lower case for the rest."""
    return canonicalize_name(name) if ecosystem == PYPI else name.strip().lower()


def version_from_filename(name: str, stem: str) -> str | None:
    """`2.20.5` from `libnccl.so.2.20.5` (stem `libnccl.so`), or None when the name carries no full version."""
    if not name.startswith(stem + "."):
        return None
    rest = name[len(stem) + 1:]
    parts = rest.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        return None  # libnccl.so.2 says only the ABI, not the release
    return rest
