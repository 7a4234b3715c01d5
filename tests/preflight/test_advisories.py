"""Advisories against a real virtualenv with locally built wheels, host subjects and site-local files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coldaisle.preflight.osv import SHIPPED_DIR, advisory_files, load_file

from .conftest import build_wheel, host_root, ids, make_venv, run


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real venvs: NCCL at the incident's advised 2.20.5, and at the fixed 2.22.3."""
    base = tmp_path_factory.mktemp("venvs")
    out = {}
    for tag, version in (("advised", "2.20.5"), ("fixed", "2.22.3")):
        whl = build_wheel(base / f"wheels-{tag}", "nvidia-nccl-cu12", version)
        out[tag] = make_venv(base / tag, [whl])
    return out


def test_advised_nccl_wheel_is_flagged_and_the_fixed_one_is_not(tmp_path: Path, venvs: dict[str, Path]) -> None:
    bad = run(tmp_path, python=venvs["advised"], only=["advisories"])
    hits = [f for f in bad.findings if f.check == "advisories"]
    assert [(str(f.severity), f.details["advisory"]) for f in hits] == [("fail", "COLDAISLE-2024-0001")]
    assert hits[0].subject.startswith("nvidia-nccl-cu12==2.20.5 (") and str(venvs["advised"].parent.parent) in \
        hits[0].subject
    assert "https://github.com/NVIDIA/nccl/issues/1251" in hits[0].details["references"]
    assert bad.exit_code() == 2
    good = run(tmp_path, python=venvs["fixed"], only=["advisories"])
    assert ids(good, "advisories") == [] and good.exit_code() == 0


def test_conditions_make_a_record_apply_only_to_its_combination(tmp_path: Path, venvs: dict[str, Path]) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "blocking.json").write_text(json.dumps({
        "id": "SITE-1", "modified": "2026-01-01T00:00:00Z", "summary": "deadlocked here with launch blocking",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "nvidia_nccl_cu12"}, "versions": ["2.22.3"]}],
        "database_specific": {"severity": "warn", "when": {"env": {"CUDA_LAUNCH_BLOCKING": "1"}}}}))
    quiet = run(tmp_path, python=venvs["fixed"], only=["advisories"], advisories=[site], shipped_advisories=False)
    assert ids(quiet, "advisories") == []
    loud = run(tmp_path, python=venvs["fixed"], only=["advisories"], advisories=[site], shipped_advisories=False,
               env={"CUDA_LAUNCH_BLOCKING": "1"})
    assert [f.severity for f in loud.findings] == ["warn"] and loud.exit_code(strict=True) == 1


def test_driver_kernel_and_host_nccl_are_subjects(tmp_path: Path, so) -> None:  # type: ignore[no-untyped-def]
    root = host_root(tmp_path, {
        "/proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  "
                                       "Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Jan 16 2025\n"
                                       "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
        "/proc/sys/kernel/osrelease": "5.15.0-101-generic\n",
    })
    lib = so("lib/libnccl.so.2.21.5", soname="libnccl.so.2")
    (lib.parent / "libnccl.so.2").symlink_to(lib.name)
    site = tmp_path / "site"
    site.mkdir()
    (site / "kernel.json").write_text(json.dumps([{
        "id": "SITE-UVM", "modified": "2026-01-01T00:00:00Z", "summary": "nvidia-uvm panics on this kernel here",
        "affected": [{"package": {"ecosystem": "Linux", "name": "Kernel"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "5.15.0-90"},
                                                                  {"fixed": "5.15.0-105"}]}]}],
        "database_specific": {"fix": "boot 5.15.0-105 or later"}}]))
    report = run(tmp_path, root=root, scan=[lib.parent], only=["advisories"], advisories=[site],
                 env={"LD_LIBRARY_PATH": str(lib.parent)})
    got = {f.details["advisory"]: f.subject for f in report.findings}
    assert got["COLDAISLE-2025-0003"].startswith("NVIDIA/driver==570.86.15")
    assert got["SITE-UVM"].startswith("Linux/Kernel==5.15.0-101-generic")
    assert got["COLDAISLE-2024-0001"].startswith("NVIDIA/nccl==2.21.5")
    fix = next(f.fix for f in report.findings if f.details["advisory"] == "SITE-UVM")
    assert fix == "boot 5.15.0-105 or later"


def test_a_bad_site_file_is_a_finding_naming_file_line_and_field(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "typo.json").write_text('{\n "id": "X",\n "modified": "2026",\n "affected": [\n'
                                    '  {"package": {"ecosystem": "PyPI", "name": "torch"},\n'
                                    '   "ranges": [{"events": [{"introduced": "two"}]}]}\n ]\n}\n')
    (site / "broken.json").write_text('{"id": "Y", "modified": ')
    report = run(tmp_path, only=["advisories"], advisories=[site], shipped_advisories=False)
    messages = {Path(f.subject).name: f.message for f in report.findings}
    assert "typo.json:5: affected[0]: ranges.0.events.0.introduced: 'two' is not a version" in messages["typo.json"]
    assert "broken.json:1: not JSON" in messages["broken.json"]
    assert report.failed


def test_broken_package_metadata_is_a_note_not_a_crash(tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "venv", [])
    site = next((tmp_path / "venv/lib").glob("python*/site-packages"))
    (site / "nameless-1.0.dist-info").mkdir()
    (site / "nameless-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nVersion: 1.0\n")
    (site / "empty-2.0.dist-info").mkdir()  # no METADATA at all
    (site / "garbage-3.0.dist-info").mkdir()
    (site / "garbage-3.0.dist-info" / "METADATA").write_bytes(b"\xff\xfe\x00binary")
    report = run(tmp_path, python=venv, only=["advisories"])
    assert all(c.status == "ran" for c in report.checks)
    assert any("without a Name" in n.message for n in report.notes)


def test_shipped_records_load_and_cite_sources() -> None:
    files = advisory_files(SHIPPED_DIR)
    assert len(files) >= 5
    for f in files:
        (rec,) = load_file(f)
        assert rec.id == f.stem
        assert rec.references and all(r["url"].startswith("https://") for r in rec.references)
        assert rec.database_specific.source and rec.database_specific.fix
