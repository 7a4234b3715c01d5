"""The agent on a saturated host: /metrics latency, sampling jitter, CPU and memory of a real `coldaisle agent`.

Issue targets: with every core saturated by `stress-ng` at normal priority, scrape latency p99 < 50 ms and
sampling-interval jitter p99 < 100 ms; agent CPU <= 1% of one core at 1 Hz with 8 simulated GPUs; RSS <= 80 MB.

Run: python benchmarks/bench_agent.py [--phase-s 60]

The agent runs as a subprocess on the simulator (`single-node-fan-failure`, node gpu-node-01: 8 GPUs, speed 1,
so it samples once per real second and steps the twin between samples). Phases, each `--phase-s` long:
  cpu     no clients except one scrape every 15 s (Prometheus' default): CPU from /proc/PID/stat, RSS;
  idle    host idle: scrape /metrics every 200 ms (the baseline latency) and time every sample;
  stress  `stress-ng --cpu NPROC` at normal priority: the same measurements, agent at its default priority;
  stress  the same with a second agent started `--priority normal` (the baseline: what the priority buys).
Scrapes send Prometheus' own Accept header (so the agent answers OpenMetrics) on a fresh connection each.
Sampling instants are observed from outside: a poller reads `samples` from /healthz at 20 Hz, and every 2 ms
from 0.85 s after a sample until the next one, so each instant is known to a few ms (`resolution_ms`).
The simulator's own clocks are simulated time, so the agent's timestamp metric cannot be used for this.
The benchmark process runs SCHED_RR 20 (reset on fork) when it may, so that it measures the agent rather
than its own starvation; stress-ng and the agents start with normal scheduling.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROM_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
               "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
CLK_TCK = os.sysconf("SC_CLK_TCK")
NPROC = len(os.sched_getaffinity(0))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values; NaN when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def summary_ms(values_s: list[float]) -> dict[str, Any]:
    """p50, p99 and max of durations in seconds, in ms."""
    return {"n": len(values_s), "p50_ms": round(pct(values_s, 50) * 1e3, 2),
            "p99_ms": round(pct(values_s, 99) * 1e3, 2),
            "max_ms": round(max(values_s) * 1e3, 2) if values_s else float("nan")}


def set_client_priority() -> str:
    """SCHED_RR 20 for this process's threads, not inherited by children; returns what was applied."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(20))
        return "SCHED_RR 20 (reset on fork)"
    except (PermissionError, OSError, AttributeError):
        return "normal"


# -- the agent process ------------------------------------------------------------------------------------
@dataclass
class AgentProc:
    """A running `coldaisle agent` subprocess."""

    proc: subprocess.Popen[bytes]
    port: int
    stderr: Path

    @property
    def pid(self) -> int:
        """The agent's pid."""
        return self.proc.pid

    def start_line(self) -> str:
        """The agent's first stderr line (what it says about mode and priority)."""
        text = self.stderr.read_text(errors="replace")
        return " ".join(text.split())[:400]


def start_agent(priority: str, tmp: Path, duration_s: float) -> AgentProc:
    """Start the 8-GPU simulated agent and wait until it has sampled (fails after 30 s)."""
    port = free_port()
    exe = shutil.which("coldaisle") or sys.exit("`coldaisle` is not on PATH (pip install -e .)")
    err = tmp / f"agent-{priority}-{port}.stderr"
    cmd = [exe, "agent", "--backend", "sim", "--scenario", "single-node-fan-failure", "--node", "gpu-node-01",
           "--listen", f"127.0.0.1:{port}", "--audit", str(tmp / f"audit-{priority}-{port}.jsonl"),
           "--interval", "1", "--duration", str(int(duration_s)), "--priority", priority]
    with open(err, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, "COLUMNS": "400"})
    agent = AgentProc(proc, port, err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"agent exited with {proc.returncode}: {err.read_text(errors='replace')}")
        try:
            if healthz(port) > 0:
                return agent
        except OSError:
            pass
        time.sleep(0.1)
    stop(proc)
    sys.exit(f"agent did not answer /healthz in 30 s: {err.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL to the process group after `timeout`; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


def healthz(port: int) -> int:
    """GET /healthz on a fresh connection; the agent's sample count.

    Not keep-alive: the agent's server writes headers and body in two sends without TCP_NODELAY, so requests
    sent back to back on one connection wait ~40 ms each (Nagle + delayed ACK; see RESULTS.md).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        return int(json.loads(conn.getresponse().read())["samples"])
    finally:
        conn.close()


def scrape(port: int) -> float:
    """One Prometheus-like scrape of /metrics on a fresh connection; seconds to the last byte."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics", headers={"Accept": PROM_ACCEPT})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or b"coldaisle_gpu_temperature_celsius" not in body:
            raise OSError(f"bad scrape: {resp.status}, {len(body)} bytes")
    finally:
        conn.close()
    return time.perf_counter() - t0


