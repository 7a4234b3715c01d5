"""The Python distributions of an environment: this interpreter's, or another one's given by `--python`.

Another environment is read from its files (importlib.metadata over its site-packages), so no code of
that environment runs beyond asking its interpreter where its site-packages are. Broken metadata (a
missing or unreadable METADATA, a version that is not a version) becomes a note, never an exception.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from coldaisle.preflight.interface import PreflightError
from coldaisle.preflight.versions import normalize_name

_PATHS = "import json, sysconfig; p = sysconfig.get_paths(); print(json.dumps([p['purelib'], p['platlib']]))"


@dataclass(frozen=True, slots=True)
class Dist:
    """One installed distribution: canonical name, version text, requirements, where its files are."""

    name: str
    version: str
    requires: tuple[str, ...]
    location: Path

    def requirements(self) -> list[Requirement]:
        """Requires-Dist entries that parse (a malformed one is skipped)."""
        out = []
        for text in self.requires:
            try:
                out.append(Requirement(text))
            except InvalidRequirement:
                continue
        return out


def site_dirs(python: Path | None) -> list[Path]:
    """The site-packages of `python` (default: this interpreter), existing ones only, deduplicated."""
    if python is None:
        import sysconfig

        paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    else:
        paths = _ask_interpreter(python)
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def _ask_interpreter(python: Path) -> list[str]:
    """Run `python -I -c` (no shell, isolated mode) to learn its site-packages."""
    exe = python / "bin" / "python" if python.is_dir() else python
    try:
        done = subprocess.run([str(exe), "-I", "-c", _PATHS], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PreflightError(f"--python {python}: cannot run it ({exc})",
                             hint="give the environment's interpreter, e.g. /opt/venv/bin/python") from None
    if done.returncode != 0:
        raise PreflightError(f"--python {python}: it exited {done.returncode}: {done.stderr.strip()[:200]}")
    try:
        return [str(p) for p in json.loads(done.stdout)]
    except (ValueError, TypeError):
        raise PreflightError(f"--python {python}: unexpected answer {done.stdout[:200]!r}") from None


def distributions(dirs: list[Path]) -> tuple[dict[str, Dist], list[str]]:
    """name -> Dist for the distributions in `dirs` (first found wins, like the import system), and notes."""
    found: dict[str, Dist] = {}
    notes: list[str] = []
    for d in metadata.distributions(path=[str(p) for p in dirs]):
        where = Path(str(getattr(d, "_path", "?")))
        try:
            name, version = d.metadata["Name"], d.version
        except Exception as exc:  # a METADATA that cannot be read or parsed: note it and go on
            notes.append(f"{where}: unreadable package metadata ({type(exc).__name__}: {exc})")
            continue
        if not name or not version:
            notes.append(f"{where}: package metadata without a {'Name' if not name else 'Version'}")
            continue
        try:
            requires = tuple(d.requires or ())
        except Exception as exc:
            notes.append(f"{where}: unreadable Requires-Dist ({exc})")
            requires = ()
        key = normalize_name(name)
        found.setdefault(key, Dist(key, version, requires, where.parent))
    return found, notes


def current_python() -> Path:
    """This interpreter."""
    return Path(sys.executable)
