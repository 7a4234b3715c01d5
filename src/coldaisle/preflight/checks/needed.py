"""NEEDED libraries the loader cannot find by its rules: the program would die at import or start."""

from __future__ import annotations

from collections.abc import Iterable

from coldaisle.preflight.context import Context
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note

#: provided by the NVIDIA driver, not by any package: absent means no driver, not a broken package
DRIVER_LIBRARIES = frozenset({"libcuda.so.1", "libnvidia-ml.so.1", "libnvidia-ptxjitcompiler.so.1",
                              "libnvcuvid.so.1", "libnvidia-encode.so.1"})


class Needed(Check):
    """Resolves every DT_NEEDED through RPATH, LD_LIBRARY_PATH, RUNPATH, ld.so.cache and default dirs."""

    id = "elf.needed"
    title = "NEEDED libraries resolvable by the loader's rules"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Fail per object with missing libraries; the driver's own libraries only warn, once each."""
        loader = ctx.loader
        driver_missing: dict[str, list[str]] = {}
        for obj in ctx.elf.objects:
            missing = [n for n in obj.needed if loader.resolve(obj, n).path is None]
            for name in [n for n in missing if n in DRIVER_LIBRARIES]:
                driver_missing.setdefault(name, []).append(obj.path)
            other = [n for n in missing if n not in DRIVER_LIBRARIES]
            if other:
                order = ["RPATH"] if obj.rpath and not obj.runpath else []
                order += ["LD_LIBRARY_PATH", *(["RUNPATH"] if obj.runpath else []), "ld.so.cache",
                          "default directories"]
                where = ", ".join(order)
                yield self.finding(CheckSeverity.FAIL, f"needs {', '.join(other)}, found nowhere the loader looks "
                                   f"({where})", obj.path,
                                   "install the package that provides it, or fix the RPATH/LD_LIBRARY_PATH",
                                   missing=other)
        for name, objs in sorted(driver_missing.items()):
            yield self.finding(CheckSeverity.WARN, f"{name} (part of the NVIDIA driver) is not installed; "
                               f"{len(objs)} object(s) need it, e.g. {objs[0]}", name,
                               "install the NVIDIA driver, or ignore on a host without GPUs", users=objs[:20])