def keepalive_scrapes(port: int, n: int = 20) -> dict[str, Any]:
    """`n` scrapes 50 ms apart on one reused connection (as Prometheus reuses its connection)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", "/metrics", headers={"Accept": PROM_ACCEPT})
            conn.getresponse().read()
            times.append(time.perf_counter() - t0)
            time.sleep(0.05)
    finally:
        conn.close()
    return summary_ms(times)


def proc_cpu_s(pid: int) -> float:
    """utime + stime of `pid` in seconds (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of `pid` in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(rest.split()[0]) / 1024, 1)
    return out


def host_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


# -- measurement ------------------------------------------------------------------------------------------
@dataclass
class Observed:
    """What the pollers saw during one phase."""

    scrapes_s: list[float] = field(default_factory=list)
    scrape_errors: list[str] = field(default_factory=list)
    sample_times: list[tuple[float, int, float]] = field(default_factory=list)  # (instant, count, uncertainty)
    poll_errors: int = 0


def _scraper(port: int, every_s: float, deadline: float, obs: Observed) -> None:
    next_at = time.perf_counter()
    for _ in range(int((deadline - next_at) / every_s) + 2):  # bounded in count and in time
        if time.perf_counter() >= deadline:
            break
        try:
            obs.scrapes_s.append(scrape(port))
        except OSError as exc:
            obs.scrape_errors.append(f"{type(exc).__name__}: {exc}")
        next_at += every_s
        time.sleep(max(0.0, next_at - time.perf_counter()))


def _sample_poller(port: int, interval_s: float, deadline: float, obs: Observed) -> None:
    last_count, last_change, prev_recv = -1, -1e9, time.perf_counter()
    polls = 0
    while time.perf_counter() < deadline and polls < 200_000:
        polls += 1
        send = time.perf_counter()
        try:
            count = healthz(port)
        except (OSError, http.client.HTTPException, ValueError):
            obs.poll_errors += 1
            time.sleep(0.05)
            continue
        recv = time.perf_counter()
        if count != last_count:
            if last_count >= 0:  # the change happened after the previous read, no later than this one
                instant = (prev_recv + send) / 2
                obs.sample_times.append((instant, count - last_count, recv - prev_recv))
                last_change = instant
            last_count = count
        prev_recv = recv
        soon = last_change + 0.85 * interval_s <= recv <= last_change + 3 * interval_s
        time.sleep(0.002 if soon else 0.05)


