"""Which events alarm: a corrected PCIe error only at a rate (per host and device), everything else by severity;
and the scanner never lets a pattern run across lines."""

from __future__ import annotations

from pathlib import Path

from coldaisle.triage.analyze import triage
from coldaisle.triage.catalog import load_catalog

CORRECTED = "kernel: [{up:.6f}] nvidia 0000:{bus}:00.0: PCIe Bus Error: severity=Corrected, type=Physical Layer, " \
            "(Receiver ID)"
FILLER = "kernel: [{up:.6f}] systemd-journald[412]: Data hash table of /run/log/journal is 25 % full"


def _log(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "node-1.log"
    path.write_text("\n".join(f"May 21 03:{int(i // 60):02d}:{int(i % 60):02d} node-1 {ln}" for i, ln in lines) + "\n")
    return path


def _corrected(at: float, bus: str = "b1") -> tuple[float, str]:
    return at, CORRECTED.format(up=1000 + at, bus=bus)


def _filler(at: float) -> list[tuple[float, str]]:
    return [(at, FILLER.format(up=1000 + at))] * 5  # keeps two error lines apart, so they stay two events


def test_a_lone_corrected_error_is_a_quiet_warning(tmp_path: Path) -> None:
    r = triage([_log(tmp_path, [_corrected(1.0)])])
    (h,) = r.hits
    assert (h.cls, h.severity.name, h.alarm, h.lines) == ("pcie_aer", "WARNING", False, 1)
    assert not r.alarms and [g.cls for g in r.groups] == ["pcie_aer"]  # counted, not alarmed


def test_corrected_errors_at_a_rate_alarm(tmp_path: Path) -> None:
    r = triage([_log(tmp_path, [_corrected(1.0), *_filler(2.0), _corrected(40.0)])])
    assert [(h.cls, h.alarm) for h in r.hits] == [("pcie_aer", True), ("pcie_aer", True)]


def test_the_rate_is_per_window_and_per_device(tmp_path: Path) -> None:
    apart = triage([_log(tmp_path, [_corrected(1.0), *_filler(2.0), _corrected(400.0)])])
    assert [h.alarm for h in apart.hits] == [False, False]
    two_gpus = triage([_log(tmp_path, [_corrected(1.0, "b1"), *_filler(2.0), _corrected(10.0, "3a")])])
    assert [h.alarm for h in two_gpus.hits] == [False, False]


def test_uncorrected_errors_alarm_at_once(tmp_path: Path) -> None:
    line = "kernel: nvidia 0000:b1:00.0: PCIe Bus Error: severity=Uncorrected (Non-Fatal), type=Transaction Layer"
    (h,) = triage([_log(tmp_path, [(1.0, line)])]).alarms
    assert (h.severity.name, h.fields["aer_kind"]) == ("ERROR", "non_fatal")


def test_a_pattern_never_spans_two_lines(tmp_path: Path) -> None:
    sig = tmp_path / "site.yaml"
    sig.write_text("signatures:\n  - id: spans\n    class: site_fault\n    severity: error\n"
                   "    pattern: 'FAULT[^,]*CODE \\d+'\n    meaning: m\n")
    log = tmp_path / "node-1.log"
    log.write_text("FAULT begins here\nCODE 7 on the next line\nFAULT and CODE 9 on one line\n")
    r = triage([log], signatures=[sig])
    assert [(h.cls, h.line) for h in r.alarms] == [("site_fault", 3)]


def test_the_per_line_matcher_knows_nothing_of_rates() -> None:
    m = load_catalog().matcher().first(CORRECTED.format(up=1.0, bus="b1"))
    assert (m.cls, m.severity.name, m.fields["aer_kind"]) == ("pcie_aer", "WARNING", "corrected")
