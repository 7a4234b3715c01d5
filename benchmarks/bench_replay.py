"""The full protected replay and a 24-hour agent soak (issue targets: replay <= 60 s; agent RSS <= 80 MB, flat).

Run: python benchmarks/bench_replay.py [--soak-hours 24] [--profile-hours 24] [--profile-top 25]

Each part runs in its own child process, so each peak RSS is its own:
  replay      prometheus-unbound (512 GPUs, 72 h) protected by the default policy (`guarded_replay`), with
              the unprotected replay of the same scenario as the baseline (`replay`) at fixed 1 s steps, the
              steps the protected replay takes (its agent samples every second; unprotected, the twin would
              take long steps while quiet, sim/stepper.py): wall, ratio, peak RSS;
  soak        healthy-training stretched to `--soak-hours` (32 GPUs at 1 Hz, the same job throughout) with an
              enforcing agent attached (`protect(plan)`, then `g.agent.run(until=...)` an hour at a time),
              process RSS after every simulated hour; the baseline is the same hours of the unprotected twin,
              whose history arrays fill (and so become resident) as it runs;
  profile     cProfile of the protected replay's first `--profile-hours` hours (0 to skip): the top costs.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import json
import os
import platform
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def rss_mib() -> float:
    """This process's VmRSS in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """This process's peak RSS in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def part_replay(protected: bool) -> dict[str, Any]:
    """The 72-hour prometheus-unbound replay, protected or not."""
    from coldaisle.replay.protected import guarded_replay
    from coldaisle.sim.run import load_plan, replay
    from coldaisle.sim.scenario import find_scenario, parse_scenario

    plan = load_plan("prometheus-unbound")
    if not protected:  # the same 1 s steps as the protected replay, whose agent samples every second
        text = find_scenario("prometheus-unbound").read_text(encoding="utf-8") + "\nmax_step: 1 s\n"
        _, plan = parse_scenario(text, "prometheus-unbound (fixed 1 s steps)")
    rss0 = rss_mib()
    t0 = time.perf_counter()
    if protected:
        g = guarded_replay(plan)
        with open(g.audit_path, encoding="utf-8") as f:
            records = sum(1 for _ in f)
        twin, extra = g.twin, {"audit_records": records, "agent_samples": g.agent.stats.samples,
                               "agent_errors": g.agent.stats.errors}
    else:
        twin, extra = replay(plan), {}
    wall = time.perf_counter() - t0
    return {"gpus": plan.layout.n_gpus, "simulated_h": round(twin.t / 3600, 2), "wall_s": round(wall, 2),
            "rss_mib_after_import": round(rss0, 1), "peak_rss_mib": round(peak_rss_mib(), 1), **extra}


def soak_plan(hours: float) -> Any:
    """healthy-training with its duration stretched to `hours` (the job has no end, so it trains throughout)."""
    from coldaisle.sim.run import load_plan
    from coldaisle.sim.scenario import find_scenario

    text = Path(find_scenario("healthy-training")).read_text(encoding="utf-8")
    text, n = re.subn(r"(?m)^duration: .*$", f"duration: {hours:g} h", text)
    assert n == 1, "healthy-training.yaml has no `duration:` line"
    path = Path(tempfile.mkdtemp(prefix="coldaisle-soak-")) / "healthy-training-soak.yaml"
    path.write_text(text, encoding="utf-8")
    return load_plan(str(path))