def measure(port: int, seconds: float, scrape_every_s: float = 0.2, interval_s: float = 1.0) -> Observed:
    """Scrape every `scrape_every_s` and time every sample for `seconds`."""
    obs = Observed()
    deadline = time.perf_counter() + seconds
    threads = [threading.Thread(target=_scraper, args=(port, scrape_every_s, deadline, obs)),
               threading.Thread(target=_sample_poller, args=(port, interval_s, deadline, obs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return obs


def jitter(obs: Observed, interval_s: float = 1.0, max_uncertainty_s: float = 0.010) -> dict[str, Any]:
    """|interval - interval_s| between consecutive samples seen one at a time and each timed to 10 ms, in ms."""
    js, gaps, missed, coarse = [], [], 0, 0
    for (t0, _, u0), (t1, step, u1) in zip(obs.sample_times, obs.sample_times[1:], strict=False):
        if step != 1:
            missed += 1  # two samples between reads: no clean interval
            continue
        if max(u0, u1) > max_uncertainty_s:
            coarse += 1  # e.g. the first sample, seen by the 20 Hz poll before the fast window exists
            continue
        gaps.append(t1 - t0)
        js.append(abs(t1 - t0 - interval_s))
    res = [u for _, _, u in obs.sample_times]
    return {**summary_ms(js), "worst5_ms": [round(j * 1e3, 1) for j in sorted(js)[-5:]],
            "mean_interval_s": round(statistics.fmean(gaps), 4) if gaps else None,
            "intervals_with_2plus_samples": missed, "intervals_left_out_uncertainty_over_10ms": coarse,
            "resolution_ms_p50": round(pct(res, 50) * 1e3, 1), "resolution_ms_p99": round(pct(res, 99) * 1e3, 1)}


def phase(agent: AgentProc, seconds: float) -> dict[str, Any]:
    """One measured phase: scrape latency, jitter, agent CPU and host busy share."""
    cpu0, (b0, tot0), w0, me0 = proc_cpu_s(agent.pid), host_busy(), time.perf_counter(), time.process_time()
    obs = measure(agent.port, seconds)
    cpu1, (b1, tot1), w1, me1 = proc_cpu_s(agent.pid), host_busy(), time.perf_counter(), time.process_time()
    return {"scrape": {**summary_ms(obs.scrapes_s), "errors": len(obs.scrape_errors),
                       "first_errors": obs.scrape_errors[:3]},
            "jitter": jitter(obs), "poll_errors": obs.poll_errors,
            "agent_cpu_pct_of_one_core": round((cpu1 - cpu0) / (w1 - w0) * 100, 2),
            "host_busy_pct": round((b1 - b0) / max(tot1 - tot0, 1) * 100, 1),
            "bench_client_cpu_pct_of_one_core": round((me1 - me0) / (w1 - w0) * 100, 1),
            "agent_mem_mib": proc_mem_mib(agent.pid)}


def cpu_phase(agent: AgentProc, seconds: float) -> dict[str, Any]:
    """Agent CPU at 1 Hz with only a scrape every 15 s; RSS before and after."""
    mem0 = proc_mem_mib(agent.pid)
    cpu0, w0 = proc_cpu_s(agent.pid), time.perf_counter()
    n = 0
    while time.perf_counter() - w0 < seconds and n < 100:
        if n * 15.0 <= time.perf_counter() - w0:
            scrape(agent.port)
            n += 1
        time.sleep(0.25)
    cpu1, w1 = proc_cpu_s(agent.pid), time.perf_counter()
    return {"wall_s": round(w1 - w0, 1), "scrapes": n, "cpu_s": round(cpu1 - cpu0, 3),
            "agent_cpu_pct_of_one_core": round((cpu1 - cpu0) / (w1 - w0) * 100, 3),
            "mem_mib_start": mem0, "mem_mib_end": proc_mem_mib(agent.pid)}


def stressed(agent: AgentProc, seconds: float) -> dict[str, Any]:
    """`phase` while `stress-ng --cpu NPROC` saturates every core at normal priority."""
    exe = shutil.which("stress-ng") or sys.exit("stress-ng is not installed: run scripts/install-test-deps.sh")
    st = subprocess.Popen([exe, "--cpu", str(NPROC), "--timeout", f"{int(seconds + 20)}s", "--quiet"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(2.0)  # let the workers spin up
        out = phase(agent, seconds)
    finally:
        if st.poll() is None:
            os.killpg(st.pid, signal.SIGTERM)
        try:
            st.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(st.pid, signal.SIGKILL)
            st.wait(timeout=10)
    return out


def main() -> None:
    """Run the phases and print the figures as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase-s", type=float, default=60.0)
    args = ap.parse_args()
    client = set_client_priority()
    tmp = Path(tempfile.mkdtemp(prefix="coldaisle-bench-agent-"))
    result: dict[str, Any] = {"date": datetime.date.today().isoformat(), "client_priority": client,
                              "loadavg_1_5_15_at_start": [round(x, 2) for x in os.getloadavg()],
                              "machine": f"{platform.machine()} nproc={NPROC}", "phase_s": args.phase_s}
    life = args.phase_s * 4 + 120  # the agent stops by itself even if this script dies
    agent = start_agent("realtime", tmp, life)
    try:
        time.sleep(3.0)
        result["agent_realtime"] = {"start_line": agent.start_line(), "cpu_1hz_8gpus": cpu_phase(agent, args.phase_s),
                                    "idle_host": phase(agent, args.phase_s),
                                    "idle_keepalive_python_client": keepalive_scrapes(agent.port),
                                    "stressed_host": stressed(agent, args.phase_s)}
        result["agent_realtime"]["mem_mib_final"] = proc_mem_mib(agent.pid)
    finally:
        result["agent_realtime_exit"] = stop(agent.proc)
    agent = start_agent("normal", tmp, life)
    try:
        time.sleep(3.0)
        result["agent_normal_priority_baseline"] = {"start_line": agent.start_line(),
                                                    "stressed_host": stressed(agent, args.phase_s)}
    finally:
        result["agent_normal_exit"] = stop(agent.proc)
    rt, idle = result["agent_realtime"]["stressed_host"], result["agent_realtime"]["idle_host"]
    base = result["agent_normal_priority_baseline"]["stressed_host"]
    result["ratios"] = {
        "scrape_p99_stressed_over_idle": round(rt["scrape"]["p99_ms"] / idle["scrape"]["p99_ms"], 2),
        "scrape_p99_normal_over_realtime_stressed": round(base["scrape"]["p99_ms"] / rt["scrape"]["p99_ms"], 2),
        "jitter_p99_normal_over_realtime_stressed": round(base["jitter"]["p99_ms"] / max(rt["jitter"]["p99_ms"], 1e-3),
                                                          2)}
    shutil.rmtree(tmp, ignore_errors=True)
    result["loadavg_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]  # anything else running shows here
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
