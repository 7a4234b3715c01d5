"""`coldaisle slurm epilog`: keep what a person needs about the job that just ended on this node.

Into `<into>/<job id>/` (written under a temporary name, then renamed): copies of the `coldaisle run`
incident bundles the job left in its working directory, and `kernel.log`, the node's kernel log records
from the job's start to now, with `summary.json` counting the lines that match the agent's kernel
signatures (Xid, fallen off the bus, hung task, OOM kill, panic, PCIe AER). The directory is named by the
job id (Slurm refuses updates to a job that has ended, so the record cannot be linked from the job itself;
`sacct -j ID -o NodeList` says which node holds it). The epilog runs as root over a directory the job's user
controls, so nothing is followed through a symbolic link and copies stop at a size limit. It never fails:
a failing Epilog drains the node.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from coldaisle.agent.kmsg import SIGNATURES, KmsgRecord, match, parse_record
from coldaisle.health.slurm import SlurmJobs

BUNDLE_GLOB = "coldaisle-run-*"
MAX_COPY_BYTES = 256 * 1024 * 1024


@dataclass
class EpilogOptions:
    """Everything `coldaisle slurm epilog` takes."""

    into: Path = Path("/var/lib/coldaisle/jobs")
    kmsg: Path = Path("/dev/kmsg")
    max_copy_bytes: int = MAX_COPY_BYTES
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass(frozen=True, slots=True)
class EpilogResult:
    """Where the job's record went and what it holds."""

    directory: Path | None
    bundles: tuple[str, ...]
    kernel_lines: int
    classes: Mapping[str, int]
    lines: tuple[str, ...]


def read_kmsg(path: Path) -> list[KmsgRecord]:
    """Every record /dev/kmsg (or a file in its format) holds now; a ring overrun (EPIPE) is skipped."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                data = os.read(fd, 16384)
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue
                if exc.errno == errno.EAGAIN:
                    break
                raise
            if not data:
                break
            chunks.append(data if data.endswith(b"\n") else data + b"\n")
    finally:
        os.close(fd)
    return list(_records(b"".join(chunks).decode("utf-8", errors="replace").splitlines()))


def _records(lines: list[str]) -> Iterator[KmsgRecord]:
    group: list[str] = []
    for line in lines:
        if line.startswith(" ") and group:
            group.append(line)
            continue
        if group and (rec := parse_record(group)) is not None:
            yield rec
        group = [line] if line else []
    if group and (rec := parse_record(group)) is not None:
        yield rec


def boot_time(now_wall: float | None = None, now_mono: float | None = None) -> float:
    """Wall time of boot as kmsg timestamps count it (CLOCK_MONOTONIC's zero)."""
    return (time.time() if now_wall is None else now_wall) - (time.monotonic() if now_mono is None else now_mono)


def job_window(records: list[KmsgRecord], start_wall: float, boot_wall: float) -> list[KmsgRecord]:
    """The records logged since `start_wall` (kmsg stamps are microseconds since boot)."""
    since_us = (start_wall - boot_wall) * 1e6
    return [r for r in records if r.ts_usec >= since_us]


def classify(records: list[KmsgRecord]) -> Counter[str]:
    """Signature class -> lines, for the summary (the agent's built-in kernel signatures)."""
    out: Counter[str] = Counter()
    for r in records:
        hit = match(r, SIGNATURES)
        if hit is not None:
            out[hit[0].cls] += 1
    return out


def _start_time(rec: Mapping[str, str], env: Mapping[str, str]) -> float:
    """The job's start (scontrol StartTime, local time), or a day ago when Slurm cannot say."""
    raw = rec.get("StartTime", "")
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        return time.time() - 86400.0


def find_bundles(work_dir: Path, since: float) -> list[Path]:
    """`coldaisle-run-*` directories (never links) in the job's working directory, made during the job."""
    out = []
    with contextlib.suppress(OSError):
        for p in sorted(work_dir.glob(BUNDLE_GLOB)):
            st = p.lstat()
            if p.is_dir() and not p.is_symlink() and st.st_mtime >= since - 1.0:
                out.append(p)
    return out


def _tree_bytes(p: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(p, followlinks=False):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def run_epilog(o: EpilogOptions, *, jobs: SlurmJobs | None = None) -> EpilogResult:
    """Gather the job's bundles and kernel log into `<into>/<job id>`; never raises."""
    try:
        return _gather(o, jobs or SlurmJobs())
    except Exception as exc:  # a failing Epilog drains the node: report and carry on
        return EpilogResult(None, (), 0, {}, (f"epilog: {type(exc).__name__}: {exc}",))


def _gather(o: EpilogOptions, jobs: SlurmJobs) -> EpilogResult:
    job = o.env.get("SLURM_JOB_ID", "")
    if not job.isdigit():
        return EpilogResult(None, (), 0, {}, ("epilog: no SLURM_JOB_ID; nothing to do",))
    rec = jobs.show(job)
    start = _start_time(rec, o.env)
    work_dir = Path(o.env.get("SLURM_JOB_WORK_DIR") or rec.get("WorkDir", "") or "/nonexistent")
    final = o.into / job
    tmp = o.into / f".{job}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o700)
    notes: list[str] = []
    bundles = _copy_bundles(find_bundles(work_dir, start), tmp, o.max_copy_bytes, notes)
    kernel, classes = _kernel(o.kmsg, start, tmp, notes)
    (tmp / "summary.json").write_text(json.dumps(
        {"job": job, "start": start, "work_dir": str(work_dir), "bundles": bundles, "kernel_lines": kernel,
         "kernel_classes": dict(classes), "notes": notes}, indent=2), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    text = f"coldaisle: epilog: {len(bundles)} bundle(s), {kernel} kernel lines" + \
        (f" ({', '.join(f'{n} {c}' for c, n in sorted(classes.items()))})" if classes else "") + f" in {final}"
    return EpilogResult(final, tuple(bundles), kernel, dict(classes), (text, *notes))


def _copy_bundles(found: list[Path], tmp: Path, limit: int, notes: list[str]) -> list[str]:
    copied: list[str] = []
    for b in found:
        size = _tree_bytes(b)
        if size > limit:
            notes.append(f"{b} not copied: {size} bytes is over the {limit}-byte limit")
            continue
        shutil.copytree(b, tmp / "bundles" / b.name, symlinks=True)
        copied.append(b.name)
    return copied


def _kernel(path: Path, start: float, tmp: Path, notes: list[str]) -> tuple[int, Counter[str]]:
    try:
        records = job_window(read_kmsg(path), start, boot_time())
    except OSError as exc:
        notes.append(f"kernel log not read from {path}: {exc}")
        return 0, Counter()
    (tmp / "kernel.log").write_text("".join(f"[{r.ts_usec / 1e6:12.6f}] {r.message}\n" for r in records),
                                    encoding="utf-8")
    return len(records), classify(records)
