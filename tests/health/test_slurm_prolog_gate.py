"""The prolog's pieces without a cluster: where the plan is, which stage runs, whose GPUs, what is refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from coldaisle.actions.drain import SlurmDrain
from coldaisle.errors import ColdaisleError
from coldaisle.health.prolog import PrologOptions, ctld_stage, job_gpus, node_stage, plan_path, stage_of
from coldaisle.health.slurm import SlurmJobs

DATA = Path(__file__).parent / "data"
SMALL_JOB = "model: llama-2-7b\ngpu: h100-sxm-80gb\ngpus: 1\ncontext: 4096\ndtype: bf16\n"
SHOW_IDLE = ("NodeName=gpu-node-01 Arch=x86_64 CoresPerSocket=1 CPUAlloc=0 State=IDLE ThreadsPerCore=1 "
             "Partitions=debug\n")


class RecordingJobs(SlurmJobs):
    """SlurmJobs whose scontrol/scancel calls are recorded instead of sent (a cluster-free stand-in)."""

    def __init__(self) -> None:
        super().__init__(runner=self._slurm)
        self.calls: list[list[str]] = []

    def _slurm(self, argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")


class RecordingDrain(SlurmDrain):
    """SlurmDrain over a recorded scontrol that shows an idle node."""

    def __init__(self) -> None:
        super().__init__(runner=self._scontrol)
        self.calls: list[list[str]] = []

    def _scontrol(self, argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, SHOW_IDLE if argv[1] == "show" else "", "")


@pytest.mark.parametrize(("comment", "work", "want"), [
    ("coldaisle-plan=job.yaml", "/home/alice/run", "/home/alice/run/job.yaml"),
    ("ticket 12 coldaisle-plan=/shared/plans/llama.yaml", "/x", "/shared/plans/llama.yaml"),
    ("'coldaisle-plan=/shared/my plans/a.yaml' other=1", "", "/shared/my plans/a.yaml"),
    ("coldaisle-plan= nothing", "/x", None),
    ("just a comment", "/x", None),
    ("unbalanced 'quote coldaisle-plan=/p.yaml", "", "/p.yaml"),
])
def test_the_plan_is_named_in_the_job_comment(comment: str, work: str, want: str | None) -> None:
    got = plan_path(comment, work)
    assert (str(got) if got else None) == want


def test_stage_follows_slurm_s_script_context() -> None:
    assert stage_of(PrologOptions(env={"SLURM_SCRIPT_CONTEXT": "prolog_slurmctld"})) == "ctld"
    assert stage_of(PrologOptions(env={"SLURM_SCRIPT_CONTEXT": "prolog_slurmd"})) == "node"
    assert stage_of(PrologOptions(stage="node", env={})) == "node"
    with pytest.raises(ColdaisleError) as exc:
        stage_of(PrologOptions(env={"SLURM_SCRIPT_CONTEXT": "epilog_slurmd"}))
    assert exc.value.exit_code == 2 and "--stage" in (exc.value.hint or "")


def test_the_job_s_gpus() -> None:
    assert job_gpus({"SLURM_JOB_GPUS": "0,2"}) == {0, 2}
    assert job_gpus({"CUDA_VISIBLE_DEVICES": "1"}) == {1}
    assert job_gpus({}) is None


def _ctld(tmp_path: Path, plan_text: str, *, uid: str = "0", mode: int = 0o644, dry: bool = False) -> tuple:
    plan = tmp_path / "job.yaml"
    plan.write_text(plan_text)
    plan.chmod(mode)
    jobs = RecordingJobs()
    env = {"SLURM_JOB_ID": "77", "SLURM_JOB_COMMENT": "coldaisle-plan=job.yaml", "SLURM_JOB_WORK_DIR": str(tmp_path),
           "SLURM_JOB_UID": uid}
    return ctld_stage(PrologOptions(env=env, dry_run=dry), jobs), jobs


def test_a_plan_that_fits_passes(tmp_path: Path) -> None:
    result, jobs = _ctld(tmp_path, SMALL_JOB)
    assert result.exit_code == 0 and jobs.calls == [] and "fits" in result.lines[0]


def test_a_broken_plan_is_refused_with_file_line_and_field(tmp_path: Path) -> None:
    result, jobs = _ctld(tmp_path, SMALL_JOB + "tensor_paralel: 8\n")
    assert result.exit_code == 0 and result.lines[-1] == "job 77 cancelled"
    comment = jobs.calls[0][-1]
    assert comment.startswith("AdminComment=coldaisle: refused: ") and "tensor_paralel" in comment, comment
    assert f"{tmp_path / 'job.yaml'}:6" in comment
    assert jobs.calls[1] == ["scancel", "77"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a file the job's user cannot read")
def test_root_does_not_read_a_plan_the_job_s_user_could_not(tmp_path: Path) -> None:
    result, jobs = _ctld(tmp_path, SMALL_JOB, uid="1000", mode=0o600)
    assert "neither the job owner's nor world-readable" in result.lines[0]
    assert jobs.calls[1] == ["scancel", "77"]


def test_dry_run_refuses_nothing(tmp_path: Path) -> None:
    result, jobs = _ctld(tmp_path, SMALL_JOB.replace("gpus: 1", "gpus: 1\ncontext: 9000000"), dry=True)
    assert result.exit_code == 0 and jobs.calls == [] and "dry run, not cancelled" in result.lines[-1]


def test_node_stage_checks_only_the_job_s_gpus_and_drains_for_them() -> None:
    env = {"SLURM_JOB_ID": "5", "SLURM_JOB_GPUS": "1", "SLURMD_NODENAME": "gpu-node-01"}
    drain = RecordingDrain()
    result = node_stage(PrologOptions(backend="sim", scenario=str(DATA / "hot-aisle.yaml"), sim_node="gpu-node-01",
                                      env=env), drain)
    assert result.exit_code == 1 and "gpu1 89 C" in result.lines[0] and "gpu0" not in result.lines[0]
    update = drain.calls[-1]
    assert update[:4] == ["scontrol", "update", "NodeName=gpu-node-01", "State=DRAIN"]
    assert update[4].startswith("Reason=coldaisle: prolog: gpu.thermal: gpu1 89 C")

    healthy = node_stage(PrologOptions(backend="sim", scenario=str(DATA / "healthy-node.yaml"),
                                       sim_node="gpu-node-01", env=env), RecordingDrain())
    assert healthy.exit_code == 0 and "preflight passed" in healthy.lines[0]
