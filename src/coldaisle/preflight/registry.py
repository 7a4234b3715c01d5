"""Every preflight check, in run order: cheap environment checks first, the GPU last."""

from __future__ import annotations

from coldaisle.preflight.checks.advisories import Advisories
from coldaisle.preflight.checks.duplicates import DuplicateLibraries
from coldaisle.preflight.checks.env_nccl import NcclSettings
from coldaisle.preflight.checks.env_paths import SearchPaths
from coldaisle.preflight.checks.fabric import FabricManager
from coldaisle.preflight.checks.gpu_health import GpuHealth
from coldaisle.preflight.checks.gpu_thermal import ThermalHeadroom
from coldaisle.preflight.checks.host_cpuidle import CpuIdle
from coldaisle.preflight.checks.host_disk import FreeDisk
from coldaisle.preflight.checks.host_memory import MemoryLimits
from coldaisle.preflight.checks.integrity import ElfIntegrity
from coldaisle.preflight.checks.loaded import LoadedLibraries
from coldaisle.preflight.checks.needed import Needed
from coldaisle.preflight.checks.rpath import Rpath
from coldaisle.preflight.checks.torch_cuda import TorchCuda
from coldaisle.preflight.checks.torch_wheels import TorchWheels
from coldaisle.preflight.checks.triton import Triton
from coldaisle.preflight.interface import Check, PreflightError

CHECKS: tuple[type[Check], ...] = (
    SearchPaths, NcclSettings, Advisories, TorchCuda, TorchWheels, Triton, DuplicateLibraries, LoadedLibraries,
    FabricManager, Rpath, Needed, ElfIntegrity, MemoryLimits, FreeDisk, CpuIdle, ThermalHeadroom, GpuHealth,
)


def _matches(check_id: str, pattern: str) -> bool:
    return check_id == pattern or check_id.startswith(pattern + ".")


def select(only: list[str], skip: list[str]) -> list[Check]:
    """Instances of the checks `only` keeps (all when empty) minus `skip`; ids or dotted prefixes."""
    known = [c.id for c in CHECKS]
    for pattern in (*only, *skip):
        if not any(_matches(k, pattern) for k in known):
            raise PreflightError(f"no check is called {pattern!r}", hint=f"checks: {', '.join(known)}")
    return [c() for c in CHECKS
            if (not only or any(_matches(c.id, p) for p in only)) and not any(_matches(c.id, p) for p in skip)]
