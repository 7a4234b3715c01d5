"""The launch gate `coldaisle run` and preflight call: a job file in, a verdict (or exit 74) out."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldaisle.errors import ConfigError
from coldaisle.plan import PlanDoesNotFit, check_plan, require_fit

INCIDENT_JOB = """\
model: megatron-1t
gpu: h100-pcie-80gb
gpus: 512
pp: 32
context: 100000
dtype: fp16
"""


def test_the_incident_job_is_refused_with_its_reasons(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(INCIDENT_JOB, encoding="utf-8")
    with pytest.raises(PlanDoesNotFit) as exc:
        require_fit(job, site="dc4-incident", power_w=700.0)
    assert exc.value.exit_code == 74
    assert "memory:" in exc.value.message and "power: row cooling" in exc.value.message
    verdict = check_plan(job, site="dc4-incident", power_w=700.0)
    assert not verdict.ok and len(verdict.reasons) == 2 and verdict.power is not None


def test_a_job_that_fits_passes(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(INCIDENT_JOB.replace("pp: 32", "pp: 128"), encoding="utf-8")
    verdict = require_fit(job, site="dc4-incident", power_w=350.0)
    assert verdict.ok and verdict.memory.fits and verdict.power is not None and verdict.power.fits_at_full


def test_a_bad_job_file_names_file_line_and_field(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(INCIDENT_JOB + "tensor_parallel: 8\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        require_fit(job)
    assert exc.value.file == str(job) and exc.value.line == 7 and exc.value.field == "tensor_parallel"
