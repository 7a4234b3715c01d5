"""Several different copies of libnccl / libcudart on the library search path, shadowing each other."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from coldaisle.preflight.context import Context
from coldaisle.preflight.elf import parse_elf
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note

FAMILIES = ("libnccl.so", "libcudart.so", "libcudnn.so", "libcublas.so")


def soname_of(path: str, soname: str) -> str | None:
    """`libnccl.so.2` for a watched family (the ELF SONAME, else the file name cut after the ABI number)."""
    name = soname or os.path.basename(path)
    for fam in FAMILIES:
        if name == fam or name.startswith(fam + "."):
            parts = name[len(fam):].split(".")
            return fam + (f".{parts[1]}" if len(parts) > 1 and parts[1].isdigit() else "")
    return None


def digest(path: str) -> str:
    """The content hash that tells two copies apart (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def distinct(paths: list[str]) -> list[list[str]]:
    """Group paths by content: different sizes differ; equal sizes are hashed."""
    by_size: dict[int, list[str]] = {}
    for p in paths:
        by_size.setdefault(os.path.getsize(p), []).append(p)
    groups: list[list[str]] = []
    for same in by_size.values():
        by_hash: dict[str, list[str]] = {}
        for p in same:
            by_hash.setdefault(digest(p) if len(same) > 1 else "", []).append(p)
        groups += by_hash.values()
    return groups


class DuplicateLibraries(Check):
    """The incident's LD_LIBRARY_PATH pointed at a private libnccl that shadowed the one torch was built with."""

    id = "stack.duplicate-libs"
    title = "different copies of NCCL / CUDA runtime libraries on the search path"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Fail when copies differ and LD_LIBRARY_PATH holds one (it wins over RUNPATH); info otherwise."""
        copies: dict[str, list[str]] = {}
        for obj in ctx.elf.objects:
            key = soname_of(obj.path, obj.soname)
            if key:
                copies.setdefault(key, []).append(obj.path)
        for key, paths in ctx.loader.ld_cache.items():
            if soname_of(key, key):
                for p in paths:
                    real = os.path.realpath(p)
                    if os.path.isfile(real) and not any(os.path.samefile(real, q) for q in copies.get(key, [])):
                        info = parse_elf(Path(real))
                        copies.setdefault(soname_of(real, info.soname) or key, []).append(real)
        lib_dirs = [os.path.realpath(d) for d in ctx.loader.ld_library_path]
        for soname, paths in sorted(copies.items()):
            groups = distinct(paths)
            if len(groups) < 2:
                continue
            in_llp = [p for p in paths if os.path.realpath(os.path.dirname(p)) in lib_dirs]
            listing = "; ".join(g[0] for g in groups)
            if in_llp:
                winner = min(in_llp, key=lambda p: lib_dirs.index(os.path.realpath(os.path.dirname(p))))
                yield self.finding(CheckSeverity.FAIL, f"{len(groups)} different copies of {soname} are reachable and "
                                   f"LD_LIBRARY_PATH makes {winner} win over the others (RUNPATHs included): "
                                   f"{listing}", soname, "remove the extra copies from LD_LIBRARY_PATH so each "
                                   "program loads the library it was built against",
                                   copies=[g[0] for g in groups], loaded_by_default=winner)
            else:
                yield self.finding(CheckSeverity.INFO, f"{len(groups)} different copies of {soname} on this host: "
                                   f"{listing}", soname, "nothing to do unless a program loads the wrong one "
                                   "(check with --pid)", copies=[g[0] for g in groups])
