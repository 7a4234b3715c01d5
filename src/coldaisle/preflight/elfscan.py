"""Find every shared object under some directories and parse each once, remembering results on disk.

The cache is keyed by path, size and mtime (nanoseconds), so a warm scan costs a directory walk, one
stat per object and one JSON read. It lives in `$XDG_CACHE_HOME/coldaisle` (else `~/.cache/coldaisle`),
is written to a temporary name and renamed, and a corrupt cache is ignored and rewritten.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldaisle.preflight.elf import ElfInfo, parse_elf

_SO = re.compile(r"\.so(\.\d+)*$")
CACHE_NAME = "elf-cache-v1.json"
_MAX_ENTRIES = 200_000


def default_cache_dir(env: dict[str, str]) -> Path:
    """$XDG_CACHE_HOME/coldaisle, else ~/.cache/coldaisle."""
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "coldaisle"


class ElfCache:
    """path -> (size, mtime_ns, ElfInfo), loaded once and saved atomically when it changed."""

    def __init__(self, directory: Path | None) -> None:
        """`directory=None` disables the cache (every scan is cold)."""
        self.file = directory / CACHE_NAME if directory is not None else None
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        if self.file is not None:
            try:
                data = json.loads(self.file.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("version") == 1 and isinstance(data.get("entries"), dict):
                    self.entries = data["entries"]
            except (OSError, ValueError):
                self.entries = {}

    def get(self, path: str, st: os.stat_result) -> ElfInfo | None:
        """The cached parse if the file has the same size and mtime."""
        hit = self.entries.get(path)
        if hit is None or hit[0] != st.st_size or hit[1] != st.st_mtime_ns:
            return None
        try:
            return ElfInfo.from_json(hit[2])
        except (TypeError, KeyError, IndexError):
            return None

    def put(self, path: str, st: os.stat_result, info: ElfInfo) -> None:
        """Remember a parse (unreadable files are not cached: permissions may change)."""
        if info.problem != "unreadable":
            self.entries[path] = [st.st_size, st.st_mtime_ns, info.to_json()]
            self.dirty = True

    def save(self) -> str:
        """Write the cache (temp then rename); returns a note when that failed."""
        if self.file is None or not self.dirty:
            return ""
        if len(self.entries) > _MAX_ENTRIES:
            self.entries = dict(list(self.entries.items())[-_MAX_ENTRIES:])
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": 1, "entries": self.entries}), encoding="utf-8")
            tmp.replace(self.file)
        except OSError as exc:
            return f"cannot write the ELF cache {self.file}: {exc.strerror}"
        self.dirty = False
        return ""


@dataclass
class Scan:
    """What a scan found: parsed objects, files with problems, notes, and counts."""

    objects: list[ElfInfo] = field(default_factory=list)
    problems: list[ElfInfo] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (path, why skipped)
    parsed: int = 0
    cached: int = 0


def _candidates(root: Path, recursive: bool, scan: Scan) -> list[str]:
    if not recursive:
        try:
            return [str(root / n) for n in sorted(os.listdir(root)) if _SO.search(n)]
        except OSError as exc:
            scan.notes.append((str(root), f"cannot list: {exc.strerror}"))
            return []
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: scan.notes.append(
            (str(e.filename), f"cannot list: {e.strerror}"))):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        out.extend(os.path.join(dirpath, n) for n in sorted(filenames) if _SO.search(n))
    return out


def scan(roots: list[tuple[Path, bool]], cache: ElfCache) -> Scan:
    """Parse the shared objects under each (root, recursive); one result per real file."""
    result, seen = Scan(), set[tuple[int, int]]()
    for root, recursive in roots:
        for path in _candidates(root, recursive, result):
            try:
                st = os.stat(path)
            except OSError as exc:
                why = "symlink loop" if exc.errno == errno.ELOOP else (
                    "dangling symlink" if exc.errno == errno.ENOENT else exc.strerror or str(exc))
                result.notes.append((path, why))
                continue
            if (st.st_dev, st.st_ino) in seen or not os.path.isfile(path):
                continue
            seen.add((st.st_dev, st.st_ino))
            info = cache.get(path, st)
            if info is None:
                info = parse_elf(Path(path))
                cache.put(path, st, info)
                result.parsed += 1
            else:
                result.cached += 1
            (result.objects if info.ok else result.problems).append(info)
    return result
