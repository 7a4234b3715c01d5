"""Real artifacts for preflight tests: shared objects compiled with gcc, wheels, a virtualenv, a host root."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from coldaisle.preflight import PreflightOptions, PreflightReport, run_preflight


def compile_so(out: Path, source: str = "int answer(void) { return 42; }\n", *, soname: str | None = None,
               flags: tuple[str, ...] = ()) -> Path:
    """Compile `source` into the shared object `out` with gcc (extra linker flags in `flags`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_name(out.name.replace(".", "_") + ".c")
    src.write_text(source)
    cmd = ["gcc", "-shared", "-fPIC", "-o", str(out), str(src)]
    if soname:
        cmd.append(f"-Wl,-soname,{soname}")
    subprocess.run([*cmd, *flags], check=True, capture_output=True)
    src.unlink()
    return out


@pytest.fixture
def so(tmp_path: Path) -> Callable[..., Path]:
    """compile_so bound to this test's temporary directory (paths are relative to it)."""
    return lambda rel, *a, **kw: compile_so(tmp_path / rel, *a, **kw)


def build_wheel(dest: Path, name: str, version: str, requires: tuple[str, ...] = (),
                files: dict[str, bytes] | None = None) -> Path:
    """A minimal valid wheel (METADATA, WHEEL, RECORD), written with zipfile: no build backend, no network."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    content = {f"{info}/METADATA": meta.encode(),
               f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: coldaisle-tests\nRoot-Is-Purelib: true\n"
                                b"Tag: py3-none-any\n",
               **(files or {})}
    record = ""
    for path, data in content.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\n"
    record += f"{info}/RECORD,,\n"
    dest.mkdir(parents=True, exist_ok=True)
    whl = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for path, data in content.items():
            z.writestr(path, data)
        z.writestr(f"{info}/RECORD", record)
    return whl


def make_venv(where: Path, wheels: list[Path]) -> Path:
    """A real virtual environment (python -m venv) with `wheels` installed by pip, offline; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, capture_output=True)
    py = where / "bin" / "python"
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index", "--no-deps",
                        "--quiet", "--disable-pip-version-check", *map(str, wheels)], check=True, capture_output=True)
    return py


def host_root(tmp: Path, files: dict[str, str]) -> Path:
    """A directory laid out like a host's / with the given files (captured formats)."""
    root = tmp / "host"
    for rel, text in files.items():
        p = root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    root.mkdir(parents=True, exist_ok=True)
    return root


def run(tmp_path: Path, **kw: object) -> PreflightReport:
    """run_preflight with a private cache, no GPU and no shipped site: only what the test sets."""
    kw.setdefault("backend", "none")
    kw.setdefault("cache_dir", tmp_path / "cache")
    kw.setdefault("env", {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")})
    return run_preflight(PreflightOptions(**kw))  # type: ignore[arg-type]


def ids(report: PreflightReport, check: str) -> list[tuple[str, str]]:
    """(severity, subject) of one check's findings."""
    return [(str(f.severity), f.subject) for f in report.findings if f.check == check]
