"""Where the dynamic loader would find a NEEDED library, by its rules (ld.so(8)), without running it.

Order for a name without a slash: the object's DT_RPATH (ignored when DT_RUNPATH is present),
LD_LIBRARY_PATH, the object's DT_RUNPATH, /etc/ld.so.cache, then the default directories. `$ORIGIN`
is the directory of the object as found, `$LIB` and `$PLATFORM` expand to this host's values. A
candidate counts only if it is an ELF object of the requester's class and machine, as for the loader.
Not modelled: RPATHs inherited from the executable and the objects that loaded this one (a Python
extension is loaded by python, which has none on the distributions we know), and libraries already
loaded by the process under the same soname.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from coldaisle.preflight.elf import MACHINE_CODES, ElfInfo, header_matches

DEFAULT_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64")


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where a NEEDED name resolved (None: nowhere) and through which rule."""

    name: str
    path: str | None
    via: str  # rpath | LD_LIBRARY_PATH | runpath | ld.so.cache | default | path


def expand(entry: str, origin: str) -> list[str]:
    """An RPATH/RUNPATH entry with $ORIGIN, $LIB and $PLATFORM expanded (several results for $LIB)."""
    out = entry.replace("${ORIGIN}", "$ORIGIN").replace("$ORIGIN", origin)
    out = out.replace("${PLATFORM}", "$PLATFORM").replace("$PLATFORM", platform.machine())
    if "$LIB" in out or "${LIB}" in out:
        out = out.replace("${LIB}", "$LIB")
        return [out.replace("$LIB", lib) for lib in ("lib64", f"lib/{platform.machine()}-linux-gnu", "lib")]
    return [out]


class Loader:
    """Resolves NEEDED names for many objects, remembering directory listings between lookups."""

    def __init__(self, ld_library_path: Sequence[str], ld_cache: dict[str, list[str]],
                 default_dirs: Sequence[str] = DEFAULT_DIRS) -> None:
        """`ld_library_path`: the entries in order (empty ones already dropped)."""
        arch = f"{platform.machine()}-linux-gnu"
        self.ld_library_path = [p for p in ld_library_path if p]
        self.ld_cache = ld_cache
        self.default_dirs = [*default_dirs, f"/lib/{arch}", f"/usr/lib/{arch}"]
        self._listing: dict[str, frozenset[str]] = {}

    def _has(self, directory: str, name: str) -> bool:
        listing = self._listing.get(directory)
        if listing is None:
            try:
                listing = frozenset(os.listdir(directory))
            except OSError:
                listing = frozenset()
            self._listing[directory] = listing
        return name in listing

    def _first(self, dirs: Sequence[str], name: str, fits: ElfInfo) -> str | None:
        code = MACHINE_CODES.get(fits.machine)
        for d in dirs:
            if self._has(d, name):
                cand = os.path.join(d, name)
                if header_matches(Path(cand), fits.elfclass, code):
                    return cand
        return None

    def resolve(self, obj: ElfInfo, name: str) -> Resolution:
        """Where `name`, NEEDED by `obj`, would be loaded from."""
        if "/" in name:
            return Resolution(name, name if os.path.exists(name) else None, "path")
        origin = os.path.dirname(obj.path)
        steps: list[tuple[str, list[str]]] = []
        if obj.rpath and not obj.runpath:
            steps.append(("rpath", [x for e in obj.rpath for x in expand(e, origin)]))
        steps.append(("LD_LIBRARY_PATH", self.ld_library_path))
        if obj.runpath:
            steps.append(("runpath", [x for e in obj.runpath for x in expand(e, origin)]))
        for via, dirs in steps:
            found = self._first(dirs, name, obj)
            if found:
                return Resolution(name, found, via)
        code = MACHINE_CODES.get(obj.machine)
        for cand in self.ld_cache.get(name, []):
            if header_matches(Path(cand), obj.elfclass, code):
                return Resolution(name, cand, "ld.so.cache")
        found = self._first(self.default_dirs, name, obj)
        return Resolution(name, found, "default" if found else "")
