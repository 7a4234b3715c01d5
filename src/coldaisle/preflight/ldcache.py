"""/etc/ld.so.cache, read as the loader reads it (glibc's `glibc-ld.so.cache1.1` format), without ldconfig.

Layout (glibc elf/cache.c, `struct cache_file_new`): the 17-byte magic and 3-byte version, then nlibs,
len_strings, flags, padding, extension offset and three unused words (48 bytes), then nlibs 24-byte
entries (flags, key, value, osversion, hwcap) whose key and value are offsets of NUL-terminated strings
from the start of that header. Older caches put the `ld.so-1.7.0` table first; the new one follows it.
"""

from __future__ import annotations

import struct
from pathlib import Path

NEW_MAGIC = b"glibc-ld.so.cache1.1"
OLD_MAGIC = b"ld.so-1.7.0"
_HEADER = struct.Struct("<20sII B3x I 12x")
_ENTRY = struct.Struct("<iIIIQ")
_OLD_ENTRY_SIZE = 12


class LdCacheError(ValueError):
    """The cache file is not in a format this reader knows, or is truncated."""


def _new_start(data: bytes) -> int:
    if data.startswith(NEW_MAGIC):
        return 0
    if data.startswith(OLD_MAGIC) and len(data) >= 16:
        (nlibs,) = struct.unpack_from("<I", data, 12)
        start = 16 + nlibs * _OLD_ENTRY_SIZE
        start = (start + 7) & ~7
        if data[start:start + len(NEW_MAGIC)] == NEW_MAGIC:
            return start
    raise LdCacheError("not a glibc ld.so.cache (unknown magic)")


def _cstr(data: bytes, offset: int) -> str:
    end = data.find(b"\0", offset)
    if offset >= len(data) or end < 0:
        raise LdCacheError(f"string offset {offset} is outside the file")
    return data[offset:end].decode("utf-8", "replace")


def parse_ld_cache(data: bytes) -> dict[str, list[str]]:
    """soname -> paths, in cache order (the loader takes the first whose class and machine fit)."""
    base = _new_start(data)
    if len(data) < base + _HEADER.size:
        raise LdCacheError("truncated header")
    _, nlibs, _len_strings, _flags, _ext = _HEADER.unpack_from(data, base)
    if base + _HEADER.size + nlibs * _ENTRY.size > len(data):
        raise LdCacheError(f"header says {nlibs} entries but the file is too short")
    out: dict[str, list[str]] = {}
    for i in range(nlibs):
        _fl, key, value, _os, _hw = _ENTRY.unpack_from(data, base + _HEADER.size + i * _ENTRY.size)
        out.setdefault(_cstr(data, base + key), []).append(_cstr(data, base + value))
    return out


def read_ld_cache(path: Path) -> tuple[dict[str, list[str]], str]:
    """The parsed cache and a note ("" when fine): an absent or bad cache is a note, the loader skips it too."""
    try:
        return parse_ld_cache(path.read_bytes()), ""
    except FileNotFoundError:
        return {}, f"{path} does not exist; only the default directories are searched"
    except (OSError, LdCacheError) as exc:
        return {}, f"{path}: {exc}; only the default directories are searched"
