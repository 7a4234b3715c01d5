"""Process facts as /proc shows them, parsed in one place: stat, status, environ, statm, io and thread states.

Every function takes the `/proc` root (default "/proc"), so tests point them at a captured tree; a process
that exits while it is being read is None (or skipped), never an exception. Actions judge processes with
these facts, the agent attributes GPU processes to jobs with them, and `coldaisle run` finds a job's
processes and places its ranks with them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PF_KTHREAD = 0x00200000  # include/linux/sched.h: "I am a kernel thread"
_PAGE = os.sysconf("SC_PAGE_SIZE")
_D = ord("D")
Proc = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One process as /proc shows it: enough to identify it across PID reuse and to judge it."""

    pid: int
    ppid: int
    state: str  # R, S, D, Z, T, I ...
    uid: int
    comm: str
    cmdline: tuple[str, ...]
    starttime: int  # stat field 22: clock ticks after boot; with pid it names one process for ever
    pgid: int
    session: int
    flags: int

    @property
    def kernel_thread(self) -> bool:
        """Kernel threads have no user memory to free and must never be signalled."""
        return bool(self.flags & PF_KTHREAD) or self.pid == 2 or self.ppid == 2

    @classmethod
    def read(cls, pid: int, proc: Proc = "/proc") -> ProcessInfo | None:
        """The process `pid` now, or None when it is gone (or /proc cannot show it)."""
        root = Path(proc) / str(pid)
        try:
            stat = (root / "stat").read_text(errors="replace")
            raw = (root / "cmdline").read_bytes()
            return parse_stat(stat, uid=read_uid(root), cmdline=raw)
        except (OSError, ValueError, IndexError):
            return None


def stat_fields(text: str) -> list[str]:
    """The fields of a /proc/PID/stat record after comm: [0] is field 3 (state), field n is [n - 3].

    comm may hold spaces and parentheses, so the split is at the *last* ')'."""
    return text[text.rfind(")") + 1:].split()


def parse_stat(text: str, *, uid: int, cmdline: bytes = b"") -> ProcessInfo:
    """/proc/PID/stat (plus the uid and raw cmdline read beside it) as a ProcessInfo."""
    head = text[:text.rfind(")")]
    pid_s, _, comm = head.partition(" (")
    f = stat_fields(text)
    args = tuple(a for a in cmdline.decode(errors="replace").split("\0") if a) if cmdline else ()
    return ProcessInfo(pid=int(pid_s), ppid=int(f[1]), state=f[0], uid=uid, comm=comm, cmdline=args,
                       starttime=int(f[19]), pgid=int(f[2]), session=int(f[3]), flags=int(f[6]))


def starttime(text: str) -> int | None:
    """Field 22 of a stat record (start time in clock ticks since boot), None when the record is cut short."""
    f = stat_fields(text)
    return int(f[19]) if len(f) > 19 and f[19].isdigit() else None


def read_starttime(pid: int, proc: Proc = "/proc") -> int | None:
    """`pid`'s start time now; None once it is gone."""
    try:
        return starttime((Path(proc) / str(pid) / "stat").read_text(errors="replace"))
    except OSError:
        return None


def read_uid(root: Path) -> int:
    """Real uid of the process at `root` from status (what `ps -o ruid` shows); the directory owner otherwise."""
    for line in (root / "status").read_text(errors="replace").splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return root.stat().st_uid


def pids(proc: Proc = "/proc") -> Iterator[int]:
    """Every process id /proc lists now."""
    try:
        entries = os.listdir(proc)
    except OSError:
        return
    yield from (int(e) for e in entries if e.isdigit())


def group_members(pgid: int, proc: Proc = "/proc") -> list[ProcessInfo]:
    """Every live process of process group `pgid` (a scan of /proc; racing exits are skipped)."""
    out = []
    for pid in pids(proc):
        info = ProcessInfo.read(pid, proc)
        if info is not None and info.pgid == pgid and info.state != "Z":
            out.append(info)
    return sorted(out, key=lambda p: p.pid)


def parse_environ(raw: bytes) -> dict[str, str]:
    """/proc/PID/environ (NUL-separated NAME=value) as a dict; entries without '=' are skipped."""
    out: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            out[name.decode(errors="replace")] = value.decode(errors="replace")
    return out


def read_environ(pid: int, proc: Proc = "/proc") -> dict[str, str] | None:
    """`pid`'s initial environment; None when it is gone or not ours to read."""
    try:
        return parse_environ((Path(proc) / str(pid) / "environ").read_bytes())
    except OSError:
        return None


def rss_bytes(pid: int, proc: Proc = "/proc") -> int:
    """Resident memory of one process (statm's second field, in pages), 0 when it is gone."""
    try:
        fields = (Path(proc) / str(pid) / "statm").read_text().split()
        return int(fields[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, proc: Proc = "/proc") -> float | None:
    """CPU time the process has used so far, every thread, user and system (stat fields 14 and 15); None once
    it is gone."""
    try:
        f = stat_fields((Path(proc) / str(pid) / "stat").read_text(errors="replace"))
        return (int(f[11]) + int(f[12])) / _TICK
    except (OSError, ValueError, IndexError):
        return None


def io_bytes(pid: int, proc: Proc = "/proc", *, main_thread: bool = False) -> int | None:
    """Bytes the process (or only its main thread) has passed through read and write calls so far (`rchar` +
    `wchar` of /proc/PID/io: files, pipes and sockets alike); None when it is gone or not ours to read."""
    path = Path(proc) / str(pid) / ("task" if main_thread else "") / (str(pid) if main_thread else "") / "io"
    try:
        values = dict(line.split(": ", 1) for line in path.read_text().splitlines())
        return int(values["rchar"]) + int(values["wchar"])
    except (OSError, ValueError, KeyError):
        return None


def any_thread_in_d_state(pid: int, proc: Proc = "/proc") -> bool:
    """Whether any thread of `pid` is in uninterruptible sleep (D): disk, NFS, or a wedged driver."""
    try:
        tasks = list((Path(proc) / str(pid) / "task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            fields = stat_fields((task / "stat").read_text())
        except OSError:
            continue
        if fields and fields[0] == "D":
            return True
    return False


def state_letter(buf: bytes | bytearray, n: int) -> int:
    """The state byte of a stat record held in `buf[:n]` (0 when cut short): the allocation-free form."""
    close = buf.rfind(b")", 0, n)
    return buf[close + 2] if close >= 0 and close + 2 < n else 0


def count_d_state(proc: Proc = "/proc", buf: bytearray | None = None) -> int:
    """Processes in uninterruptible sleep (state D); processes vanishing mid-scan are skipped.

    One reused buffer and raw reads: this runs on the agent's sampling path over every process of the node."""
    buf = buf if buf is not None else bytearray(1024)
    count = 0
    try:
        entries = os.scandir(proc)
    except OSError:
        return 0
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                fd = os.open(os.path.join(entry.path, "stat"), os.O_RDONLY)
            except OSError:
                continue  # exited between scandir and open
            try:
                n = os.readv(fd, [buf])
            except OSError:
                n = 0
            finally:
                os.close(fd)
            count += state_letter(buf, n) == _D
    return count
