"""What every check looks at, gathered once per run: options, environment, distributions, ELF scan, GPUs.

Everything the host provides comes through here and is injectable: the environment mapping, the root of
the host's files, the Backend, the clock. Each fact is computed on first use, so a run limited with
`--only` pays for what it reads.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from coldaisle.preflight import host
from coldaisle.preflight.dists import Dist, distributions, site_dirs
from coldaisle.preflight.elfscan import ElfCache, Scan, default_cache_dir, scan
from coldaisle.preflight.ldcache import read_ld_cache
from coldaisle.preflight.loader import Loader
from coldaisle.preflight.versions import PYPI, version_from_filename
from coldaisle.telemetry.clock import Clock, RealClock

GIB = 1024**3
#: host libraries whose file names carry their release (libnccl.so.2.20.5): advisory subjects
HOST_LIBRARIES = {"libnccl.so": "nccl", "libcudart.so": "cudart"}


@dataclass
class PreflightOptions:
    """Everything `coldaisle preflight` takes; `coldaisle run` builds one too."""

    python: Path | None = None  # another environment's interpreter (default: this one)
    advisories: list[Path] = field(default_factory=list)  # site-local advisory directories or files
    shipped_advisories: bool = True
    pid: int | None = None  # a running job whose loaded libraries to inspect
    backend: str = "auto"  # auto (NVML if present), nvml, sim, none
    scenario: str = "healthy-training"  # with backend=sim
    node: str | None = None  # with backend=sim: one node's GPUs
    backend_obj: Any = None  # an already built Backend (tests, coldaisle run); wins over `backend`
    expected_gpus: int | None = None
    checkpoint_dir: Path = Path(".")
    min_free_disk_bytes: float = 20 * GIB
    min_headroom_c: float = 5.0  # fail below this many kelvin to slowdown
    warn_headroom_c: float = 10.0
    scan: list[Path] = field(default_factory=list)  # more directories to inspect for shared objects
    only: list[str] = field(default_factory=list)  # check ids or prefixes (`elf`, `gpu.thermal`)
    skip: list[str] = field(default_factory=list)
    cache: bool = True
    cache_dir: Path | None = None  # default: $XDG_CACHE_HOME/coldaisle
    root: Path = Path("/")  # where the host's /proc, /sys, /etc are (tests: captured copies)
    env: Mapping[str, str] | None = None  # default: os.environ
    machine: str | None = None  # default: platform.machine()
    clock: Clock | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """Something an advisory can name: ecosystem, name, version, and where it was found."""

    ecosystem: str
    name: str
    version: str
    where: str


class Context:
    """The shared, lazily computed view of the host that checks read."""

    def __init__(self, options: PreflightOptions) -> None:
        """Nothing is read until a check asks."""
        self.options = options
        self.env: dict[str, str] = dict(os.environ if options.env is None else options.env)
        self.host = host.HostPaths(options.root)
        self.machine = options.machine or platform.machine()
        self.clock: Clock = options.clock or RealClock()
        self.notes: list[tuple[str, str]] = []  # (subject, message) found while gathering facts
        self._backend_built = False

    @cached_property
    def site_dirs(self) -> list[Path]:
        """The target environment's site-packages."""
        return site_dirs(self.options.python)

    @cached_property
    def dists(self) -> dict[str, Dist]:
        """Installed distributions by canonical name."""
        found, notes = distributions(self.site_dirs)
        self.dist_notes = notes
        return found

    @cached_property
    def ld_library_path(self) -> list[str]:
        """LD_LIBRARY_PATH entries as written (empty entries kept: they mean the current directory)."""
        raw = self.env.get("LD_LIBRARY_PATH", "")
        return raw.split(":") if raw else []

    @cached_property
    def loader(self) -> Loader:
        """Resolves NEEDED names the way ld.so would on this host."""
        cache, note = read_ld_cache(self.host.p("/etc/ld.so.cache"))
        if note:
            self.notes.append(("/etc/ld.so.cache", note))
        return Loader([p for p in self.ld_library_path if p and os.path.isabs(p)], cache)

    @cached_property
    def elf(self) -> Scan:
        """Every shared object under site-packages, LD_LIBRARY_PATH and --scan, parsed (cached on disk)."""
        roots = [(d, True) for d in self.site_dirs]
        roots += [(Path(p), False) for p in dict.fromkeys(self.ld_library_path) if p and os.path.isdir(p)]
        roots += [(p, True) for p in self.options.scan]
        cache_dir = None if not self.options.cache else (self.options.cache_dir or default_cache_dir(self.env))
        cache = ElfCache(cache_dir)
        result = scan(roots, cache)
        note = cache.save()
        if note:
            self.notes.append((str(cache_dir), note))
        return result

    @cached_property
    def driver_version(self) -> str | None:
        """The loaded NVIDIA driver's version."""
        return host.driver_version(self.host)

    @cached_property
    def kernel_release(self) -> str | None:
        """The running kernel's release."""
        return host.kernel_release(self.host)

    @cached_property
    def kernel_modules(self) -> set[str]:
        """Loaded kernel modules."""
        return host.kernel_modules(self.host)

    @cached_property
    def loaded_libraries(self) -> list[str]:
        """Files mapped by --pid's process (empty without --pid)."""
        from coldaisle.preflight.procmaps import mapped_files

        return mapped_files(self.host, self.options.pid) if self.options.pid is not None else []

    def subjects(self) -> list[Subject]:
        """Everything an advisory can be about on this host and in this environment."""
        out = [Subject(PYPI, d.name, d.version, str(d.location)) for d in self.dists.values()]
        if self.driver_version:
            out.append(Subject("NVIDIA", "driver", self.driver_version, "/proc/driver/nvidia/version"))
        if self.kernel_release:
            out.append(Subject("Linux", "Kernel", self.kernel_release, "/proc/sys/kernel/osrelease"))
        fm = host.fabric_manager_version(self.host)
        if fm:
            out.append(Subject("NVIDIA", "fabricmanager", fm, "/var/lib/dpkg/status"))
        return out + self._library_subjects()

    def _library_subjects(self) -> list[Subject]:
        paths = [o.path for o in self.elf.objects] + self.loaded_libraries
        seen: set[tuple[str, str]] = set()
        out = []
        for p in paths:
            real = os.path.realpath(p)
            for stem, name in HOST_LIBRARIES.items():
                version = version_from_filename(os.path.basename(real), stem)
                if version and (name, real) not in seen:
                    seen.add((name, real))
                    out.append(Subject("NVIDIA", name, version, p))
        return out

    @cached_property
    def backend(self) -> Any:
        """The GPU Backend, or None (the reason is in `backend_reason`)."""
        from coldaisle.preflight.gpus import gpu_backend

        self._backend_built = self.options.backend_obj is None
        backend, self.backend_reason = gpu_backend(self.options)
        return backend

    def close(self) -> None:
        """Release what this context opened (a Backend it built)."""
        if self._backend_built and "backend" in self.__dict__ and self.backend is not None:
            self.backend.close()
