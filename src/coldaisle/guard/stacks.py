"""Python stacks of every process of a job, through py-spy, for the incident bundle.

py-spy attaches with ptrace: a container without CAP_SYS_PTRACE, a Yama setting or a missing py-spy all
end in a text that says why, in place of the stack; a dump never raises.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PY_SPY_HINT = "install it with `pip install 'coldaisle[guard]'` (py-spy, from PyPI)"


def find_py_spy() -> str | None:
    """py-spy on PATH, else beside this Python (a virtual environment used without activating it)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


def dump_stack(pid: int, timeout_s: float = 10.0, py_spy: str | None = None, native: bool = True) -> str:
    """One process's stacks (native frames too where py-spy can unwind them), or why none could be taken."""
    exe = py_spy or find_py_spy()
    if exe is None:
        return f"no stack for pid {pid}: py-spy is not installed; {PY_SPY_HINT}\n"
    argv = [exe, "dump", "--pid", str(pid), *(["--native"] if native else [])]
    try:
        got = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"no stack for pid {pid}: py-spy did not answer within {timeout_s:g} s\n"
    except OSError as exc:
        return f"no stack for pid {pid}: cannot run py-spy: {exc}\n"
    if got.returncode == 0:
        return got.stdout
    if native:  # no native unwinding for this process (a static build, an unsupported platform): Python only
        return dump_stack(pid, timeout_s, exe, native=False)
    why = (got.stderr or got.stdout).strip() or f"exit status {got.returncode}"
    hint = " (ptrace denied? run with CAP_SYS_PTRACE or kernel.yama.ptrace_scope=0)" if "ermission" in why else ""
    return f"no stack for pid {pid}: py-spy failed{hint}: {why}\n"


def dump_stacks(pids: list[int], timeout_s: float = 10.0, workers: int = 8) -> dict[int, str]:
    """Every pid's stacks, a few dumps at once so a large node is dumped within one timeout or so."""
    exe = find_py_spy()
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(pids)))) as pool:
        texts = pool.map(lambda pid: dump_stack(pid, timeout_s, exe), pids)
        return dict(zip(pids, texts, strict=True))


class StackCache:
    """The run's latest dumps by pid: taken by the stack watch or the hang judge, reused by the bundle."""

    def __init__(self) -> None:
        self.by_pid: dict[int, str] = {}

    def dump(self, pids: Iterable[int]) -> dict[int, str]:
        """Dump `pids` now; these become the latest dumps."""
        self.by_pid = dump_stacks(list(pids))
        return self.by_pid

    def with_missing(self, pids: Iterable[int]) -> dict[int, str]:
        """The latest dumps plus fresh ones of the pids not dumped yet (a verdict's last look at the job)."""
        fresh = [pid for pid in pids if pid not in self.by_pid]
        return {**self.by_pid, **(dump_stacks(fresh) if fresh else {})}
