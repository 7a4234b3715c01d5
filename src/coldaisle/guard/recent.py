"""The last minutes of the job's telemetry, kept by the supervisor for the incident bundle.

One row per watch tick (at most one a second): the job's host memory, its heartbeat (freshest progress
age, highest step) and, with a Backend, each of the job's GPUs (temperature, power, utilisation, device
memory). Bounded: `window_s` of rows, the oldest dropped. The bundle writes it as `telemetry.csv` and
plots it in `report.html`.
"""

from __future__ import annotations

import csv
import io
import math
from collections import deque
from datetime import UTC, datetime

import numpy as np

from coldaisle.guard.gpuwatch import GpuWatch
from coldaisle.guard.procs import total_rss_bytes
from coldaisle.guard.watch import Look, Verdict
from coldaisle.telemetry.frame import Frame

GPU_COLUMNS = (("temperature_c", "C"), ("power_w", "W"), ("utilization_gpu", "%"), ("memory_used_bytes", "GiB"))


class RecentTelemetry:
    """A ring of (UTC time, {series: value}) rows over the last `window_s` seconds."""

    def __init__(self, window_s: float = 600.0, min_gap_s: float = 1.0) -> None:
        self.window_s, self.min_gap_s = window_s, min_gap_s
        self.rows: deque[tuple[float, dict[str, float]]] = deque()

    def due(self, t: float) -> bool:
        """Whether a row at `t` would be kept (so the caller gathers its values only then)."""
        return not self.rows or t - self.rows[-1][0] >= self.min_gap_s

    def add(self, t: float, values: dict[str, float]) -> None:
        """One row at UTC time `t` (ignored when closer than min_gap_s to the last one)."""
        if self.rows and t - self.rows[-1][0] < self.min_gap_s:
            return
        self.rows.append((t, values))
        while self.rows and t - self.rows[0][0] > self.window_s:
            self.rows.popleft()

    def series(self) -> list[str]:
        """Every series name seen, in first-seen order."""
        return list(dict.fromkeys(k for _, row in self.rows for k in row))

    def to_csv(self) -> str:
        """`time_utc,<series>...`, one line per row; empty cells where a series had no value."""
        names = self.series()
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["time_utc", *names])
        for t, row in self.rows:
            stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            w.writerow([stamp, *("" if (v := row.get(n)) is None or math.isnan(v) else f"{v:.6g}" for n in names)])
        return out.getvalue()

    def column(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(times, values) of one series, NaN where it was absent."""
        t = np.array([r[0] for r in self.rows], dtype=float)
        v = np.array([r[1].get(name, math.nan) for r in self.rows], dtype=float)
        return t, v


def gpu_values(frame: Frame | None, devices: np.ndarray) -> dict[str, float]:
    """The job's GPUs as `gpu<index> <column>` values (memory in GiB) for one row."""
    out: dict[str, float] = {}
    if frame is None:
        return out
    for i in devices.tolist():
        label = f"gpu{frame.devices[i].index}"
        for col, unit in GPU_COLUMNS:
            value = float(getattr(frame, col)[i])
            out[f"{label} {col}"] = value / 2**30 if unit == "GiB" else value
    return out


class TelemetryWatch:
    """A watch that only records: one row of the job's telemetry per look (at most one a second), for the bundle."""

    def __init__(self, recent: RecentTelemetry, gpu: GpuWatch | None = None) -> None:
        self.recent, self.gpu = recent, gpu

    def look(self, job: Look) -> Verdict | None:
        """Record the job's host memory, heartbeat and GPUs; never a verdict."""
        if not self.recent.due(job.wall):
            return None
        ranks = job.heartbeats.ranks
        row = {"job host memory (GiB)": total_rss_bytes(job.members()) / 2**30,
               "progress age (s)": job.progress_age_s,
               "step": float(max((r.step for r in ranks), default=math.nan))}
        if self.gpu is not None:
            row |= gpu_values(self.gpu.last, self.gpu.last_devices)
        self.recent.add(job.wall, row)
        return None
