"""Stack consistency: duplicate libraries, torch vs driver / wheels / triton, a live process, fabric manager."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import build_wheel, host_root, ids, make_venv, run

NCCL_SRC = "const char *ncclGetVersionString(void) {{ return \"{v}\"; }}\n"
LINUX_X86 = "; platform_system == 'Linux' and platform_machine == 'x86_64'"


def _two_nccls(so, a: str = "2.20.5", b: str = "2.18.3"):  # type: ignore[no-untyped-def]
    first = so("userA/lib/libnccl.so.2", NCCL_SRC.format(v=a), soname="libnccl.so.2")
    second = so("shared/nccl/libnccl.so.2", NCCL_SRC.format(v=b), soname="libnccl.so.2")
    return first, second


def test_two_different_libnccl_copies_on_ld_library_path_fail(tmp_path: Path, so) -> None:  # type: ignore[no-untyped-def]
    first, second = _two_nccls(so)
    env = {"LD_LIBRARY_PATH": f"{first.parent}:{second.parent}"}
    report = run(tmp_path, env=env, only=["stack.duplicate-libs"])
    (finding,) = report.findings
    assert (finding.severity, finding.subject) == ("fail", "libnccl.so.2")
    assert finding.details["loaded_by_default"] == str(first)
    assert sorted(finding.details["copies"]) == sorted([str(first), str(second)])


def test_identical_copies_or_a_single_copy_do_not(tmp_path: Path, so) -> None:  # type: ignore[no-untyped-def]
    first, _ = _two_nccls(so, "2.20.5", "2.20.5")  # same source, same flags: byte-identical objects
    same = run(tmp_path, env={"LD_LIBRARY_PATH": f"{first.parent}:{tmp_path}/shared/nccl"},
               only=["stack.duplicate-libs"])
    assert same.findings == []
    assert run(tmp_path, env={"LD_LIBRARY_PATH": str(first.parent)}, only=["stack.duplicate-libs"]).findings == []


def test_a_running_process_with_two_nccls_loaded(tmp_path: Path, so) -> None:  # type: ignore[no-untyped-def]
    first, second = _two_nccls(so)
    code = ("import ctypes, sys; ctypes.CDLL(sys.argv[1]); ctypes.CDLL(sys.argv[2]); print('ready', flush=True); "
            "sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(first), str(second)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        report = run(tmp_path, pid=proc.pid, only=["stack.loaded-libs"])
    finally:
        proc.communicate("", timeout=10)
    fails = [f for f in report.findings if f.severity == "fail"]
    assert [f.subject for f in fails] == ["libnccl.so.2"]
    assert set(fails[0].details["copies"]) == {str(first), str(second)}
    # both libraries live under /tmp (pytest's tmp_path): that is worth a warning of its own
    assert {f.subject for f in report.findings if f.severity == "warn"} == {str(first), str(second)}


def test_unreadable_pid_is_a_usage_error(tmp_path: Path) -> None:
    from coldaisle.preflight import PreflightError

    with pytest.raises(PreflightError) as err:
        run(tmp_path, pid=2**22 + 12345, only=["stack.loaded-libs"])
    assert err.value.exit_code == 3


@pytest.fixture(scope="module")
def torch_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with a fake CUDA torch (real metadata shape) and wheels that disagree with its pins."""
    base = tmp_path_factory.mktemp("torchvenv")
    wheels = [
        build_wheel(base / "w", "torch", "2.3.0+cu121",
                    requires=(f"nvidia-nccl-cu12==2.20.5{LINUX_X86}", f"nvidia-cudnn-cu12==8.9.2.26{LINUX_X86}",
                              f"triton==2.3.0{LINUX_X86}", "sympy"),
                    files={"torch/version.py": b"from typing import Optional\n__version__ = '2.3.0+cu121'\n"
                                               b"cuda: Optional[str] = '12.1'\n"}),
        build_wheel(base / "w", "nvidia-nccl-cu12", "2.21.5"),
        build_wheel(base / "w", "triton", "2.2.0"),
    ]
    return make_venv(base / "venv", wheels)


@pytest.mark.skipif(platform.machine() != "x86_64" or sys.platform != "linux",
                    reason="the fake torch pins its CUDA wheels for Linux x86_64, like the real one")
def test_torch_pins_against_installed_wheels_and_triton(tmp_path: Path, torch_venv: Path) -> None:
    report = run(tmp_path, python=torch_venv, only=["stack"])
    wheels = {f.subject: str(f.severity) for f in report.findings if f.check == "stack.torch-wheels"}
    assert wheels == {"nvidia-cudnn-cu12": "fail", "nvidia-nccl-cu12==2.21.5": "warn"}
    assert ids(report, "stack.triton") == [("fail", "triton==2.2.0")]


@pytest.mark.parametrize(("driver", "expected"), [("520.61.05", "fail"), ("525.85.12", "warn"),
                                                  ("535.104.05", None)])
def test_torch_cuda_build_against_the_driver(tmp_path: Path, torch_venv: Path, driver: str,
                                             expected: str | None) -> None:
    root = host_root(tmp_path, {"/proc/driver/nvidia/version":
                                f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  Sat Aug 19 2023\n"})
    report = run(tmp_path, python=torch_venv, root=root, only=["stack.torch-cuda"])
    assert [str(f.severity) for f in report.findings] == ([expected] if expected else [])


def test_fabric_manager_must_match_the_driver(tmp_path: Path) -> None:
    status = ("Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n\n"
              "Package: nvidia-fabricmanager-535\nStatus: install ok installed\nArchitecture: amd64\n"
              "Version: 535.129.03-1\n")
    driver = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {}  Sat Aug 19 2023\n"
    bad = host_root(tmp_path / "a", {"/var/lib/dpkg/status": status,
                                     "/proc/driver/nvidia/version": driver.format("535.104.05")})
    (finding,) = run(tmp_path, root=bad, only=["stack.fabric-manager"]).findings
    assert finding.severity == "fail" and "535.129.03" in finding.message and "535.104.05" in finding.message
    good = host_root(tmp_path / "b", {"/var/lib/dpkg/status": status,
                                      "/proc/driver/nvidia/version": driver.format("535.129.03")})
    assert run(tmp_path, root=good, only=["stack.fabric-manager"]).findings == []
    none = run(tmp_path, root=host_root(tmp_path / "c", {}), only=["stack.fabric-manager"])
    assert none.checks[0].status == "skipped"
