"""coldaisle as Slurm runs it: HealthCheckProgram, PrologSlurmctld, Prolog and Epilog on a real single-node Slurm."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coldaisle.agent.state import read_state

DATA = Path(__file__).parent / "data"

pytestmark = pytest.mark.slurm

PERSON = "disk swap, ticket 4711 (alice)"
INCIDENT_JOB = "model: megatron-1t\ngpu: h100-pcie-80gb\ngpus: 512\npp: 32\ncontext: 100000\ndtype: fp16\n"
SMALL_JOB = "model: llama-2-7b\ngpu: h100-sxm-80gb\ngpus: 1\ncontext: 4096\ndtype: bf16\n"


@pytest.fixture
def cluster(slurm_node: Any, hooks: Any) -> Iterator[Any]:
    """The idle node, every hook a no-op again afterwards (and no job left behind)."""
    yield slurm_node
    hooks.reset(slurm_node)
    slurm_node.run("scancel", "--user=root", check=False)


def _wait(what: str, predicate: Callable[[], Any], timeout: float, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout:g} s" + (f"\n{log.read_text()}" if log else ""))
        time.sleep(0.1)
    return value


def _runs(log: Path) -> int:
    return log.read_text().count("--- healthcheck") if log.exists() else 0


def _reason(cluster: Any) -> str:
    return cluster.show_node().get("Reason", "").split(" [", 1)[0]


def test_health_check_drains_a_node_whose_gpu_is_lost_within_60_s(cluster: Any, hooks: Any, sim_agent: Any,
                                                                   tmp_path: Path) -> None:
    agent = sim_agent("gpu-lost.yaml", speed=5.0)  # GPU 1 falls off the bus 20 simulated s in (~4 s here)
    log = tmp_path / "hooks.log"
    hooks.install(cluster, "healthcheck", "health", "--slurm", "--state", str(agent.state), log=log)
    _wait("two health checks", lambda: _runs(log) >= 2, 15, log)
    assert "OK: all GPUs healthy" in log.read_text()
    assert cluster.show_node()["State"] == "IDLE"  # healthy: slurmd ran us and nothing was drained

    lost_at = _wait("the agent seeing GPU 1 lost",
                    lambda: next((s.written_at for s in [read_state(agent.state)] if s.gpus[1].lost), None), 30)
    info = cluster.wait_node(lambda i: "DRAIN" in i.get("State", ""), "drained by health", timeout=60)
    drained_in = time.time() - lost_at
    assert drained_in < 60, drained_in
    assert info["Reason"].startswith("coldaisle: health: gpu1 lost (fell off the bus or stopped answering)"), info
    assert "Xid 79" in info["Reason"]
    # the check prints once its drain stands (the fleet breaker re-reads Slurm 2 s after draining)
    _wait("the CRITICAL verdict in the hook's log", lambda: "CRITICAL: gpu1 lost" in log.read_text(), 15, log)


def test_a_person_s_drain_is_never_resumed_or_overwritten(cluster: Any, hooks: Any, sim_agent: Any,
                                                          tmp_path: Path) -> None:
    cluster.scontrol("update", f"NodeName={cluster.node}", "State=DRAIN", f"Reason={PERSON}")
    healthy = sim_agent("healthy-node.yaml", name="healthy")
    log = tmp_path / "hooks.log"
    hooks.install(cluster, "healthcheck", "health", "--slurm", "--state", str(healthy.state), log=log)
    _wait("two OK health checks", lambda: log.read_text().count("OK: all GPUs healthy") >= 3
          if log.exists() else False, 20, log)
    assert "DRAIN" in cluster.show_node()["State"] and _reason(cluster) == PERSON  # OK does not resume a person

    lost = sim_agent("gpu-lost.yaml", speed=8.0, name="lost")
    hooks.install(cluster, "healthcheck", "health", "--slurm", "--state", str(lost.state), log=log)
    _wait("a CRITICAL health check", lambda: "already drained by a person" in log.read_text(), 30, log)
    assert _reason(cluster) == PERSON  # CRITICAL does not overwrite a person's reason either


def test_health_resumes_only_its_own_drain(cluster: Any, hooks: Any, sim_agent: Any, tmp_path: Path) -> None:
    cluster.scontrol("update", f"NodeName={cluster.node}", "State=DRAIN",
                     "Reason=coldaisle: health: gpu1 lost (fell off the bus or stopped answering)")
    healthy = sim_agent("healthy-node.yaml")
    log = tmp_path / "hooks.log"
    hooks.install(cluster, "healthcheck", "health", "--slurm", "--state", str(healthy.state), log=log)
    cluster.wait_idle(timeout=20)
    assert "resumed" in log.read_text()


def _job(cluster: Any, job_id: str) -> dict[str, str]:
    line = cluster.run("scontrol", "show", "job", "-o", job_id).stdout
    from coldaisle.health.slurm import parse_oneliner

    return parse_oneliner(line)


def _sbatch(cluster: Any, *args: str) -> str:
    out = cluster.run("sbatch", "--parsable", *args).stdout
    return out.strip().split(";")[0]


def _ended(cluster: Any, job_id: str) -> Callable[[], dict[str, str] | None]:
    def check() -> dict[str, str] | None:
        rec = _job(cluster, job_id)
        return rec if rec.get("JobState") in {"COMPLETED", "CANCELLED", "FAILED"} else None
    return check


def test_prolog_refuses_a_job_whose_plan_does_not_fit(cluster: Any, hooks: Any, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    hooks.install(cluster, "prolog-ctld", "slurm", "prolog", log=log)
    (tmp_path / "incident.yaml").write_text(INCIDENT_JOB)
    (tmp_path / "small.yaml").write_text(SMALL_JOB)
    ran = tmp_path / "ran"

    refused = _sbatch(cluster, "--comment", "coldaisle-plan=incident.yaml", "-D", str(tmp_path), "-o", "/dev/null",
                      "--wrap", f"touch {ran}")
    rec = _wait("the refused job ending", _ended(cluster, refused), 20, log)
    assert rec["JobState"] == "CANCELLED", rec
    assert rec["AdminComment"].startswith("coldaisle: refused: the job's plan does not fit: memory: the worst GPU "
                                          "needs 104.58 GiB of 71.68 GiB usable on h100-pcie-80gb"), rec
    assert not ran.exists()  # the job never started
    assert cluster.show_node()["State"] == "IDLE"  # the job's misfit is not the node's fault

    fits = _sbatch(cluster, "--comment", f"coldaisle-plan={tmp_path / 'small.yaml'}", "-o", "/dev/null",
                   "--wrap", f"touch {ran}")
    rec = _wait("the fitting job ending", _ended(cluster, fits), 20, log)
    assert rec["JobState"] == "COMPLETED" and ran.exists(), rec
    assert f"job {fits}: plan {tmp_path / 'small.yaml'} fits" in log.read_text()


def test_node_prolog_drains_a_node_that_fails_gpu_preflight(cluster: Any, hooks: Any, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    hooks.install(cluster, "prolog", "slurm", "prolog", "--backend", "sim", "--scenario",
                 str(DATA / "hot-aisle.yaml"), "--sim-node", "gpu-node-01", log=log)
    ran = tmp_path / "ran"
    job = _sbatch(cluster, "-o", "/dev/null", "--wrap", f"touch {ran}")
    info = cluster.wait_node(lambda i: "DRAIN" in i.get("State", ""), "drained by the prolog", timeout=20)
    assert "gpu.thermal: gpu0" in log.read_text()
    # our tagged reason, not Slurm's "Prolog error": the node was already drained when Slurm drained it
    assert info["Reason"].startswith("coldaisle: prolog: gpu.thermal: gpu0 89 C, -2 K below its 87 C slowdown"), info
    rec = _wait("the job requeued", lambda: (r := _job(cluster, job))["JobState"] == "PENDING" and r, 20, log)
    assert rec["Restarts"] == "1" and not ran.exists(), rec  # requeued for another node, never started here


def test_epilog_keeps_the_job_s_bundle_and_kernel_log(cluster: Any, hooks: Any, tmp_path: Path) -> None:
    if not os.access("/dev/kmsg", os.W_OK | os.R_OK):
        pytest.fail("the epilog test writes a marker line to /dev/kmsg and reads it back: run as root")
    log, into, work = tmp_path / "hooks.log", tmp_path / "jobs", tmp_path / "work"
    work.mkdir()
    hooks.install(cluster, "epilog", "slurm", "epilog", "--into", str(into), log=log)
    before, during = f"coldaisle-test before {uuid.uuid4()}", f"coldaisle-test during {uuid.uuid4()}"
    Path("/dev/kmsg").write_text(before + "\n")
    time.sleep(2.5)  # StartTime has one-second resolution, and kmsg stamps follow a clock of their own
    failing = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    job = _sbatch(cluster, "-D", str(work), "-o", "/dev/null", "--wrap",
                  f"echo '{during}' > /dev/kmsg; {sys.executable} -m coldaisle run --no-preflight -- {failing}")
    _wait("the epilog's record", (into / job / "summary.json").exists, 30, log)
    summary = json.loads((into / job / "summary.json").read_text())
    assert len(summary["bundles"]) == 1 and summary["bundles"][0].startswith("coldaisle-run-"), summary
    bundle = into / job / "bundles" / summary["bundles"][0]
    assert "job_failed" in (bundle / "verdict.json").read_text()
    kernel = (into / job / "kernel.log").read_text()
    assert during in kernel and before not in kernel
    assert f"coldaisle: epilog: 1 bundle(s), 1 kernel lines in {into / job}" in log.read_text()
    assert cluster.wait_idle()["State"] == "IDLE"  # the epilog never fails, so it never drains
