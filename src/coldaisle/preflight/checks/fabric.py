"""NVIDIA fabric manager and driver versions: NVSwitch systems need them to be the same release."""

from __future__ import annotations

from collections.abc import Iterable

from coldaisle.preflight import host
from coldaisle.preflight.context import Context
from coldaisle.preflight.interface import Check, CheckSeverity, Finding, Note, Skip

SOURCE = "https://docs.nvidia.com/datacenter/tesla/fabric-manager-user-guide/index.html"


class FabricManager(Check):
    """Each driver release names its fabric manager of the same version; a mismatch leaves NVLink down."""

    id = "stack.fabric-manager"
    title = "NVIDIA driver vs fabric manager version"

    def run(self, ctx: Context) -> Iterable[Finding | Note]:
        """Fail when both exist and differ."""
        fm = host.fabric_manager_version(ctx.host)
        if fm is None:
            raise Skip("no nvidia-fabricmanager package installed (only NVSwitch systems need one)")
        driver = ctx.driver_version
        if driver is None:
            yield self.finding(CheckSeverity.WARN, f"fabric manager {fm} is installed but no NVIDIA driver is loaded",
                               "nvidia-fabricmanager", "load the driver of the same version")
        elif driver != fm:
            yield self.finding(CheckSeverity.FAIL, f"fabric manager {fm} does not match driver {driver}; it must be "
                               "the same release or the NVSwitch fabric is not brought up",
                               f"nvidia-fabricmanager {fm} / driver {driver}",
                               f"install nvidia-fabricmanager {driver} (or the driver matching {fm})",
                               source=SOURCE)
