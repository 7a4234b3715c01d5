"""Host signals beside the GPU ones: pressure stalls, swap-in, interrupts, D-state processes.

The incident lived on the host as much as on the GPUs (an interrupt storm starved the exporters, a process
stuck in D state, swap), so the agent reads these each sample. The parsers are pure functions of the file
text; `HostProbe` does the reads, keeps the previous counters for rates, and never raises: a file that is
missing (no /proc/pressure on kernels before 4.20, with psi=0, or in some containers) reads as NaN.

Cost (measured on the 2-CPU development VM): `HostProbe.sample()` takes about 55 us. It keeps the five
/proc files open and re-reads them with pread(2) from offset 0 (an open/read/close costs ~40 us per file
there, pread ~2-17 us). The D-state scan opens /proc/PID/stat for every process (about 11 us each, 0.85 ms for
75 processes; ~25 ms on a node with 2,000), reads it into one reused buffer, and is rate-limited to once every
`d_state_every` seconds (default 5 s); between scans the last count is reported.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

from coldaisle.telemetry.clock import Clock, RealClock
from coldaisle.telemetry.procfs import count_d_state

NAN = math.nan
PRESSURE_RESOURCES = ("cpu", "memory", "io")


def parse_pressure(text: str) -> dict[str, float]:
    """/proc/pressure/<res> -> {"some_avg10": 1.06, ..., "full_total": 0.0}; avgs in percent, totals in us.

    Kernels before 5.13 print no `full` line for cpu; its keys are then absent.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind not in ("some", "full"):
            continue
        for item in rest.split():
            key, sep, value = item.partition("=")
            if sep:
                try:
                    out[f"{kind}_{key}"] = float(value)
                except ValueError:
                    continue
    return out


def _fields(text: str, keys: tuple[str, ...]) -> dict[str, float]:
    """The first number of each `key N ...` line (str.find, not a per-line split: /proc/stat can be 100 KB)."""
    out: dict[str, float] = {}
    for key in keys:
        if text.startswith(key + " "):
            begin = len(key) + 1
        elif (at := text.find(f"\n{key} ")) >= 0:
            begin = at + len(key) + 2
        else:
            continue
        end = begin
        while end < len(text) and text[end].isdigit():
            end += 1
        if end > begin:
            out[key] = float(text[begin:end])
    return out


def parse_vmstat(text: str) -> dict[str, float]:
    """/proc/vmstat -> {"pswpin": pages swapped in since boot, "pswpout": ...} (absent keys left out)."""
    return _fields(text, ("pswpin", "pswpout"))


def parse_stat_intr(text: str) -> dict[str, float]:
    """/proc/stat -> {"intr": interrupts since boot (the `intr` line's total), "ctxt": context switches}."""
    return _fields(text, ("intr", "ctxt"))


@dataclass(frozen=True, slots=True)
class HostSample:
    """One reading of the host: pressure avg10 as 0..1 ratios, per-second rates, D-state count; NaN = unknown.

    Field names are the policy's node-level names (policy.names.NODE), so `as_dict()` feeds a rule directly.
    """

    monotonic: float
    psi_cpu_some: float = NAN
    psi_cpu_full: float = NAN
    psi_memory_some: float = NAN
    psi_memory_full: float = NAN
    psi_io_some: float = NAN
    psi_io_full: float = NAN
    swap_in_pages_per_s: float = NAN
    swap_out_pages_per_s: float = NAN
    interrupts_per_s: float = NAN
    context_switches_per_s: float = NAN
    d_state_processes: float = NAN

    def as_dict(self) -> dict[str, float]:
        """Every signal by name (without `monotonic`)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "monotonic"}


class _ProcFile:
    """A /proc file kept open and re-read with pread(2) from offset 0: no open/close per sample."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._size = 4096

    def read(self) -> str | None:
        """The file's current text, or None when it does not exist (or cannot be read)."""
        for _attempt in range(2):
            try:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                data = os.pread(self._fd, self._size, 0)
                while len(data) == self._size:  # /proc/stat on a large host outgrows the first guess
                    self._size *= 2
                    data = os.pread(self._fd, self._size, 0)
                return data.decode("ascii", errors="replace")
            except OSError:
                self.close()  # reopen once: the file may have been replaced; then give up for this sample
        return None

    def close(self) -> None:
        """Close the descriptor (the next read reopens)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class HostProbe:
    """Reads /proc each `sample()`; rates come from the previous sample's counters (the first has NaN rates)."""

    def __init__(self, proc: str | os.PathLike[str] = "/proc", clock: Clock | None = None, *,
                 d_state_every: float = 5.0) -> None:
        self.proc = Path(proc)
        self.clock = clock or RealClock()
        self.d_state_every = d_state_every
        self._prev: tuple[float, dict[str, float]] | None = None
        self._d_state = NAN
        self._d_state_at = -math.inf
        self._buf = bytearray(1024)
        self._pressure = {res: _ProcFile(self.proc / "pressure" / res) for res in PRESSURE_RESOURCES}
        self._vmstat = _ProcFile(self.proc / "vmstat")
        self._stat = _ProcFile(self.proc / "stat")

    def sample(self) -> HostSample:
        """One HostSample; never raises."""
        now = self.clock.monotonic()
        values: dict[str, float] = {}
        for res, file in self._pressure.items():
            text = file.read()
            p = parse_pressure(text) if text is not None else {}
            values[f"psi_{res}_some"] = p.get("some_avg10", NAN) / 100.0
            values[f"psi_{res}_full"] = p.get("full_avg10", NAN) / 100.0
        counters = {**parse_vmstat(self._vmstat.read() or ""), **parse_stat_intr(self._stat.read() or "")}
        values.update(self._rates(now, counters))
        if now - self._d_state_at >= self.d_state_every:
            self._d_state = float(count_d_state(self.proc, self._buf)) if self.proc.is_dir() else NAN
            self._d_state_at = now
        return HostSample(monotonic=now, d_state_processes=self._d_state, **values)

    def close(self) -> None:
        """Close the /proc files kept open between samples."""
        for file in (*self._pressure.values(), self._vmstat, self._stat):
            file.close()

    def __enter__(self) -> HostProbe:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _rates(self, now: float, counters: dict[str, float]) -> dict[str, float]:
        prev, self._prev = self._prev, (now, counters)
        names = {"pswpin": "swap_in_pages_per_s", "pswpout": "swap_out_pages_per_s", "intr": "interrupts_per_s",
                 "ctxt": "context_switches_per_s"}
        if prev is None or now <= prev[0]:
            return {}
        dt = now - prev[0]
        out = {}
        for key, name in names.items():
            a, b = prev[1].get(key), counters.get(key)
            if a is not None and b is not None and b >= a:  # a counter that went back (reset) gives NaN
                out[name] = (b - a) / dt
        return out
