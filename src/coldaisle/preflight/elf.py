"""What the dynamic loader will read from a shared object, parsed with pyelftools (never ldd, never loaded).

Only the ELF header, the program headers and the dynamic segment are read, so a 400 MB libtorch costs
the same as a 10 kB extension module. A file that is not ELF, is truncated or is unreadable comes back
as an `ElfInfo` with `problem` set, never as an exception.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile

ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True, slots=True)
class ElfInfo:
    """The loader-relevant facts of one file; `problem` says why there are none."""

    path: str
    elfclass: int = 0  # 32 or 64
    machine: str = ""
    soname: str = ""
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    problem: str = ""  # "", "not-elf", "corrupt", "unreadable", "linker-script"
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Parsed as an ELF object."""
        return not self.problem

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (the cache's record)."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ElfInfo:
        """Back from the cache."""
        return cls(**{**d, "needed": tuple(d["needed"]), "rpath": tuple(d["rpath"]),
                      "runpath": tuple(d["runpath"])})


def _split(value: str) -> tuple[str, ...]:
    return tuple(p for p in value.split(":")) if value else ()


def parse_elf(path: Path) -> ElfInfo:
    """Read `path`'s dynamic section; problems are values."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != ELF_MAGIC:
                kind = "linker-script" if b"GNU ld script" in head or head.startswith(b"/*") else "not-elf"
                return ElfInfo(str(path), problem=kind, detail="no ELF magic number")
            f.seek(0)
            return _dynamic(path, ELFFile(f))
    except OSError as exc:
        return ElfInfo(str(path), problem="unreadable", detail=exc.strerror or str(exc))
    except Exception as exc:  # pyelftools raises ELFError, struct.error, construct errors on bad input
        return ElfInfo(str(path), problem="corrupt", detail=f"{type(exc).__name__}: {exc}"[:200])


def _dynamic(path: Path, elf: ELFFile) -> ElfInfo:
    needed: list[str] = []
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    soname = ""
    for seg in elf.iter_segments():
        if not isinstance(seg, DynamicSegment):
            continue
        for tag in seg.iter_tags():
            kind = tag.entry.d_tag
            if kind == "DT_NEEDED":
                needed.append(tag.needed)
            elif kind == "DT_RPATH":
                rpath = _split(tag.rpath)
            elif kind == "DT_RUNPATH":
                runpath = _split(tag.runpath)
            elif kind == "DT_SONAME":
                soname = tag.soname
        break
    return ElfInfo(str(path), elfclass=elf.elfclass, machine=str(elf["e_machine"]), soname=soname,
                   needed=tuple(needed), rpath=rpath, runpath=runpath)


def header_matches(path: Path, elfclass: int, machine_code: int | None) -> bool:
    """Whether `path` is an ELF object of this class (and e_machine), as the loader requires of a candidate."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    if len(head) < 20 or head[:4] != ELF_MAGIC:
        return False
    if head[4] != (2 if elfclass == 64 else 1):
        return False
    if machine_code is None:
        return True
    order = "little" if head[5] == 1 else "big"
    return int.from_bytes(head[18:20], order) == machine_code


MACHINE_CODES = {"EM_X86_64": 62, "EM_386": 3, "EM_AARCH64": 183, "EM_PPC64": 21, "EM_ARM": 40,
                 "EM_RISCV": 243, "EM_S390": 22}
