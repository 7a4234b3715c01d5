"""ELF inspection on shared objects compiled with gcc in the test: RPATHs, NEEDED, bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coldaisle.preflight.elf import parse_elf
from coldaisle.preflight.elfscan import ElfCache, scan

from .conftest import ids, run


def _lib_dir_report(tmp_path: Path, lib_dir: Path, **kw: object):  # type: ignore[no-untyped-def]
    return run(tmp_path, scan=[lib_dir], only=["elf"], **kw)


def test_rpath_into_home_tmp_is_a_failure_and_a_clean_object_is_not(tmp_path: Path, so) -> None:  # type: ignore[no-untyped-def]
    bad = so("libs/libbad.so", flags=("-Wl,-rpath,/home/user/tmp",))
    clean = so("libs/libclean.so")
    origin = so("libs/liborigin.so", flags=("-Wl,-rpath,$ORIGIN",))
    assert parse_elf(bad).runpath == ("/home/user/tmp",)  # modern gcc writes DT_RUNPATH
    report = _lib_dir_report(tmp_path, tmp_path / "libs")
    rpath = ids(report, "elf.rpath")
    assert ("fail", str(bad)) in rpath
    assert all(subject not in (str(clean), str(origin)) for _, subject in rpath)
    finding = next(f for f in report.findings if f.subject == str(bad))
    assert "home directory" in finding.message and finding.details["entry"] == "/home/user/tmp"
    assert report.failed


def test_old_style_rpath_into_tmp_and_a_missing_directory(tmp_path: Path, so) -> None:  # type: ignore[no-untyped-def]
    tmp_rpath = so("libs/libtmp.so", flags=("-Wl,--disable-new-dtags,-rpath,/tmp/build/lib",))
    gone = so("libs/libgone.so", flags=("-Wl,-rpath,/opt/coldaisle-test/no/such/dir",))
    assert parse_elf(tmp_rpath).rpath == ("/tmp/build/lib",) and not parse_elf(tmp_rpath).runpath
    found = dict((s, sev) for sev, s in ids(_lib_dir_report(tmp_path, tmp_path / "libs"), "elf.rpath"))
    assert found == {str(tmp_rpath): "fail", str(gone): "warn"}


def test_needed_library_that_is_absent_is_reported(tmp_path: Path, so) -> None:  # type: ignore[no-untyped-def]
    dep = so("build/libdep.so", soname="libdep.so")
    user = so("libs/libuser.so", "int answer(void);\nint twice(void) { return 2 * answer(); }\n",
              flags=(f"-L{dep.parent}", "-ldep"))
    fine = so("libs/libfine.so", flags=(f"-L{dep.parent}", "-ldep", f"-Wl,-rpath,{dep.parent}"))
    assert "libdep.so" in parse_elf(user).needed
    report = _lib_dir_report(tmp_path, tmp_path / "libs")
    needed = ids(report, "elf.needed")
    assert ("fail", str(user)) in needed and all(s != str(fine) for _, s in needed)
    assert next(f for f in report.findings if f.subject == str(user)).details["missing"] == ["libdep.so"]
    # the same object resolves once LD_LIBRARY_PATH names the directory the loader would search
    env = {"PATH": "/usr/bin", "LD_LIBRARY_PATH": str(dep.parent)}
    assert ids(_lib_dir_report(tmp_path, tmp_path / "libs", env=env), "elf.needed") == []


def test_origin_runpath_resolves_a_sibling(tmp_path: Path, so) -> None:  # type: ignore[no-untyped-def]
    so("pkg/lib/libsib.so", soname="libsib.so")
    mod = so("pkg/mod.so", flags=(f"-L{tmp_path}/pkg/lib", "-lsib", "-Wl,-rpath,$ORIGIN/lib"))
    report = _lib_dir_report(tmp_path, tmp_path / "pkg")
    assert ids(report, "elf.needed") == [] and ids(report, "elf.rpath") == []
    assert parse_elf(mod).runpath == ("$ORIGIN/lib",)


def test_truncated_non_elf_looping_and_unreadable_files_never_crash(tmp_path: Path, so) -> None:  # type: ignore[no-untyped-def]
    good = so("libs/libgood.so")
    data = good.read_bytes()
    (tmp_path / "libs/libtrunc.so").write_bytes(data[:200])
    (tmp_path / "libs/libtext.so").write_text("this is not a shared object\n")
    (tmp_path / "libs/libscript.so").write_text("/* GNU ld script */\nGROUP ( libc.so.6 )\n")
    os.symlink("libloop2.so", tmp_path / "libs/libloop1.so")
    os.symlink("libloop1.so", tmp_path / "libs/libloop2.so")
    os.symlink("nowhere.so.1", tmp_path / "libs/libdangling.so")
    (tmp_path / "libs/libempty.so").write_bytes(b"")
    report = _lib_dir_report(tmp_path, tmp_path / "libs")
    integrity = dict((s, sev) for sev, s in ids(report, "elf.integrity"))
    assert integrity == {str(tmp_path / "libs/libtrunc.so"): "warn"}
    notes = {n.subject: n.message for n in report.notes if n.check == "elf.integrity"}
    assert "symlink loop" in notes[str(tmp_path / "libs/libloop1.so")]
    assert "dangling" in notes[str(tmp_path / "libs/libdangling.so")]
    assert "not-elf" in notes[str(tmp_path / "libs/libtext.so")]
    assert "linker-script" in notes[str(tmp_path / "libs/libscript.so")]
    assert "not-elf" in notes[str(tmp_path / "libs/libempty.so")]
    assert all(c.status != "error" for c in report.checks)


def test_a_file_that_cannot_be_opened_is_unreadable_not_an_exception(tmp_path: Path) -> None:
    d = tmp_path / "libdir.so"
    d.mkdir()
    info = parse_elf(d)
    assert info.problem == "unreadable" and not info.ok


@pytest.mark.unprivileged  # root reads files whatever their mode: run as nobody (tests/conftest.py)
def test_unreadable_shared_object_is_a_warning(tmp_path: Path, so) -> None:  # type: ignore[no-untyped-def]
    lib = so("libs/libsecret.so")
    lib.chmod(0)
    assert ("warn", str(lib)) in ids(_lib_dir_report(tmp_path, tmp_path / "libs"), "elf.integrity")


def test_cache_is_keyed_by_size_and_mtime(tmp_path: Path, so) -> None:  # type: ignore[no-untyped-def]
    lib = so("libs/libc1.so", flags=("-Wl,-rpath,/home/a",))
    roots = [(tmp_path / "libs", True)]
    first = scan(roots, cache := ElfCache(tmp_path / "cache"))
    cache.save()
    assert (first.parsed, first.cached) == (1, 0)
    again = scan(roots, ElfCache(tmp_path / "cache"))
    assert (again.parsed, again.cached) == (0, 1) and again.objects[0].runpath == ("/home/a",)
    so("libs/libc1.so", flags=("-Wl,-rpath,/opt/b", "-Wl,--build-id=sha1"))  # rebuilt: new size or mtime
    changed = scan(roots, ElfCache(tmp_path / "cache"))
    assert changed.parsed == 1 and changed.objects[0].runpath == ("/opt/b",)
    (tmp_path / "cache" / "elf-cache-v1.json").write_text("{not json")
    assert scan(roots, ElfCache(tmp_path / "cache")).parsed == 1  # a corrupt cache is ignored
    assert lib.exists()
