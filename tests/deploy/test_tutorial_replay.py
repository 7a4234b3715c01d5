"""docs/tutorial-replay.md works as written: every command in it is run, in an empty folder, with the files it writes.

The tutorial's ```yaml blocks that start with `# file: NAME` are written to NAME; its ```sh blocks are run line by
line (no shell: each line is split like a shell would and must start with `coldaisle`), each expected to exit 0
unless it ends with `# exits N`. The scenario the tutorial writes must be the one shipped in scenarios/, and the
outcomes the prose describes are checked on the real output.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "docs" / "tutorial-replay.md"
COLDAISLE = shutil.which("coldaisle") or str(Path(sys.executable).with_name("coldaisle"))


def blocks(lang: str) -> list[str]:
    """The tutorial's fenced code blocks of one language, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```", TUTORIAL.read_text(), flags=re.S | re.M)


def commands() -> list[tuple[list[str], int]]:
    """(argv, expected exit code) for every command line of every sh block."""
    out = []
    for block in blocks("sh"):
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            code = re.search(r"#\s*exits (\d+)\s*$", line)
            argv = shlex.split(line, comments=True)
            assert argv[0] == "coldaisle", f"the tutorial runs only coldaisle commands: {line}"
            out.append((argv, int(code[1]) if code else 0))
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, subprocess.CompletedProcess[str]]]:
    """Write the tutorial's files into an empty folder, then run its commands there, in order."""
    work = tmp_path_factory.mktemp("tutorial")
    for block in blocks("yaml"):
        name = re.match(r"# file: (\S+)\n", block)
        assert name, f"every yaml block names its file on its first line: {block[:60]!r}"
        (work / name[1]).parent.mkdir(parents=True, exist_ok=True)
        (work / name[1]).write_text(block)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    out = []
    for argv, code in commands():
        res = subprocess.run([COLDAISLE, *argv[1:]], cwd=work, capture_output=True, text=True, env=env, timeout=120,
                             stdin=subprocess.DEVNULL, check=False)
        assert res.returncode == code, f"{shlex.join(argv)} exited {res.returncode}, the tutorial says {code}:\n" \
                                       f"{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
        out.append((shlex.join(argv), res))
    return out


def _output(results: list[tuple[str, subprocess.CompletedProcess[str]]], starts: str) -> str:
    matches = [r.stdout + r.stderr for cmd, r in results if cmd.startswith(starts)]
    assert matches, f"the tutorial has no command starting {starts!r}"
    return matches[0]


def test_the_tutorial_writes_the_shipped_scenario() -> None:
    written = next(b for b in blocks("yaml") if b.startswith("# file: scenarios/"))
    assert written == (REPO / "scenarios" / "tutorial-hung-allreduce.yaml").read_text()


def test_every_command_runs_as_the_tutorial_says(results: list[tuple[str, subprocess.CompletedProcess[str]]]) -> None:
    assert len(results) == len(commands()) >= 8


def test_the_outcomes_the_prose_describes(results: list[tuple[str, subprocess.CompletedProcess[str]]]) -> None:
    unprotected = _output(results, "coldaisle sim run scenarios/tutorial-hung-allreduce.yaml")
    assert "energy burnt busy-waiting" in unprotected and "9 kWh" in unprotected
    default = _output(results, "coldaisle sim test default")
    assert "FAIL scenarios/tutorial-hung-allreduce.yaml: the hung job is stopped within 90 s" in default
    assert "PASS scenarios/tutorial-hung-allreduce.yaml: the node with the bad link is drained" in default
    mine = _output(results, "coldaisle sim test my-policy.yaml scenarios/tutorial-hung-allreduce.yaml runaway")
    assert mine.count("PASS") == 4 and "FAIL" not in mine
    assert "job pretrain stopped at +626 s" in mine
    triage = _output(results, "coldaisle triage logs")
    assert "trn-03" in triage
    top = _output(results, "coldaisle top")
    assert "coldaisle top trn-01" in top and "collective-hang" in top
