"""PowerCapper over the simulator: the real executor, the twin behind the Backend seam."""

from __future__ import annotations

import pytest

from coldaisle.actions.interface import ActionKind, Decision, Status, Target
from coldaisle.actions.powercap import PowerCapper
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.run import load_plan
from coldaisle.sim.twin import Twin

NODE = "gpu-node-01"


@pytest.fixture
def twin() -> Twin:
    """The fan-failure node, two minutes in: the job is running at full power."""
    tw = Twin(load_plan("single-node-fan-failure"))
    tw.clock.sleep(120)
    return tw


def _cap(watts: float | None, *, device: int = 3, restore: bool = False, node: str = NODE) -> Decision:
    params = {} if watts is None else {"watts": watts}
    return Decision(0.0, "gpu-hot", "warning", ActionKind.POWER_CAP, Target(node, device), params=params,
                    restore=restore)


def test_cap_then_restore_on_the_twin(twin: Twin) -> None:
    backend = SimBackend(twin, node=NODE)
    capper = PowerCapper(backend, clock=twin.clock)
    before = backend.sample()
    assert before.power_limit_w[3] == 700.0 and before.power_w[3] > 600.0
    capper.observe(before)

    outcome = capper.execute(_cap(400), dry_run=False)
    assert outcome.status == Status.DONE and "to 400 W (was 700 W" in outcome.detail
    twin.clock.sleep(60)
    capped = backend.sample()
    assert capped.power_limit_w[3] == 400.0 and capped.power_w[3] <= 400.0 + 1e-6
    assert capped.power_w[2] > 600.0  # the other GPUs are not touched
    capper.observe(capped)

    # a deeper cap keeps the first remembered limit
    assert capper.execute(_cap(300), dry_run=False).status == Status.DONE
    outcome = capper.execute(_cap(None, restore=True), dry_run=False)
    assert outcome.status == Status.DONE and outcome.detail == f"restored {NODE}/gpu3 to 700 W"
    twin.clock.sleep(60)
    after = backend.sample()
    assert after.power_limit_w[3] == 700.0 and after.power_w[3] > 600.0


def test_dry_run_and_restore_without_a_cap_change_nothing(twin: Twin) -> None:
    backend = SimBackend(twin, node=NODE)
    capper = PowerCapper(backend)
    outcome = capper.execute(_cap(400), dry_run=True)
    assert outcome.status == Status.DRY_RUN
    assert outcome.detail == f"would have capped {NODE}/gpu3 from 700 W to 400 W"
    outcome = capper.execute(_cap(None, restore=True), dry_run=False)
    assert outcome.status == Status.DONE and "no cap of ours" in outcome.detail
    assert backend.sample().power_limit_w[3] == 700.0


def test_bad_requests_are_failed_outcomes(twin: Twin) -> None:
    capper = PowerCapper(SimBackend(twin, node=NODE))
    out_of_range = capper.execute(_cap(50), dry_run=False)
    assert out_of_range.status == Status.FAILED and "PowerLimitError" in out_of_range.detail
    assert capper.execute(_cap(400, device=8), dry_run=False).status == Status.FAILED
    assert capper.execute(_cap(400, node="node-gpu-88"), dry_run=False).status == Status.FAILED
    assert capper.execute(_cap(None), dry_run=False).status == Status.FAILED
    assert capper.saved == {}
