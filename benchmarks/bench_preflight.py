"""Preflight over this venv's site-packages (it holds the CPU build of torch): cold <= 5 s, warm <= 1 s.

Cold: an empty ELF cache, so every shared object is parsed. Warm: the cache from the cold run, so the
run is a directory walk, one stat per object and the checks. Both run every check except the GPU ones
(no GPU here; `--backend none`), in a fresh process each, as `coldaisle preflight` would. The baseline is
a bare `os.walk` of the same site-packages in the same run. The OS page cache is warm in both (dropping
it needs root and would disturb the other users of the machine).

    python benchmarks/bench_preflight.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from coldaisle.preflight import Options, run_preflight
from pathlib import Path
t1 = time.perf_counter()
r = run_preflight(Options(backend="none", cache_dir=Path(sys.argv[1]), skip=["gpu"]))
t2 = time.perf_counter()
elf = next(n.message for n in r.notes if n.check == "elf.integrity" and "inspected" in n.message)
print(json.dumps({"import_s": t1 - t0, "run_s": t2 - t1, "elf": elf,
                  "checks": {c.id: round(c.duration_s, 4) for c in r.checks}}))
"""


def once(cache: Path) -> dict[str, object]:
    """One preflight in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(cache)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def walk_s(root: str) -> float:
    """Baseline: list every file under site-packages."""
    t = time.perf_counter()
    n = sum(len(files) for _, _, files in os.walk(root))
    assert n > 0
    return time.perf_counter() - t


def main() -> None:
    """Run cold and warm `--repeat` times each; print medians and the worst as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    site = sysconfig.get_paths()["purelib"]
    cold, warm, walks, sample = [], [], [], {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            first = once(Path(d))
            cold.append(first["run_s"])
            sample = once(Path(d))
            warm.append(sample["run_s"])
        walks.append(walk_s(site))
    files = sum(len(f) for _, _, f in os.walk(site))
    result = {
        "machine": f"{platform.machine()} nproc={os.cpu_count()} {platform.platform()}",
        "python": platform.python_version(),
        "site_packages": site, "files_under_site_packages": files, "elf": sample["elf"],
        "cold_s": {"median": round(statistics.median(cold), 3), "max": round(max(cold), 3)},
        "warm_s": {"median": round(statistics.median(warm), 3), "max": round(max(warm), 3)},
        "baseline_os_walk_s": round(statistics.median(walks), 3),
        "warm_over_walk": round(statistics.median(warm) / statistics.median(walks), 1),
        "import_s": round(sample["import_s"], 3),
        "warm_checks_s": sample["checks"],
        "targets": {"cold_s": 5.0, "warm_s": 1.0},
        "pass": max(cold) <= 5.0 and max(warm) <= 1.0,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
