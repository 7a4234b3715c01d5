"""Host signal parsers on captured /proc files and on this machine's /proc; D-state counting; rates."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import fields
from pathlib import Path

import pytest

from coldaisle.agent.host import (
    HostProbe,
    HostSample,
    parse_pressure,
    parse_stat_intr,
    parse_vmstat,
)
from coldaisle.telemetry.clock import SimClock

DATA = Path(__file__).resolve().parent.parent / "data" / "agent"
PROC = DATA / "proc"


def test_parse_pressure_with_full_line() -> None:
    p = parse_pressure((PROC / "pressure" / "io").read_text())
    assert p == {"some_avg10": 45.61, "some_avg60": 30.02, "some_avg300": 12.87, "some_total": 98765432100.0,
                 "full_avg10": 40.10, "full_avg60": 27.45, "full_avg300": 11.02, "full_total": 87654321000.0}


def test_parse_pressure_cpu_without_full_line_before_5_13() -> None:
    p = parse_pressure((DATA / "pressure-cpu-5.4.txt").read_text())
    assert p["some_avg10"] == 97.52 and "full_avg10" not in p


def test_parse_pressure_ignores_garbage() -> None:
    assert parse_pressure("") == {}
    assert parse_pressure("some avg10=x avg60=1.5\nweird line\n") == {"some_avg60": 1.5}


def test_parse_vmstat_and_stat() -> None:
    assert parse_vmstat((PROC / "vmstat").read_text()) == {"pswpin": 35512093.0, "pswpout": 48823117.0}
    assert parse_stat_intr((PROC / "stat").read_text()) == {"intr": 12884901888.0, "ctxt": 9912233412345.0}
    assert parse_vmstat("nr_free_pages 1\n") == {}
    assert parse_stat_intr("xintr 5\n") == {}


def _stat(pid: int, comm: str, state: str) -> str:
    return f"{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 1234 0 0\n"


def _copy_proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    shutil.copytree(PROC, root)
    return root


def test_probe_rates_come_from_the_previous_sample(tmp_path: Path) -> None:
    root, clock = _copy_proc(tmp_path), SimClock()
    probe = HostProbe(root, clock, d_state_every=0)
    first = probe.sample()
    assert math.isnan(first.interrupts_per_s) and math.isnan(first.swap_in_pages_per_s)
    assert first.psi_cpu_some == pytest.approx(0.1234) and first.psi_memory_full == pytest.approx(0.016)
    assert first.d_state_processes == 0  # the captured tree's processes are all sleeping (S)
    stat = (root / "stat").read_text().replace("intr 12884901888", "intr 12884911888")
    (root / "stat").write_text(stat.replace("ctxt 9912233412345", "ctxt 9912233413345"))
    (root / "vmstat").write_text((root / "vmstat").read_text().replace("pswpin 35512093", "pswpin 35512593"))
    (root / "4242" / "stat").write_text(_stat(4242, "python3", "D"))
    clock.sleep(2.0)
    second = probe.sample()
    assert second.interrupts_per_s == pytest.approx(5000.0)
    assert second.context_switches_per_s == pytest.approx(500.0)
    assert second.swap_in_pages_per_s == pytest.approx(250.0)
    assert second.swap_out_pages_per_s == 0.0
    assert second.d_state_processes == 1
    probe.close()


def test_probe_d_state_scan_is_rate_limited(tmp_path: Path) -> None:
    root, clock = _copy_proc(tmp_path), SimClock()
    probe = HostProbe(root, clock, d_state_every=5.0)
    assert probe.sample().d_state_processes == 0
    (root / "4242" / "stat").write_text(_stat(4242, "python3", "D"))
    clock.sleep(1.0)
    assert probe.sample().d_state_processes == 0  # last count kept until the next scan
    clock.sleep(4.0)
    assert probe.sample().d_state_processes == 1


def test_probe_missing_pressure_is_nan_never_an_exception(tmp_path: Path) -> None:
    root = _copy_proc(tmp_path)
    shutil.rmtree(root / "pressure")
    (root / "vmstat").unlink()
    sample = HostProbe(root, SimClock()).sample()
    assert math.isnan(sample.psi_cpu_some) and math.isnan(sample.psi_io_full) and math.isnan(sample.swap_in_pages_per_s)
    empty = HostProbe(tmp_path / "nothing-here", SimClock()).sample()
    assert all(math.isnan(getattr(empty, f.name)) for f in fields(HostSample) if f.name != "monotonic")


def test_probe_counter_reset_gives_nan_not_a_negative_rate(tmp_path: Path) -> None:
    root, clock = _copy_proc(tmp_path), SimClock()
    probe = HostProbe(root, clock)
    probe.sample()
    (root / "stat").write_text("intr 5 0 0\nctxt 7\n")
    clock.sleep(1.0)
    assert math.isnan(probe.sample().interrupts_per_s)


def test_probe_on_this_machine_never_raises_and_is_cheap() -> None:
    with HostProbe() as probe:
        probe.sample()
        time.sleep(0.02)
        sample = probe.sample()
        for f in fields(HostSample):
            value = getattr(sample, f.name)
            assert isinstance(value, float) and (math.isfinite(value) or math.isnan(value)), f.name
            assert math.isnan(value) or value >= 0, f.name
        assert sample.interrupts_per_s > 0  # the timer alone interrupts
        t0 = time.perf_counter()
        for _ in range(50):
            probe.sample()
        assert (time.perf_counter() - t0) / 50 < 5e-3


def test_host_sample_names_are_the_policy_node_names() -> None:
    from coldaisle.policy.names import NODE

    names = set(HostSample(0.0).as_dict())
    assert {n for n in NODE if n.startswith(("psi_", "swap_in", "interrupts", "d_state"))} <= names