def part_soak(hours: float, protected: bool) -> dict[str, Any]:
    """RSS after every simulated hour of the soak (agent attached, or the bare twin)."""
    from coldaisle.replay.protected import protect
    from coldaisle.sim.twin import Twin

    plan = soak_plan(hours)
    rss = [round(rss_mib(), 2)]
    t0 = time.perf_counter()
    if protected:
        g = protect(plan)
        rss.append(round(rss_mib(), 2))
        for h in range(1, int(hours) + 1):
            g.agent.run(until=h * 3600.0)
            rss.append(round(rss_mib(), 2))
        audit_bytes = g.audit_path.stat().st_size if g.audit_path.exists() else 0  # created on first write
        extra = {"agent_samples": g.agent.stats.samples, "agent_errors": g.agent.stats.errors,
                 "decisions": g.agent.stats.decisions, "audit_bytes": audit_bytes}
    else:
        twin = Twin(plan)
        rss.append(round(rss_mib(), 2))
        for h in range(1, int(hours) + 1):
            twin.run_until(h * 3600.0)
            rss.append(round(rss_mib(), 2))
        extra = {}
    hourly = rss[2:]  # after each simulated hour
    return {"gpus": plan.layout.n_gpus, "hours": int(hours), "wall_s": round(time.perf_counter() - t0, 2),
            "rss_mib_after_import": rss[0], "rss_mib_after_setup": rss[1], "rss_mib_hourly": hourly,
            "first_h_mib": hourly[0], "last_h_mib": hourly[-1], "max_mib": max(hourly),
            "slope_mib_per_h": round(slope(hourly), 4),
            "slope_mib_per_h_after_h2": round(slope(hourly[1:]), 4), **extra}


def slope(ys: list[float]) -> float:
    """Least-squares slope of ys against 0, 1, 2, ..."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sum((i - mx) ** 2 for i in range(n))


def part_profile(hours: float, top: int) -> dict[str, Any]:
    """cProfile of the protected replay's first `hours`: the top functions by own time and by cumulative time."""
    from coldaisle.replay.protected import guarded_replay
    from coldaisle.sim.run import load_plan

    plan = load_plan("prometheus-unbound")
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    guarded_replay(plan, until_s=hours * 3600.0)
    prof.disable()
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"hours": hours, "wall_s_profiled": round(wall, 2)}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(top)
        rows = [ln for ln in buf.getvalue().splitlines() if re.match(r"\s*\d", ln) and "function calls" not in ln]
        out["columns"] = "ncalls tottime percall cumtime percall filename:lineno(function)"
        out[f"top_by_{key}"] = [" ".join(r.split()) for r in rows[:top]]
    return out


def child(args: list[str]) -> dict[str, Any]:
    """Run one part in a fresh interpreter; its JSON."""
    res = subprocess.run([sys.executable, __file__, "--part", *args], capture_output=True, text=True,
                         timeout=1800, check=False)
    if res.returncode != 0:
        sys.exit(f"part {args} failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return json.loads(res.stdout)


def main() -> None:
    """Run every part and print the figures as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--soak-hours", type=float, default=24.0)
    ap.add_argument("--profile-hours", type=float, default=24.0)
    ap.add_argument("--profile-top", type=int, default=25)
    ap.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.part:
        kind = a.part[0]
        if kind == "replay":
            res = part_replay(a.part[1] == "protected")
        elif kind == "soak":
            res = part_soak(float(a.part[2]), a.part[1] == "protected")
        else:
            res = part_profile(float(a.part[1]), int(a.part[2]))
        print(json.dumps(res))
        return
    result: dict[str, Any] = {"date": datetime.date.today().isoformat(),
                              "machine": f"{platform.machine()} nproc={len(os.sched_getaffinity(0))}"}
    base = result["replay_unprotected"] = child(["replay", "unprotected"])
    prot = result["replay_protected"] = child(["replay", "protected"])
    result["replay_ratio_protected_over_unprotected"] = round(prot["wall_s"] / base["wall_s"], 2)
    result["replay_target_60s_met"] = prot["wall_s"] <= 60.0
    result["soak_bare_twin"] = child(["soak", "bare", str(a.soak_hours)])
    result["soak_agent"] = child(["soak", "protected", str(a.soak_hours)])
    result["soak_agent_minus_bare_slope_mib_per_h"] = round(
        result["soak_agent"]["slope_mib_per_h"] - result["soak_bare_twin"]["slope_mib_per_h"], 4)
    if a.profile_hours > 0:
        result["profile"] = child(["profile", str(a.profile_hours), str(a.profile_top)])
    result["loadavg_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]  # anything else running shows here
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
