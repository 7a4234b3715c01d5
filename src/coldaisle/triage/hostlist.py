"""Host names folded the way Slurm writes them: node-gpu-01..node-gpu-128 -> node-gpu-[01-128]."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

_TAIL = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)$")


def _runs(nums: list[tuple[int, str]]) -> list[str]:
    out: list[str] = []
    start = prev = nums[0]
    for cur in [*nums[1:], None]:
        if cur is not None and cur[0] == prev[0] + 1 and (len(cur[1]) == len(prev[1]) or cur[1][0] != "0"):
            prev = cur
            continue
        out.append(start[1] if start == prev else f"{start[1]}-{prev[1]}")
        if cur is not None:
            start = prev = cur
    return out


def compact(hosts: Iterable[str]) -> str:
    """A short, Slurm-style host list (`a-[1-3,7],b`)."""
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    plain: list[str] = []
    for h in sorted(set(hosts)):
        m = _TAIL.match(h)
        if m:
            groups[m["prefix"]].append((int(m["num"]), m["num"]))
        else:
            plain.append(h)
    parts = []
    for prefix, nums in sorted(groups.items()):
        runs = _runs(sorted(nums))
        parts.append(f"{prefix}{runs[0]}" if len(runs) == 1 and "-" not in runs[0] else f"{prefix}[{','.join(runs)}]")
    return ",".join([*parts, *plain])
