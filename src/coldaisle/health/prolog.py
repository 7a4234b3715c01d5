"""`coldaisle slurm prolog`: refuse a job before it starts, in the context Slurm runs us in.

- As **PrologSlurmctld** (`SLURM_SCRIPT_CONTEXT=prolog_slurmctld`): the plan gate. A job names its plan
  with `--comment coldaisle-plan=PATH`; a plan that does not fit (or cannot be read) refuses the job: the
  reason goes to the job's AdminComment and the job is cancelled. We cancel rather than exit non-zero,
  because a failing PrologSlurmctld requeues a batch job, which would be refused again every two minutes.
- As the node **Prolog** (`prolog_slurmd`): preflight's GPU checks for the job's GPUs. A failure is the
  node's fault: we drain the node with a reason tagged `coldaisle: prolog:` and exit 1, and Slurm requeues
  the job (with `SchedulerParameters=nohold_on_prolog_fail` it goes back to the queue for another node).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldaisle.actions.drain import SlurmDrain
from coldaisle.errors import ColdaisleError
from coldaisle.health.slurm import SlurmJobs, node_name

PLAN_KEY = "coldaisle-plan"
_GPU_SUBJECT = re.compile(r"\bGPU (\d+)\b")


@dataclass
class PrologOptions:
    """Everything `coldaisle slurm prolog` takes."""

    stage: str = "auto"  # auto (from SLURM_SCRIPT_CONTEXT), ctld, node
    site: str | None = None  # site file or name for the power half of the plan gate
    power_w: float | None = None
    backend: str = "auto"  # node stage: auto, nvml, sim
    scenario: str = "healthy-training"
    sim_node: str | None = None
    node: str | None = None
    dry_run: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass(frozen=True, slots=True)
class PrologResult:
    """Exit code for Slurm and the lines to print."""

    exit_code: int
    lines: tuple[str, ...]


def stage_of(o: PrologOptions) -> str:
    """ctld or node, from --stage or Slurm's SLURM_SCRIPT_CONTEXT."""
    if o.stage != "auto":
        return o.stage
    ctx = o.env.get("SLURM_SCRIPT_CONTEXT", "")
    if ctx == "prolog_slurmctld":
        return "ctld"
    if ctx == "prolog_slurmd":
        return "node"
    raise ColdaisleError(f"cannot tell where this prolog runs (SLURM_SCRIPT_CONTEXT={ctx!r})",
                         hint="pass --stage ctld (PrologSlurmctld) or --stage node (Prolog)", exit_code=2)


def plan_path(comment: str, work_dir: str) -> Path | None:
    """The plan named by `coldaisle-plan=PATH` in the job's comment (relative to its working directory)."""
    try:
        words = shlex.split(comment)
    except ValueError:
        words = comment.split()
    for w in words:
        key, eq, value = w.partition("=")
        if eq and key == PLAN_KEY and value:
            p = Path(value)
            return p if p.is_absolute() or not work_dir else Path(work_dir) / p
    return None


def _owned_by_job(path: Path, uid: str) -> str | None:
    """Why the prolog (running as root) must not read `path` for this job, or None when it may."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"cannot read the plan {path}: {exc.strerror}"
    if uid.isdigit() and st.st_uid != int(uid) and not st.st_mode & 0o004:
        return f"the plan {path} is neither the job owner's nor world-readable"
    return None


def ctld_stage(o: PrologOptions, jobs: SlurmJobs) -> PrologResult:
    """The plan gate: nothing to do without a plan; a misfit is refused and the job cancelled."""
    from coldaisle.plan.gate import require_fit

    job = o.env.get("SLURM_JOB_ID", "")
    comment, work_dir = o.env.get("SLURM_JOB_COMMENT"), o.env.get("SLURM_JOB_WORK_DIR", "")
    if comment is None and job:
        rec = jobs.show(job)
        comment, work_dir = rec.get("Comment", ""), work_dir or rec.get("WorkDir", "")
    plan = plan_path(comment or "", work_dir)
    if plan is None:
        return PrologResult(0, (f"job {job}: no {PLAN_KEY}= in its comment; plan gate skipped",))
    why = _owned_by_job(plan, o.env.get("SLURM_JOB_UID", ""))
    if why is None:
        try:
            require_fit(plan, o.site, o.power_w)
            return PrologResult(0, (f"job {job}: plan {plan} fits",))
        except ColdaisleError as exc:
            why = exc.message
    return _refuse(job, f"coldaisle: refused: {why}", jobs, o.dry_run)


def _refuse(job: str, text: str, jobs: SlurmJobs, dry_run: bool) -> PrologResult:
    if dry_run or not job:
        return PrologResult(0, (text, f"job {job}: dry run, not cancelled"))
    jobs.annotate(job, text)
    ok, detail = jobs.cancel(job)
    if ok:
        return PrologResult(0, (text, f"job {job} cancelled"))
    return PrologResult(1, (text, f"could not cancel job {job} ({detail}); failing the prolog instead"))


def job_gpus(env: Mapping[str, str]) -> set[int] | None:
    """The GPU indices Slurm gave the job (SLURM_JOB_GPUS, else CUDA_VISIBLE_DEVICES); None: not said."""
    raw = env.get("SLURM_JOB_GPUS") or env.get("CUDA_VISIBLE_DEVICES")
    if not raw:
        return None
    return {int(x) for x in raw.split(",") if x.strip().isdigit()}


def node_stage(o: PrologOptions, drain: SlurmDrain) -> PrologResult:
    """Preflight's GPU checks; failures on the job's GPUs drain the node and fail the prolog."""
    from coldaisle.preflight.context import PreflightOptions
    from coldaisle.preflight.interface import CheckSeverity
    from coldaisle.preflight.runner import run_preflight

    report = run_preflight(PreflightOptions(only=["gpu"], backend=o.backend, scenario=o.scenario, node=o.sim_node,
                                   env=o.env, advisories=[], shipped_advisories=False))
    mine = job_gpus(o.env)
    fails = [f for f in report.findings if f.severity == CheckSeverity.FAIL and _concerns(f, mine)]
    job = o.env.get("SLURM_JOB_ID", "")
    if not fails:
        return PrologResult(0, (f"job {job}: preflight passed on {len(report.checks)} GPU checks",))
    text = "; ".join(f"{f.check}: {_short(f)}" for f in fails)
    status, detail = drain.drain(node_name(o.node, o.env), f"prolog: {text}", dry_run=o.dry_run)
    return PrologResult(1, (f"job {job}: refused on this node: {text}", f"slurm: {status}: {detail}"))


def _concerns(finding: Any, gpus: set[int] | None) -> bool:
    if gpus is None:
        return True
    m = _GPU_SUBJECT.search(finding.subject or "")
    return m is None or int(m.group(1)) in gpus  # a node-wide finding concerns every job


def _short(finding: Any) -> str:
    m = _GPU_SUBJECT.search(finding.subject or "")
    return (f"gpu{m.group(1)} " if m else "") + finding.message


def run_prolog(o: PrologOptions, *, jobs: SlurmJobs | None = None, drain: SlurmDrain | None = None) -> PrologResult:
    """Run the stage Slurm called us for."""
    if stage_of(o) == "ctld":
        return ctld_stage(o, jobs or SlurmJobs())
    return node_stage(o, drain or SlurmDrain())
