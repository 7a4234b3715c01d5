"""Job attribution on captured /proc/PID/{stat,cgroup,environ}: Slurm cgroup v1/v2, environ, Kubernetes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from coldaisle.agent.jobs import JobRef, JobResolver, parse_cgroup

PROC = Path(__file__).resolve().parent.parent / "data" / "agent" / "proc"


@pytest.mark.parametrize(("pid", "job", "pod"), [
    (4242, "4242", None),  # Slurm cgroup v2 (slurmstepd.scope)
    (5151, "5151", None),  # Slurm cgroup v1 (/slurm/uid_1000/job_5151)
    (6161, None, "8f4e9c2a-1b3d-4e5f-9a7b-2c6d8e0f1a3b"),  # kubelet systemd driver: underscores -> dashes
    (7171, None, "0b7f6e5d-4c3b-2a19-8f7e-6d5c4b3a2918"),  # kubelet cgroupfs driver, cgroup v1
    (8181, "8181", None),  # Slurm without the cgroup plugin: SLURM_JOB_ID from environ
    (9191, None, None),  # an interactive process
])
def test_resolver_on_captured_processes(pid: int, job: str | None, pod: str | None) -> None:
    ref = JobResolver(PROC).resolve(pid)
    assert ref is not None
    assert (ref.slurm_job, ref.pod_uid) == (job, pod)


def test_cgroup_path_is_the_one_that_named_the_job() -> None:
    ref = parse_cgroup((PROC / "5151" / "cgroup").read_text())
    assert ref.cgroup.startswith("/slurm/uid_1000/job_5151/step_0")
    v2 = parse_cgroup((PROC / "4242" / "cgroup").read_text())
    assert v2.cgroup == "/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0"


def test_parse_cgroup_edge_cases() -> None:
    assert parse_cgroup("") == JobRef(None, None, "")
    assert parse_cgroup("0::/\n") == JobRef(None, None, "/")
    # job_ outside a Slurm hierarchy is not a Slurm job
    assert parse_cgroup("0::/system.slice/job_12.service\n").slurm_job is None
    assert parse_cgroup("0::/slurm/uid_0/job_77\n").slurm_job == "77"
    guaranteed = "0::/kubepods.slice/kubepods-pod0b7f6e5d_4c3b_2a19_8f7e_6d5c4b3a2918.slice/cri-o-1.scope\n"
    assert parse_cgroup(guaranteed).pod_uid == "0b7f6e5d-4c3b-2a19-8f7e-6d5c4b3a2918"


def test_resolver_caches_by_pid_and_start_time(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    shutil.copytree(PROC, root)
    resolver = JobResolver(root)
    assert resolver.resolve(4242).slurm_job == "4242"  # type: ignore[union-attr]
    (root / "4242" / "cgroup").write_text("0::/slurm/uid_1/job_9999/step_0\n")
    assert resolver.resolve(4242).slurm_job == "4242"  # type: ignore[union-attr]  # cached: same process
    stat = (root / "4242" / "stat").read_text().replace(f" {183921 + 4242} ", " 999999 ")
    (root / "4242" / "stat").write_text(stat)  # pid reused by a new process
    assert resolver.resolve(4242).slurm_job == "9999"  # type: ignore[union-attr]


def test_resolver_evicts_ended_pids(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    shutil.copytree(PROC, root)
    resolver = JobResolver(root)
    jobs = resolver.resolve_all([4242, 5151, 6161])
    assert set(jobs) == {4242, 5151, 6161} and resolver.cached_pids() == {4242, 5151, 6161}
    shutil.rmtree(root / "5151")  # the process ended
    jobs = resolver.resolve_all([4242, 5151])
    assert set(jobs) == {4242} and resolver.cached_pids() == {4242}
    assert resolver.resolve(31337) is None


def test_resolver_on_this_machine() -> None:
    import os

    ref = JobResolver().resolve(os.getpid())
    assert ref is not None and ref.cgroup.startswith("/")


def test_the_agent_reads_a_supervised_jobs_heartbeat_as_progress_age_and_latency(tmp_path: Path) -> None:
    """A real process launched the way `coldaisle run` launches one (COLDAISLE_HEARTBEAT, in a Slurm job)."""
    import os
    import subprocess
    import sys
    import time

    import numpy as np

    from coldaisle.agent.procjobs import ProcJobs
    from coldaisle.guard.straggler import RankScore, write_scores
    from coldaisle.telemetry.frame import DeviceInfo, Frame, ProcessRows

    hb = tmp_path / "hb"
    hb.mkdir()
    job = ("import coldaisle, time\n"
           "for s in (0.1, 0.2, 0.4):\n    coldaisle.latency(s)\n"
           "coldaisle.progress(step=7)\nprint('ready', flush=True)\ntime.sleep(30)\n")
    env = {**os.environ, "COLDAISLE_HEARTBEAT": str(hb), "SLURM_JOB_ID": "4242", "RANK": "0"}
    proc = subprocess.Popen([sys.executable, "-c", job], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        dev = DeviceInfo("n1", 0, "GPU-x", "H100", 80 << 30, 700.0, 700.0, 200.0, 87.0, 92.0)
        kw = Frame.blank((dev,), time.time(), time.monotonic())
        kw["processes"] = ProcessRows(np.array([0], np.int32), np.array([proc.pid], np.int64), np.array([1e9]))
        write_scores(hb, [RankScore(0, 0.0, 0.3, 0.5, "n1", "0"), RankScore(1, 0.4, 0.5, 0.5, "n1", "1")], [1],
                     time.time())  # what `coldaisle run` publishes beside the heartbeats
        source = ProcJobs()
        jobs = source.jobs(Frame(**kw))  # type: ignore[arg-type]
        assert list(jobs.names) == ["slurm:4242"]
        assert float(jobs.values["job_straggler_score"][0]) == 0.4  # the slowest rank's, as a rule input
        assert [(r.rank, r.score) for r in source.last_ranks["slurm:4242"]] == [(0, 0.0), (1, 0.4)]
        age = float(jobs.values["job_progress_age_s"][0])
        assert 0.2 <= age < 10
        assert float(jobs.values["job_latency_p99_s"][0]) == pytest.approx(0.4, rel=0.05)
        assert float(jobs.values["job_latency_p50_s"][0]) == pytest.approx(0.2, rel=0.05)
    finally:
        proc.kill()
        proc.wait()
