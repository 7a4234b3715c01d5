"""Shared test setup: hardware markers decide what runs here, never skips buried in test bodies."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def proc_tree() -> Path:
    """The captured /proc tree (see tests/data/actions/README.md), for every part that reads process facts."""
    return DATA / "actions" / "proc"


@pytest.fixture(autouse=True, scope="session")
def _protected_runs_audit_under_pytest_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A protected run given no audit path writes one in a new temporary folder, which it keeps (`sim run` prints
    it); in this process the tests' go under pytest's own temporary folder, which pytest prunes."""
    import functools
    import types

    import coldaisle.replay.protected as protected

    base = tmp_path_factory.mktemp("protected-audits")
    shim = types.SimpleNamespace(mkdtemp=functools.partial(tempfile.mkdtemp, dir=base))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(protected, "tempfile", shim)
        yield


@cache
def _gpu_absent_reason() -> str | None:
    """Why real-GPU tests cannot run on this host (None when an NVIDIA GPU answers through NVML)."""
    from coldaisle.errors import BackendUnavailable
    from coldaisle.telemetry.nvml import NvmlBackend

    try:
        NvmlBackend().close()
    except BackendUnavailable as exc:
        return exc.message
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` run only where a GPU is present, or fail loudly with COLDAISLE_REQUIRE_GPU=1."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items or os.environ.get("COLDAISLE_REQUIRE_GPU") == "1":
        return
    reason = _gpu_absent_reason()
    if reason is not None:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=f"gpu: {reason}"))


NOBODY = 65534
_CHILD = "COLDAISLE_TEST_UNPRIVILEGED"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Tests marked `unprivileged` check what a user who cannot read a file sees; root reads everything.

    Run as root (CI), such a test is run again, alone, as `nobody` (setpriv) in a child pytest, and fails here
    when it fails there; run as a normal user, it just runs. It never skips."""
    if pyfuncitem.get_closest_marker("unprivileged") is None or os.geteuid() != 0 or os.environ.get(_CHILD):
        return None
    base = Path(tempfile.mkdtemp(prefix="coldaisle-nobody-", dir="/tmp"))
    base.chmod(0o777)
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={base / 'pytest'}",
            pyfuncitem.nodeid]
    env = {**os.environ, _CHILD: "1", "HOME": str(base), "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run(argv, cwd=pyfuncitem.config.rootpath, env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    subprocess.run(["rm", "-rf", str(base)], check=False)
    assert r.returncode == 0 and " passed" in r.stdout, f"as uid {NOBODY}:\n{r.stdout}\n{r.stderr}"
    return True
