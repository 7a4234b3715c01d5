"""Environment settings, host limits from captured /proc and /sys files, and GPUs on the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldaisle.preflight.checks.env_nccl import ifname_matches
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.run import load_plan
from coldaisle.sim.twin import Twin

from .conftest import host_root, ids, run

HOT_SCENARIO = """\
name: preflight-hot
description: one node of two GPUs; the test heats the first
start: 2024-06-03T08:00:00Z
duration: 10 min
step: 1 s
seed: 1
card:
  model: h100-sxm-80gb
  slowdown: 90 C
  shutdown: 95 C
topology:
  gpus_per_node: 2
  node_name: "hot-{n:02d}"
facility:
  setpoint: 20 C
  row_cooling: 60 kW
"""


def test_ld_library_path_entries(tmp_path: Path) -> None:
    open_dir = tmp_path / "dropbox"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    env = {"LD_LIBRARY_PATH": f"{open_dir}::relative/lib:{tmp_path}/missing:/usr/lib", "HOME": "/nonexistent"}
    got = ids(run(tmp_path, env=env, only=["env.paths"]), "env.paths")
    assert got == [("fail", f"LD_LIBRARY_PATH[1]={open_dir}"), ("warn", "LD_LIBRARY_PATH[2]="),
                   ("warn", "LD_LIBRARY_PATH[3]=relative/lib"), ("warn", f"LD_LIBRARY_PATH[4]={tmp_path}/missing")]


def test_path_problems_are_one_step_milder(tmp_path: Path) -> None:
    got = ids(run(tmp_path, env={"PATH": "/usr/bin::bin"}, only=["env.paths"]), "env.paths")
    assert got == [("info", "PATH[2]="), ("info", "PATH[3]=bin")]


def test_settings_that_disable_nccl_error_handling(tmp_path: Path) -> None:
    env = {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "0", "TORCH_NCCL_ENABLE_MONITORING": "0",
           "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC": "86400", "NCCL_DEBUG": "verbose"}
    got = {f.subject: str(f.severity) for f in run(tmp_path, env=env, only=["env.nccl"]).findings}
    assert got == {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "fail", "TORCH_NCCL_ENABLE_MONITORING": "warn",
                   "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC": "warn", "NCCL_DEBUG": "warn"}
    default = {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "3", "NCCL_DEBUG": "WARN"}
    assert run(tmp_path, env=default, only=["env.nccl"]).findings == []


def test_socket_interface_that_does_not_exist_here(tmp_path: Path) -> None:
    root = host_root(tmp_path, {"/sys/class/net/lo/type": "772\n", "/sys/class/net/eth0/type": "1\n",
                                "/sys/class/net/ib0/type": "32\n"})
    bad = run(tmp_path, root=root, env={"NCCL_SOCKET_IFNAME": "bond1"}, only=["env.nccl"])
    assert ids(bad, "env.nccl") == [("fail", "NCCL_SOCKET_IFNAME")]
    for spec in ("eth", "=eth0", "^lo,docker", "ib0,bond"):
        assert run(tmp_path, root=root, env={"NCCL_SOCKET_IFNAME": spec}, only=["env.nccl"]).findings == []
    assert ifname_matches("=eth", ["eth0"]) == [] and ifname_matches("^eth,ib", ["lo", "eth0", "ib0"]) == []


def test_host_memory_swap_and_cpu_idle_from_captured_files(tmp_path: Path) -> None:
    root = host_root(tmp_path, {
        "/proc/self/limits": "Limit                     Soft Limit           Hard Limit           Units     \n"
                             "Max locked memory         8388608              8388608              bytes     \n",
        "/proc/meminfo": "MemTotal:       2113433600 kB\nSwapTotal:       8388604 kB\nSwapFree:        8388604 kB\n",
        "/sys/class/infiniband/mlx5_0/node_type": "1: CA\n",
        **{f"/sys/devices/system/cpu/cpu0/cpuidle/state{i}/{k}": v for i, (name, lat) in
           enumerate((("POLL", "0"), ("C1", "2"), ("C1E", "10"), ("C6", "170")))
           for k, v in (("name", name), ("latency", lat), ("disable", "0"))},
    })
    report = run(tmp_path, root=root, only=["host.memory", "host.cpuidle"])
    got = {f.subject: (str(f.severity), f.message) for f in report.findings}
    assert got["RLIMIT_MEMLOCK"][0] == "warn" and "mlx5_0" in got["RLIMIT_MEMLOCK"][1]
    assert got["swap"][0] == "warn" and "8191 MiB" in got["swap"][1]
    assert got["cpuidle"] == ("warn", "deep idle states are enabled: C6 (170 us)")
    unlimited = host_root(tmp_path / "u", {
        "/proc/self/limits": "Max locked memory         unlimited            unlimited            bytes     \n",
        "/proc/meminfo": "SwapTotal:             0 kB\n"})
    assert run(tmp_path, root=unlimited, only=["host.memory"]).findings == []


def test_free_disk_for_checkpoints(tmp_path: Path) -> None:
    huge = run(tmp_path, checkpoint_dir=tmp_path, min_free_disk_bytes=1e18, only=["host.disk"])
    assert ids(huge, "host.disk") == [("fail", str(tmp_path))]
    assert run(tmp_path, checkpoint_dir=tmp_path, min_free_disk_bytes=1, only=["host.disk"]).findings == []
    gone = run(tmp_path, checkpoint_dir=tmp_path / "nope", only=["host.disk"])
    assert ids(gone, "host.disk") == [("fail", str(tmp_path / "nope"))]


@pytest.fixture
def hot(tmp_path: Path) -> tuple[Twin, SimBackend]:
    """The simulator with slowdown at 90 C; the first GPU at 88 C."""
    path = tmp_path / "hot.yaml"
    path.write_text(HOT_SCENARIO)
    twin = Twin(load_plan(str(path)))
    twin.state.temp_c[0] = 88.0
    return twin, SimBackend(twin)


def test_gpu_at_88_c_with_slowdown_at_90_c_fails_headroom(tmp_path: Path, hot: tuple[Twin, SimBackend]) -> None:
    _, backend = hot
    report = run(tmp_path, backend_obj=backend, only=["gpu"])
    (finding,) = [f for f in report.findings if f.check == "gpu.thermal"]
    assert finding.severity == "fail" and finding.subject.startswith("hot-01 GPU 0 ")
    assert (finding.details["temperature_c"], finding.details["slowdown_c"]) == (88.0, 90.0)
    assert report.failed and report.exit_code() == 2


def test_cool_gpus_pass_and_warm_ones_warn(tmp_path: Path, hot: tuple[Twin, SimBackend]) -> None:
    twin, backend = hot
    twin.state.temp_c[0] = 40.0
    assert run(tmp_path, backend_obj=backend, only=["gpu"]).findings == []
    twin.state.temp_c[1] = 82.0  # 8 K of headroom: under 10 warns, over 5 does not fail
    uuid = backend.devices()[1].uuid
    assert ids(run(tmp_path, backend_obj=backend, only=["gpu.thermal"]), "gpu.thermal") == [
        ("warn", f"hot-01 GPU 1 (NVIDIA H100 80GB HBM3, {uuid})")]


def test_gpu_count_lost_gpu_and_lowered_power_limit(tmp_path: Path, hot: tuple[Twin, SimBackend]) -> None:
    twin, backend = hot
    twin.state.temp_c[0] = 40.0
    backend.set_power_limit(1, 500.0)
    twin.state.lost[0] = True
    twin.state.touch("lost")  # the twin's contract for direct writes: its views copy a touched array again
    report = run(tmp_path, backend_obj=backend, expected_gpus=8, only=["gpu.health"])
    got = sorted((str(f.severity), f.subject.split(" (")[0], f.message.split(" ")[0]) for f in report.findings)
    assert got == [("fail", "GPU count", "2"), ("fail", "hot-01 GPU 0", "the"), ("warn", "hot-01 GPU 1", "power")]


def test_sim_backend_by_name_and_no_backend(tmp_path: Path) -> None:
    by_name = run(tmp_path, backend="sim", scenario="healthy-training", node="train-01", only=["gpu"])
    assert [c.status for c in by_name.checks] == ["ran", "ran"] and by_name.findings == []
    none = run(tmp_path, backend="none", only=["gpu"])
    assert [c.status for c in none.checks] == ["skipped", "skipped"] and not none.failed


def test_pending_or_failed_row_remaps_fail_the_gpu(tmp_path: Path, hot: tuple[Twin, SimBackend]) -> None:
    """A remap waiting for a reset, or one that failed, makes the GPU a bad place for the next job."""
    twin, backend = hot
    twin.state.temp_c[0] = 40.0
    twin.state.remap_pending[0] = 1.0
    twin.state.remap_failed[1] = 1.0
    twin.state.touch("remap_pending", "remap_failed")
    report = run(tmp_path, backend_obj=backend, only=["gpu.health"])
    got = sorted((str(f.severity), f.subject.split(" (")[0], f.message.split(":")[0]) for f in report.findings)
    assert got == [("fail", "hot-01 GPU 0", "a row remapping is pending"),
                   ("fail", "hot-01 GPU 1", "a row remapping has failed")]
    assert "nvidia-smi -r -i 0" in next(f.fix for f in report.findings if "pending" in f.message)
    twin.state.remap_pending[0] = twin.state.remap_failed[1] = 0.0
    twin.state.touch("remap_pending", "remap_failed")
    assert run(tmp_path, backend_obj=backend, only=["gpu.health"]).findings == []


def test_persistence_mode_off_warns(tmp_path: Path, hot: tuple[Twin, SimBackend]) -> None:
    import dataclasses

    twin, _ = hot
    twin.state.temp_c[0] = 40.0

    class NoPersistenced(SimBackend):
        """The same node with nvidia-persistenced not running on GPU 1."""

        def devices(self):  # type: ignore[no-untyped-def]
            devs = super().devices()
            return (devs[0], dataclasses.replace(devs[1], persistence_mode=False))

    report = run(tmp_path, backend_obj=NoPersistenced(twin), only=["gpu.health"])
    assert [(str(f.severity), f.subject.split(" (")[0]) for f in report.findings] == [("warn", "hot-01 GPU 1")]
    assert "persistence mode is off" in report.findings[0].message
