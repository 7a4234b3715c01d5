"""The kernel log reaches the policy: a GPU that fell off the bus (no Xid from NVML) drains its node."""

from __future__ import annotations

from pathlib import Path

from coldaisle.actions.interface import ActionKind, Decision
from coldaisle.agent.kernel import KernelWatch, short_pci
from coldaisle.agent.kmsg import KmsgFollower
from coldaisle.agent.loop import Agent, LocalNode
from coldaisle.policy.loader import load_policy
from coldaisle.sim.backend import SimBackend
from coldaisle.sim.run import load_plan
from coldaisle.sim.twin import Twin

KMSG = Path(__file__).resolve().parent.parent / "data" / "agent" / "kmsg.txt"


class Recorder:
    """Collects Decisions (a stand-in for the action runner, not for any hardware)."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    def submit(self, decision: Decision) -> None:
        self.decisions.append(decision)


def test_pci_addresses_from_nvml_the_kernel_and_nvrm_agree() -> None:
    assert short_pci("00000000:B1:00.0") == short_pci("0000:b1:00.0") == short_pci("0000:b1:00") == "b1:00"
    assert short_pci("0000:3b:00.0") != short_pci("0000:b1:00.0")


def test_a_gpu_that_fell_off_the_bus_in_the_kernel_log_drains_the_node(tmp_path: Path) -> None:
    twin = Twin(load_plan("runaway-process"))  # infer-01: four GPUs, the third at 0000:b1:00.0
    backend = SimBackend(twin, node="infer-01")
    devices = backend.devices()
    assert short_pci(devices[2].pci_bus_id) == "b1:00"
    runner = Recorder()
    agent = Agent(backend, load_policy("default"), runner, twin.clock, nodes=LocalNode("infer-01"))
    boot = twin.clock.time() - 259_260.0  # up three days; the log's lines span the last four minutes
    follower = KmsgFollower(KMSG, cursor_file=tmp_path / "cursor", host="infer-01", boot_time=boot, boot_id="b")
    watch = KernelWatch(follower, devices, twin.clock, on_xid=agent.inject_xid)
    agent.run(until=60)
    assert not [d for d in runner.decisions if d.action == ActionKind.DRAIN]  # nothing wrong yet
    watch.handle(follower.poll())
    assert watch.recent_count() >= 5  # AER, hung task, Xids, bus loss, OOM kill, panic
    agent.run(until=62)
    drains = [d for d in runner.decisions if d.action == ActionKind.DRAIN]
    assert [d.target.node for d in drains] == ["infer-01"]
    assert drains[0].rule == "gpu-lost-or-critical-xid"
    assert twin.state.lost.sum() == 0  # NVML never said so: only the kernel log knew


def test_old_kernel_lines_read_at_start_do_not_count_as_recent(tmp_path: Path) -> None:
    """A first start reads the whole ring buffer: lines stamped an hour ago are history, not a current fault."""
    twin = Twin(load_plan("runaway-process"))
    devices = SimBackend(twin, node="infer-01").devices()
    follower = KmsgFollower(KMSG, cursor_file=tmp_path / "cursor", host="infer-01",
                            boot_time=twin.clock.time() - 259_260.0 - 3600.0, boot_id="b")
    watch = KernelWatch(follower, devices, twin.clock, on_xid=lambda _d, _x: None)
    watch.handle(follower.poll())
    assert watch.recent_count() == 0
