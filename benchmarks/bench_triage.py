"""Triage against `grep -E -f` with the same patterns on 1 GiB of mixed logs: same lines first, then cold and warm.

    python benchmarks/bench_triage.py [--size-mb 1024] [--runs 5] [--dir /tmp/coldaisle-triage-bench] [--keep]

The corpus is written line by line (never a block repeated): kernel chatter in dmesg, dmesg -T, syslog,
short-iso and journald JSON, NCCL INFO, training progress, vLLM metrics, kubelet and Slurm debug lines, about
one line in a thousand that matters (every line of the real-world corpus's alarm records, and their kinds with
fresh numbers) and the corpus's benign look-alikes. grep gets an exact ERE translation of the patterns
triage's automaton holds (`ere()`: named and non-capturing groups plain, `\\d` spelled out, escapes inside
bracket classes expanded since grep reads them literally, lazy quantifiers greedy, case-insensitive patterns
spelled in both cases). Before timing, both must find the same lines (line numbers compared). Triage runs
as the real CLI (`coldaisle triage --json`) in its own process: cold with an empty compiled-database cache
(the Hyperscan compile included), then warm; peak memory is the child's ru_maxrss.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from coldaisle.triage.catalog import load_catalog
from coldaisle.triage.scanner import SILENT, build_matcher, scan_lines

REAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "triage" / "real"
NOISE = [
    "[{up:12.6f}] audit: type=1400 audit({ts}.123:{n}): apparmor=\"STATUS\" operation=\"profile_load\" pid={pid}",
    "[{up:12.6f}] IPv4: martian source 10.0.{a}.{b} from 10.0.{b}.{a}, on dev eth0",
    "[Tue May 21 03:{m:02d}:{s:02d} 2024] systemd-journald[412]: Data hash table of /run/log/journal is {n} % full",
    "May 21 03:{m:02d}:{s:02d} node-gpu-{h:02d} systemd[1]: Started Session {n} of User root.",
    "May 21 03:{m:02d}:{s:02d} node-gpu-{h:02d} kernel: [{up:12.6f}] perf: interrupt took too long ({n} > 2500)",
    "2024-05-21T03:{m:02d}:{s:02d}.{us:06d}+00:00 node-gpu-{h:02d} sshd[{pid}]: Accepted publickey for root",
    "{{\"__REALTIME_TIMESTAMP\":\"17162{n:05d}000000\",\"_HOSTNAME\":\"node-gpu-{h:02d}\",\"MESSAGE\":"
    "\"cgroup: fork rejected by pids controller in /user.slice\",\"PRIORITY\":\"6\"}}",
    "node-gpu-{h:02d}:{pid}:{tid} [{g}] NCCL INFO Channel {c:02d}/32 :    0   1   2   3   4   5   6   7",
    "node-gpu-{h:02d}:{pid}:{tid} [{g}] NCCL INFO Connected all rings, use ring PXN 0 GDR 1",
    "node-gpu-{h:02d}:{pid}:{tid} [{g}] NCCL INFO NCCL_IB_TIMEOUT set by environment to 22.",
    "[2024-05-21 03:{m:02d}:{s:02d},{ms:03d}] [INFO] [engine.py:{n}] step={n} loss={loss:.4f} lr=3.0e-4 tokens/s=81234",
    "Epoch 3:  41%|████      | {n}/500150 [6:28:43<94:39:17,  1.37it/s, loss={loss:.3f}]",
    "INFO 05-21 04:{m:02d}:{s:02d} metrics.py:{n}] Avg prompt throughput: 812.4 tokens/s, Running: 24 reqs",
    "I0521 03:{m:02d}:{s:02d}.{us:06d}    {pid} kubelet.go:{n}] \"SyncLoop (PLEG): event for pod\" "
    "pod=\"ml/train-{g}\"",
    "[2024-05-21T03:{m:02d}:{s:02d}.{ms:03d}] debug:  sched: Running job scheduler for default depth",
]
SIGNAL = [
    "[{up:12.6f}] NVRM: Xid (PCI:0000:{b:02x}:00): {xid}, pid={pid}, name=python3, Graphics SM Warp Exception",
    "[{up:12.6f}] nvidia 0000:{b:02x}:00.0: AER: PCIe Bus Error: severity=Corrected, type=Physical Layer, "
    "(Receiver ID)",
    "[{up:12.6f}] Out of memory: Killed process {pid} (python3) total-vm:1kB, anon-rss:1kB, file-rss:0kB, "
    "shmem-rss:0kB",
    "[rank{g}]:[E521 03:{m:02d}:{s:02d}.{us:06d} ProcessGroupNCCL.cpp:616] [Rank {g}] Watchdog caught collective "
    "operation timeout: WorkNCCL(SeqNum={n}, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for "
    "600020 milliseconds before timing out.",
    "node-gpu-{h:02d}:{pid}:{tid} [{g}] misc/socket.cc:484 NCCL WARN socketStartConnect: Connect to 10.0.0.{a}<{n}> "
    "failed : Connection timed out",
    "[{up:12.6f}] mlx5_core 0000:{b:02x}:00.0 ibp{a}s0: Link down",
    "[{up:12.6f}] nvme nvme{g}: I/O {n} QID {c} timeout, aborting",
]


def _fill(rng: random.Random, template: str) -> str:
    return template.format(up=rng.uniform(1, 300000), ts=1716260000 + rng.randrange(9999), n=rng.randrange(99999),
                           pid=rng.randrange(1000, 99999), tid=rng.randrange(1000, 99999), a=rng.randrange(256),
                           b=rng.randrange(256), m=rng.randrange(60), s=rng.randrange(60), us=rng.randrange(10**6),
                           ms=rng.randrange(1000), h=rng.randrange(1, 129), g=rng.randrange(8), c=rng.randrange(32),
                           loss=rng.uniform(1, 3), xid=rng.choice((13, 31, 43, 48, 63, 79, 94, 119)))


def real_lines() -> tuple[list[str], list[str]]:
    """(alarm records' lines, benign records' lines) of the real-world corpus."""
    alarm, benign = [], []
    for path in sorted(REAL.glob("*.yaml")):
        for rec in yaml.safe_load(path.read_text(encoding="utf-8")):
            (alarm if rec.get("alarm", True) else benign).extend(rec["lines"].splitlines())
    return alarm, benign


def make_corpus(path: Path, size_mb: int, seed: int = 6) -> int:
    """Write about size_mb of mixed lines; returns the number of lines written."""
    rng, (alarm, benign) = random.Random(seed), real_lines()
    written = count = 0
    with path.open("w", encoding="utf-8") as f:
        while written < size_mb << 20:
            batch = [_fill(rng, rng.choice(NOISE)) for _ in range(5000)]
            for i in rng.sample(range(5000), 5):
                batch[i] = rng.choice(alarm) if rng.random() < 0.5 else _fill(rng, rng.choice(SIGNAL))
            for i in rng.sample(range(5000), 5):
                batch[i] = rng.choice(benign)
            text = "\n".join(batch) + "\n"
            written += f.write(text)
            count += len(batch)
    return count


_TOKEN = re.compile(r"\\.|\[\^?\]?(?:\\.|\[:\w+:\]|[^\]])*\]|\(\?P<\w+>|\(\?:|[*+?}]\?|.", re.DOTALL)
_CLASS = {"d": "0-9", "w": "[:alnum:]_", "s": "[:space:]", "n": "", "t": "\t"}
_OUTSIDE = {r"\d": "[0-9]", r"\D": "[^0-9]"}


def _bracket(tok: str) -> str:
    """A Python bracket class as a POSIX one: escapes expanded (grep reads a backslash there literally)."""
    neg, body = tok.startswith("[^"), tok[2:-1] if tok.startswith("[^") else tok[1:-1]
    parts = re.findall(r"\\.|.", body, re.DOTALL)
    close = "\\]" in parts or parts[:1] == ["]"]  # a literal `]` must come first in a POSIX class
    text = "".join(_CLASS.get(p[1], p[1]) if p.startswith("\\") else p for p in parts if p not in ("\\]", "]"))
    if "-" in text and not re.search(r"[^\\[:]-[^\]]", text.replace("[:", "")):
        text = text.replace("-", "") + "-"  # a literal dash goes last
    text = ("]" if close else "") + text
    return ("." if not text else f"[^{text}]") if neg else f"[{text}]"


def ere(pattern: str, ignore_case: bool = False) -> str:
    """A catalog regex as an equivalent GNU grep -E pattern (see the module docstring)."""
    return "".join(_ere_token(tok, ignore_case) for tok in _TOKEN.findall(pattern))


def _ere_token(tok: str, ignore_case: bool) -> str:
    if tok.startswith("(?"):
        return "("
    if tok.startswith("[") and len(tok) > 1:
        return _bracket(tok)
    if len(tok) == 2 and tok[1] == "?" and tok[0] in "*+?}":
        return tok[0]  # lazy -> greedy: the same lines match
    if ignore_case and tok.isalpha() and len(tok) == 1:
        return f"[{tok.upper()}{tok.lower()}]"
    return _OUTSIDE.get(tok, tok)


def patterns(path: Path) -> int:
    """Write grep's pattern file: every signature triage's automaton holds (not the silent NCCL INFO one)."""
    sigs = [s for s in load_catalog().signatures if s.spec.cls not in SILENT]
    path.write_text("\n".join(ere(s.spec.pattern, s.spec.ignore_case) for s in sigs) + "\n", encoding="utf-8")
    return len(sigs)


def triage_lines(corpus: Path) -> set[int]:
    """Line numbers where triage finds a signature (its scanner's candidates, confirmed by each regex)."""
    matcher = build_matcher(load_catalog())
    sigs, n = matcher.catalog.signatures, len(matcher.catalog.signatures)
    counts = {"lines": 0, "long_lines": 0, "bad_utf8": 0, "nul": 0}
    out = set()
    with corpus.open("rb") as f:
        chunks = iter(lambda: f.read(4 << 20), b"")
        for line_no, raw, ids in scan_lines(chunks, matcher, counts):
            text = raw.decode("utf-8", "replace")
            if any(i < n and sigs[i].regex.search(text) for i in ids):
                out.add(line_no)
    return out


def grep_lines(corpus: Path, pats: Path) -> set[int]:
    """Line numbers grep -n -E -f prints."""
    proc = subprocess.run(["grep", "-n", "-E", "-f", str(pats), str(corpus)], capture_output=True, check=False,
                          env={**os.environ, "LC_ALL": "C"})
    if proc.returncode not in (0, 1):
        raise SystemExit(f"grep failed: {proc.stderr.decode()[-2000:]}")
    return {int(line.split(b":", 1)[0]) for line in proc.stdout.splitlines()}


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS of this one child (MB, from wait4) and its stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            err.seek(0)
            raise SystemExit(f"{cmd[0]} failed: {err.read()[-2000:]!r}")
        out.seek(0)
        return wall, usage.ru_maxrss / 1024, out.read().decode()


def run_once(corpus: Path, pats: Path, cache: Path) -> dict[str, float]:
    """One grep run, then triage cold (cache emptied) and warm, on the same page-cached file."""
    grep_s, _, _ = timed(["grep", "-E", "-c", "-f", str(pats), str(corpus)], {**os.environ, "LC_ALL": "C"})
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    cmd = [sys.executable, "-m", "coldaisle.cli", "triage", "--json", str(corpus)]
    cold_s, cold_rss, out = timed(cmd, env)
    warm_s, warm_rss, _ = timed(cmd, env)
    doc = json.loads(out)
    return {"grep_s": grep_s, "cold_s": cold_s, "warm_s": warm_s, "rss_mb": max(cold_rss, warm_rss),
            "events": len(doc["events"]), "matched_lines": doc["input"]["matched_lines"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/coldaisle-triage-bench"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    corpus, pats = args.dir / "node-gpu-01.log", args.dir / "patterns.ere"
    t0 = time.perf_counter()
    lines = make_corpus(corpus, args.size_mb)
    result: dict[str, object] = {"size_mb": round(corpus.stat().st_size / 2**20, 1), "lines": lines,
                                 "generate_s": round(time.perf_counter() - t0, 1), "patterns": patterns(pats),
                                 "load_avg": os.getloadavg()}
    ours, theirs = triage_lines(corpus), grep_lines(corpus, pats)
    result["same_lines"] = {"triage": len(ours), "grep": len(theirs), "equal": ours == theirs,
                            "only_triage": sorted(ours - theirs)[:5], "only_grep": sorted(theirs - ours)[:5]}
    if ours != theirs:
        print(json.dumps(result, indent=1))
        raise SystemExit("triage and grep do not find the same lines: the translation is not exact")
    runs = [run_once(corpus, pats, args.dir / "cache") for _ in range(args.runs)]
    result["runs"] = [{k: round(v, 2) for k, v in r.items()} for r in runs]
    for key in ("grep_s", "cold_s", "warm_s"):
        result[f"median_{key}"] = round(statistics.median(r[key] for r in runs), 2)
    result["cold_speedup"] = round(statistics.median(r["grep_s"] / r["cold_s"] for r in runs), 2)
    result["warm_speedup"] = round(statistics.median(r["grep_s"] / r["warm_s"] for r in runs), 2)
    result["peak_rss_mb"] = round(max(r["rss_mb"] for r in runs), 1)
    result["load_avg_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
