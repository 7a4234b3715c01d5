"""Triage throughput and memory on a generated 1 GB mixed log corpus, against `grep -E -f` in the same run.

    python benchmarks/bench_triage.py [--size-mb 1024] [--dir /tmp/coldaisle-triage-bench] [--keep]

The corpus mixes what a GPU node's logs hold: kernel chatter in dmesg, syslog and ISO formats, NCCL INFO
lines, training progress, Slurm lines, and about 1 line in 1,000 that matters (Xids, AER, OOM kills, watchdog
timeouts, NCCL WARNs...). The baseline is GNU grep with the catalog's patterns translated to POSIX ERE
(`grep -E -c -f`, LC_ALL=C, its fastest setting); triage is the real CLI (`coldaisle triage --json`) in its own
process, so its figure includes start-up, classification, the timeline and the JSON. Peak memory is the
child's ru_maxrss; it is measured at two input sizes to show it does not grow with the input.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coldaisle.triage.catalog import load_catalog

BLOCK_LINES = 40_000
BLOCKS = 12
NOISE = [
    "[{up:12.6f}] audit: type=1400 audit({ts}.123:{n}): apparmor=\"STATUS\" operation=\"profile_load\" pid={pid}",
    "[{up:12.6f}] IPv4: martian source 10.0.{a}.{b} from 10.0.{b}.{a}, on dev eth0",
    "May 21 03:{m:02d}:{s:02d} node-gpu-{h:02d} systemd[1]: Started Session {n} of User root.",
    "May 21 03:{m:02d}:{s:02d} node-gpu-{h:02d} kernel: [{up:12.6f}] perf: interrupt took too long ({n} > 2500)",
    "2024-05-21T03:{m:02d}:{s:02d}.{us:06d}+00:00 node-gpu-{h:02d} sshd[{pid}]: Accepted publickey for root",
    "node-gpu-{h:02d}:{pid}:{tid} [{g}] NCCL INFO Channel {c:02d}/32 :    0   1   2   3   4   5   6   7",
    "node-gpu-{h:02d}:{pid}:{tid} [{g}] NCCL INFO Connected all rings, use ring PXN 0 GDR 1",
    "node-gpu-{h:02d}:{pid}:{tid} [{g}] NCCL INFO NCCL_IB_TIMEOUT set by environment to 22.",
    "[2024-05-21 03:{m:02d}:{s:02d},{ms:03d}] [INFO] [engine.py:{n}] step={n} loss={loss:.4f} lr=3.0e-4 tokens/s=81234",
    "Epoch 3:  41%|████      | {n}/500150 [6:28:43<94:39:17,  1.37it/s, loss={loss:.3f}]",
    "INFO 05-21 04:{m:02d}:{s:02d} metrics.py:{n}] Avg prompt throughput: 812.4 tokens/s, Running: 24 reqs",
    "[2024-05-21T03:{m:02d}:{s:02d}.{ms:03d}] debug:  sched: Running job scheduler for default depth",
]
SIGNAL = [
    "[{up:12.6f}] NVRM: Xid (PCI:0000:b1:00): 79, pid={pid}, name=python3, GPU has fallen off the bus.",
    "[{up:12.6f}] nvidia 0000:b1:00.0: AER: PCIe Bus Error: severity=Corrected, type=Physical Layer, (Receiver ID)",
    "[{up:12.6f}] Out of memory: Killed process {pid} (python3) total-vm:1kB, anon-rss:1kB, file-rss:0kB, "
    "shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
    "[rank{g}]:[E521 03:{m:02d}:{s:02d}.{us:06d} ProcessGroupNCCL.cpp:616] [Rank {g}] Watchdog caught collective "
    "operation timeout: WorkNCCL(SeqNum={n}, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for "
    "600020 milliseconds before timing out.",
    "node-gpu-{h:02d}:{pid}:{tid} [{g}] misc/socket.cc:484 NCCL WARN socketStartConnect: Connect to 10.0.0.{a}<{n}> "
    "failed : Connection timed out",
    "[{up:12.6f}] INFO: task python3:{pid} blocked for more than 120 seconds.",
    "[{up:12.6f}] CPU{g}: Package temperature above threshold, cpu clock throttled (total events = {n})",
]


def _line(rng: random.Random, template: str) -> str:
    return template.format(up=rng.uniform(1, 300000), ts=1716260000 + rng.randrange(9999), n=rng.randrange(99999),
                           pid=rng.randrange(1000, 99999), tid=rng.randrange(1000, 99999), a=rng.randrange(256),
                           b=rng.randrange(256), m=rng.randrange(60), s=rng.randrange(60), us=rng.randrange(10**6),
                           ms=rng.randrange(1000), h=rng.randrange(1, 129), g=rng.randrange(8), c=rng.randrange(32),
                           loss=rng.uniform(1, 3))


def make_corpus(path: Path, size_mb: int, seed: int = 6) -> int:
    """Write ~size_mb of mixed lines (blocks reshuffled); returns the number of signal lines written."""
    rng = random.Random(seed)
    blocks, signal = [], []
    for _ in range(BLOCKS):
        lines = [_line(rng, rng.choice(NOISE)) for _ in range(BLOCK_LINES)]
        k = BLOCK_LINES // 1000
        for i in rng.sample(range(BLOCK_LINES), k):
            lines[i] = _line(rng, rng.choice(SIGNAL))
        blocks.append(("\n".join(lines) + "\n").encode())
        signal.append(k)
    written = total = 0
    with path.open("wb") as f:
        while written < size_mb << 20:
            i = rng.randrange(BLOCKS)
            f.write(blocks[i])
            written += len(blocks[i])
            total += signal[i]
    return total


def ere(pattern: str) -> str:
    """A catalog regex as POSIX ERE for GNU grep: groups unnamed, \\d spelled out."""
    out = re.sub(r"\(\?P<\w+>", "(", pattern).replace("(?:", "(")
    return out.replace(r"\d", "[0-9]")


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS of this one child (MB, from wait4) and its stdout."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"{cmd[0]} failed: {proc.stderr.read()[-2000:]!r}")
        proc.stderr.close()
        out.seek(0)
        return wall, usage.ru_maxrss / 1024, out.read().decode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/coldaisle-triage-bench"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    big, small = args.dir / "node-gpu-01.log", args.dir / "small" / "node-gpu-01.log"
    small.parent.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    signal = make_corpus(big, args.size_mb)
    make_corpus(small, max(1, args.size_mb // 4))
    gen_s = time.perf_counter() - t0
    patterns = args.dir / "patterns.ere"
    patterns.write_text("\n".join(ere(s.spec.pattern) for s in load_catalog().signatures) + "\n")
    env = {**os.environ, "LC_ALL": "C"}
    triage_cmd = [sys.executable, "-m", "coldaisle.cli", "triage", "--json"]
    results: dict[str, object] = {"size_mb": big.stat().st_size / 2**20, "signal_lines": signal,
                                  "generate_s": round(gen_s, 1)}
    g_wall, _, g_out = timed(["grep", "-E", "-c", "-f", str(patterns), str(big)], env)
    t_wall, t_rss, t_out = timed([*triage_cmd, str(big)])
    s_wall, s_rss, _ = timed([*triage_cmd, str(small.parent)])
    doc = json.loads(t_out)
    results.update({
        "grep_s": round(g_wall, 2), "grep_matching_lines": int(g_out.strip() or 0),
        "triage_s": round(t_wall, 2), "triage_peak_rss_mb": round(t_rss, 1),
        "triage_matched_lines": doc["input"]["matched_lines"], "triage_events": len(doc["events"]),
        "speedup_vs_grep": round(g_wall / t_wall, 2), "triage_mb_per_s": round(results["size_mb"] / t_wall, 1),
        f"triage_{args.size_mb // 4}mb_s": round(s_wall, 2), f"triage_{args.size_mb // 4}mb_peak_rss_mb":
            round(s_rss, 1), "engine": doc["engine"]})
    print(json.dumps(results, indent=1))
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
