"""Files in, byte chunks out: directory walks, the host a path implies, and plain/gzip/zstd streams.

Decompression is incremental (zlib / zstandard decompress objects), so a truncated archive still yields
every byte before the cut and is counted as truncated; an unreadable file is counted and skipped.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import stat
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from coldaisle.triage.interface import ReadStats

CHUNK = 4 << 20
PREFETCH = 3  # blocks read ahead: bounds memory at a few CHUNKs per file
_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"
_SUFFIXES = re.compile(r"(\.(gz|zst|zstd|log|txt|err|out|json|jsonl|csv|\d+))+$")
_HOSTLIKE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*\d[A-Za-z0-9_.-]*$")
_NOT_HOSTS = re.compile(r"^(job|slurm\w*|rank|dmesg|kern\w*|syslog|messages|sel|sensors?|nvidia-smi|nvsmi|dcgm\w*|"
                        r"facility|journal\w*|std(err|out)|err|out|log|worker|torchrun|vllm|deepspeed|nccl)([-_.]|$)",
                        re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class InputFile:
    """One file to read and the host its path implies ("" when none)."""

    path: Path
    host: str
    size: int


def host_from_name(name: str) -> str:
    """`node-gpu-88.kern.log.gz` -> `node-gpu-88`; names of logs (`kern.log`, `job-42.err`) give ""."""
    stem = _SUFFIXES.sub("", name)
    for cut in (stem.split(".", 1)[0], stem):
        if _HOSTLIKE.match(cut) and not _NOT_HOSTS.match(cut):
            return cut
    return ""


def _path_host(path: Path, root: Path | None) -> str:
    if root is not None and path != root:
        rel = path.relative_to(root).parts
        if len(rel) >= 2:
            return rel[0]  # one folder per node
        return host_from_name(path.name)
    return host_from_name(path.name) or host_from_name(path.parent.name)


def walk(paths: Iterable[str | Path], stats: ReadStats, host: str | None = None) -> list[InputFile]:
    """Every regular file under `paths` (sorted), with its implied host; missing paths are counted."""
    out: list[InputFile] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p, onerror=lambda e: stats.unreadable.append(
                    f"{e.filename}: {e.strerror}")):
                dirnames.sort()
                out += [_entry(Path(dirpath, f), p, host, stats) for f in sorted(filenames)]
        else:
            out.append(_entry(p, None, host, stats))
    return [f for f in out if f is not None]


def _entry(path: Path, root: Path | None, host: str | None, stats: ReadStats) -> Any:
    try:
        st = path.stat()
    except OSError as exc:
        stats.unreadable.append(f"{path}: {exc.strerror}")
        return None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block the read forever
        stats.unreadable.append(f"{path}: not a regular file")
        return None
    return InputFile(path, host or _path_host(path, root), st.st_size)


def chunks(stream: IO[bytes], path: str, stats: ReadStats, on_bytes: Any = None) -> Iterator[bytes]:
    """Decompressed chunks of `stream` (format by magic bytes); a cut-off archive ends early, counted."""
    head = stream.read(CHUNK)
    if on_bytes:
        on_bytes(len(head))
    raw = _raw(stream, head, on_bytes)
    if head.startswith(_GZIP):
        yield from _inflate(raw, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), path, stats)
    elif head.startswith(_ZSTD):
        import zstandard

        yield from _inflate(raw, lambda: zstandard.ZstdDecompressor().decompressobj(), path, stats)
    else:
        yield from raw


def _raw(stream: IO[bytes], head: bytes, on_bytes: Any) -> Iterator[bytes]:
    """The stream's blocks, read ahead on a thread (reads release the GIL while the scanner works)."""
    if head:
        yield head
    if len(head) < CHUNK:  # a small file is already read whole: no thread for it (directories of 10,000)
        while block := stream.read(CHUNK):
            yield block
        return
    ahead: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set() and (block := stream.read(CHUNK)):
                ahead.put(block)
            ahead.put(b"")
        except BaseException as exc:  # handed to the consumer, which raises it where a read would have
            ahead.put(exc)

    thread = threading.Thread(target=reader, name="coldaisle-triage-read", daemon=True)
    thread.start()
    try:
        while (block := ahead.get()) != b"":
            if isinstance(block, BaseException):
                raise block
            if on_bytes:
                on_bytes(len(block))
            yield block
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue, then let it finish
            with contextlib.suppress(queue.Empty):
                ahead.get_nowait()
            thread.join(0.01)


def _inflate(raw: Iterator[bytes], new: Any, path: str, stats: ReadStats) -> Iterator[bytes]:
    """Multi-member decompression; corrupt or missing data ends the file, counted as truncated."""
    obj, fed = new(), False
    try:
        for block in raw:
            data = block
            while data:
                fed = True
                out = obj.decompress(data)
                if out:
                    yield out
                if not obj.eof:
                    break
                data, obj, fed = obj.unused_data, new(), False  # next gzip member / zstd frame
        if fed and not obj.eof:
            stats.truncated.append(f"{path}: compressed stream ends early (truncated)")
    except (zlib.error, EOFError, ValueError) as exc:
        stats.truncated.append(f"{path}: {exc}")
    except Exception as exc:  # zstandard.ZstdError has no common base with zlib's
        if type(exc).__name__ != "ZstdError":
            raise
        stats.truncated.append(f"{path}: {exc}")
