"""SimBackend: one node of the twin (or the whole cluster) through the same Backend contract as NVML."""

from __future__ import annotations

import numpy as np

from coldaisle.errors import ColdaisleError, PowerLimitError
from coldaisle.sim import state as st
from coldaisle.sim.twin import Twin
from coldaisle.telemetry.frame import DeviceEvent, DeviceInfo, Frame, ProcessRows, ThrottleReason

_XID_SOURCES = {"xid"}
_BLANK_WHEN_LOST = ("temperature_c", "memory_temperature_c", "power_w", "power_instant_w", "utilization_gpu",
                    "utilization_memory", "sm_clock_mhz", "fan_pct", "memory_used_bytes")
#: Frame column -> the twin's array, for the columns the twin changes rarely (and says so with State.touch)
_SLOW = {"lost": "lost", "memory_used_bytes": "memory_bytes", "pcie_replay_total": "pcie_replay",
         "power_limit_w": "limit_w", "remapped_rows_pending": "remap_pending", "remapped_rows_failure": "remap_failed"}
_IDLE = int(st.Work.IDLE)
_GPU_IDLE = np.uint64(ThrottleReason.GPU_IDLE)


def per_state_views(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-state columns a Frame takes as they are (the SM clock is scaled by throttling separately)."""
    return {k: v for k, v in cols.items() if k != "sm_clock_mhz"}


class SimBackend:
    """A view onto the twin: `node=None` reads every GPU of the cluster, otherwise one node's GPUs."""

    def __init__(self, twin: Twin, node: str | None = None) -> None:
        self.twin = twin
        lay = twin.plan.layout
        if node is not None and node not in lay.node_index:
            raise ColdaisleError(f"the simulated cluster has no node named {node!r}",
                                 hint=f"nodes are {lay.node_names[0]}..{lay.node_names[-1]}")
        self.gpus = (np.arange(lay.n_gpus) if node is None
                     else lay.gpus_of_node(lay.node_index[node])).astype(np.intp)
        self._devices = tuple(self._info(int(g)) for g in self.gpus)
        # a node's GPUs (or the whole cluster) are contiguous: a slice reads them as views, not fancy-index copies
        self._sel = slice(int(self.gpus[0]), int(self.gpus[-1]) + 1)
        self._event_cursor = len(twin.events)
        self._xid_index = {(d.node, d.pci_bus_id): i for i, d in enumerate(self._devices)}
        self._mem_total = np.full(len(self.gpus), twin.plan.card.memory_total_bytes)
        self._zeros = np.zeros(len(self.gpus))
        self._nan = np.full(len(self.gpus), np.nan)  # retired pages: Hopper remaps rows instead
        self._nan.flags.writeable = False
        self._zeros.flags.writeable = False
        self._mem_total.flags.writeable = False
        self._work: bytes | None = None  # the work states the per-state columns were built for
        self._work_version = -1
        self._demand = np.zeros(len(self.gpus))
        self._idle_reasons = np.zeros(len(self.gpus), np.uint64)
        self._proc_version = -1
        self._proc_rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._tdp = twin.plan.card.tdp_w
        self._state_cols: dict[str, np.ndarray] = {}
        self._slow_cols: dict[str, np.ndarray] = {}
        self._slow_seen: dict[str, int] = {}  # column -> the twin's version of its array when copied
        self._blank_cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._capped_seen: tuple[int, bool] = (-1, False)  # (limit_w version, a cap holds somewhere)

    def _info(self, g: int) -> DeviceInfo:
        lay, card = self.twin.plan.layout, self.twin.plan.card
        node = lay.node_names[int(lay.gpu_node[g])]
        local = int(lay.gpu_local[g])
        return DeviceInfo(
            node=node, index=local,  # NVML's index on its node; the Frame position is the device handle
            uuid=f"GPU-sim-{self.twin.plan.scenario.seed:04x}-{g:06d}", name=card.name,
            memory_total_bytes=int(card.memory_total_bytes), power_default_limit_w=card.tdp_w,
            power_max_limit_w=card.tdp_w, power_min_limit_w=card.min_limit_w,
            slowdown_temperature_c=card.slowdown_c, shutdown_temperature_c=card.shutdown_c,
            pci_bus_id=self.twin.pci(local), persistence_mode=True,  # a managed node runs nvidia-persistenced
        )

    def devices(self) -> tuple[DeviceInfo, ...]:
        """The GPUs of this view, in Frame column order."""
        return self._devices

    def sample(self) -> Frame:
        """Read the twin's current state as a Frame; lost GPUs are flagged with NaN readings."""
        s, g, tw = self.twin.state, self._sel, self.twin
        work = s.work[g]
        per_state = self._per_state(work)
        slow = self._slow()
        lost = slow["lost"]
        kw: dict[str, object] = dict(
            wall_time=tw.clock.time(), monotonic=tw.clock.monotonic(), devices=self._devices,
            temperature_c=s.temp_c[g].copy(), memory_temperature_c=s.temp_c[g] + 4.0,
            power_w=s.power_w[g].copy(), power_instant_w=s.power_w[g].copy(), energy_j=s.energy_j[g].copy(),
            memory_total_bytes=self._mem_total,
            sm_clock_mhz=self._sm_clock(per_state["sm_clock_mhz"]), fan_pct=s.fan[g] * 100.0,
            **per_state_views(per_state), **slow,
            ecc_corrected_total=self._zeros, ecc_uncorrected_total=self._zeros, sample_age_s=self._zeros,
            retired_pages_pending=self._nan,
            throttle_reasons=self._throttle(g, work),
            processes=self._processes(), events=self._events(),
        )
        if np.count_nonzero(lost):
            for name in _BLANK_WHEN_LOST:
                kw[name] = self._blanked(name, kw[name], lost)  # type: ignore[arg-type]
        return Frame(**kw)  # type: ignore[arg-type]

    def _blanked(self, name: str, column: np.ndarray, lost: np.ndarray) -> np.ndarray:
        """`column` with NaN on lost GPUs; a shared (read-only) column gives a shared answer while both stand."""
        hit = self._blank_cache.get(name)
        if hit is not None and hit[0] is column and hit[1] is lost:
            return hit[2]
        out = np.array(column, dtype=float)  # a copy: shared columns are never written
        out[lost] = np.nan
        if not column.flags.writeable and not lost.flags.writeable:
            out.flags.writeable = False
            self._blank_cache[name] = (column, lost, out)
        return out

    def _slow(self) -> dict[str, np.ndarray]:
        """Columns the twin changes rarely (lost, memory, replays, limits, remaps): each copied when the twin
        touches its array and otherwise handed out again, read-only, so an unchanged column is the same object."""
        s, g, versions = self.twin.state, self._sel, self.twin.state.versions
        for column, array in _SLOW.items():
            version = versions.get(array, 0)
            if self._slow_seen.get(column) != version:
                copy = getattr(s, array)[g].copy()
                copy.flags.writeable = False  # shared by consecutive Frames
                self._slow_cols[column], self._slow_seen[column] = copy, version
        return self._slow_cols

    def _per_state(self, work: np.ndarray) -> dict[str, np.ndarray]:
        """Utilisation, clocks and link throughput by what each GPU does; reused while nothing changes state."""
        version = self.twin.workload.version  # a job start also changes what each state draws
        raw = work.tobytes()  # a byte compare: several times cheaper than np.array_equal on 512 states
        if self._work == raw and version == self._work_version:
            return self._state_cols
        self._work, self._work_version = raw, version
        self._demand = self.twin.state.demand[work, self.gpus]
        self._idle_reasons = np.where(work == _IDLE, _GPU_IDLE, np.uint64(0)).astype(np.uint64)
        self._idle_reasons.flags.writeable = False
        self._state_cols = {
            "utilization_gpu": st.UTILIZATION_GPU[work], "utilization_memory": st.UTILIZATION_MEMORY[work],
            "sm_clock_mhz": st.SM_CLOCK_MHZ[work], "memory_clock_mhz": st.MEMORY_CLOCK_MHZ[work],
            "pcie_rx_bytes_per_s": st.PCIE_BYTES_PER_S[work], "pcie_tx_bytes_per_s": st.PCIE_BYTES_PER_S[work],
            "nvlink_rx_bytes_per_s": st.NVLINK_BYTES_PER_S[work], "nvlink_tx_bytes_per_s": st.NVLINK_BYTES_PER_S[work],
        }
        for arr in self._state_cols.values():
            arr.flags.writeable = False  # shared by consecutive Frames
        return self._state_cols

    def _sm_clock(self, per_state: np.ndarray) -> np.ndarray:
        """The SM clock: the per-state clock, scaled where thermal throttling holds (shared while none does)."""
        throttle = self.twin.state.throttle[self._sel]
        return per_state * throttle if throttle.min() < 1.0 else per_state

    def _capped(self) -> bool:
        """Whether a power cap below the card's TDP holds on some GPU (decided again only when limits change)."""
        version = self.twin.state.versions.get("limit_w", 0)
        if self._capped_seen[0] != version:
            self._capped_seen = (version, bool(self.twin.state.limit_w[self._sel].min() < self._tdp))
        return self._capped_seen[1]

    def _throttle(self, g: slice, work: np.ndarray) -> np.ndarray:
        s = self.twin.state
        throttle, limit = s.throttle[g], s.limit_w[g]
        hot, capped = throttle.min() < 1.0, self._capped()
        if not (hot or capped):
            return self._idle_reasons  # per-state part, refreshed by _per_state (read-only, shared)
        reasons = self._idle_reasons.copy()
        if hot:
            thermal = np.uint64(ThrottleReason.SW_THERMAL_SLOWDOWN | ThrottleReason.HW_THERMAL_SLOWDOWN)
            reasons[throttle < 1.0] |= thermal
        if capped:  # a cap holds somewhere: which GPUs would draw more than it allows
            reasons[self._demand > limit] |= np.uint64(ThrottleReason.SW_POWER_CAP)
        return reasons

    def _processes(self) -> ProcessRows:
        wl, g = self.twin.workload, self._sel
        if self._proc_rows is None or self._proc_version != wl.version:  # who runs where changed
            rows = np.flatnonzero(wl.pid[g] != 0)
            dev, pid = rows.astype(np.int32), wl.pid[g][rows].astype(np.int64)
            dev.flags.writeable = pid.flags.writeable = False  # shared by consecutive Frames
            self._proc_rows, self._proc_version = (rows, dev, pid), wl.version
        rows, dev, pid = self._proc_rows
        return ProcessRows(dev, pid, self.twin.state.memory_bytes[g][rows])

    def _events(self) -> tuple[DeviceEvent, ...]:
        events = self.twin.events
        new = events[self._event_cursor:]
        self._event_cursor = len(events)
        index = self._xid_index
        out = []
        for e in new:
            key = (e.host, e.fields.get("pci"))
            if e.cls in _XID_SOURCES and key in index:
                out.append(DeviceEvent(index[key], "xid", e.time, xid=int(e.fields["xid"])))
        return tuple(out)

    def set_power_limit(self, device: int, watts: float) -> None:
        """Set the enforced power limit of device `device` of this view."""
        if not 0 <= device < len(self.gpus):
            raise PowerLimitError(f"there is no GPU {device} in this view ({len(self.gpus)} GPUs)")
        if self.twin.state.lost[self.gpus[device]]:
            raise PowerLimitError(f"GPU {device} is lost; its power limit cannot be set")
        try:
            self.twin.set_power_limit(int(self.gpus[device]), watts)
        except ValueError as exc:
            raise PowerLimitError(f"cannot set the power limit of GPU {device}: {exc}") from None

    def close(self) -> None:
        """Nothing to release."""
