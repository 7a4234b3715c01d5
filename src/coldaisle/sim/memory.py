"""The KV-cache runaway of the report: growth to the device ceiling, spill to host, D state, GPU lost.

A long request grows one rank's KV cache at tokens/s x bytes/token. Below the ceiling it is
just memory. At the ceiling the allocator spills to host RAM: the rank slows to a crawl (its
communicator stalls), then a kernel thread hangs and the process enters D state, where no
signal reaches it; the OOM killer fires too late, and the node panics with its GPUs off the bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from coldaisle.sim.events import EventClass as E
from coldaisle.sim.scenario import KvGrowth
from coldaisle.sim.state import Work
from coldaisle.telemetry.events import Severity

if TYPE_CHECKING:
    from coldaisle.sim.twin import Twin

HUNG_TASK_TIMEOUT_S = 120.0  # kernel.hung_task_timeout_secs default


@dataclass
class Request:
    """One growing request on one GPU."""

    gpu: int
    pid: int
    rate: float
    left: float
    spec: KvGrowth
    grown: float = 0.0
    spilled: float = 0.0


class KvRunaways:
    """Active KV growths; stepped every tick (there are rarely more than a few)."""

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.active: dict[int, Request] = {}

    def start(self, g: int, spec: KvGrowth, t: float) -> None:
        """Begin a request on GPU g (ignored, with a truth note, if no process runs there)."""
        pid = int(self.twin.workload.pid[g])
        host = self.twin.host_of(g)
        if pid == 0:
            self.twin.truth(t, host, "kv_growth_ignored", gpu=int(self.twin.plan.layout.gpu_local[g]))
            return
        self.active[g] = Request(g, pid, spec.tokens_per_second * spec.bytes_per_token,
                                 spec.tokens * spec.bytes_per_token, spec)
        self.twin.truth(t, host, "kv_growth_start", gpu=int(self.twin.plan.layout.gpu_local[g]),
                        pid=pid, tokens=spec.tokens)

    def tick(self, t: float, dt: float) -> None:
        """Grow every active request by one step."""
        for g, req in list(self.active.items()):
            if self.twin.workload.pid[g] != req.pid:
                del self.active[g]  # the process is gone (killed, or its node died)
                continue
            if req.spilled == 0.0 or req.left > 0:
                self._grow(req, t, dt)

    def _grow(self, req: Request, t: float, dt: float) -> None:
        s, total = self.twin.state, self.twin.plan.card.memory_total_bytes
        step = min(req.rate * dt, req.left)
        req.left -= step
        room = max(total - s.memory_bytes[req.gpu], 0.0)
        s.memory_bytes[req.gpu] += min(step, room)
        s.touch("memory_bytes")
        req.grown += min(step, room)
        if step > room:
            first = req.spilled == 0.0
            req.spilled += step - room
            if first:
                self._spill(req, t)
        elif req.left <= 0 and req.spilled == 0.0:
            s.memory_bytes[req.gpu] -= req.grown  # request finished: its KV blocks are freed
            s.touch("memory_bytes")
            del self.active[req.gpu]

    def _spill(self, req: Request, t: float) -> None:
        host, g = self.twin.host_of(req.gpu), req.gpu
        self.twin.emit(t, host, "kernel", E.HOST_SWAP, Severity.WARNING, pid=req.pid, process="python3",
                       spilled_bytes=int(req.spilled))
        self.twin.workload.stall_rank(g, t, op="ALLGATHER")
        self.twin.state.work[g] = Work.STALLED
        self.twin.at(t + req.spec.spill_to_hang, self._hang, req)

    def _hang(self, t: float, req: Request) -> None:
        wl = self.twin.workload
        if wl.pid[req.gpu] != req.pid:
            return
        wl.dstate[req.gpu] = True
        host = self.twin.host_of(req.gpu)
        self.twin.truth(t, host, "process_d_state", pid=req.pid)
        self.twin.at(t + min(60.0, req.spec.hang_to_lost / 2), lambda tt: self.twin.emit(
            tt, host, "kernel", E.OOM_KILL, Severity.ERROR, pid=req.pid, process="python3", score=999,
            anon_rss_kb=int(req.spilled // 1024)))
        if req.spec.hang_to_lost > HUNG_TASK_TIMEOUT_S:
            self.twin.at(t + HUNG_TASK_TIMEOUT_S, lambda tt: self.twin.emit(
                tt, host, "kernel", E.HUNG_TASK, Severity.ERROR, pid=req.pid, process="python3",
                seconds=int(HUNG_TASK_TIMEOUT_S)))
        self.twin.at(t + req.spec.hang_to_lost, self._lost, req)

    def _lost(self, t: float, req: Request) -> None:
        if self.twin.workload.pid[req.gpu] != req.pid:
            return
        node = int(self.twin.plan.layout.gpu_node[req.gpu])
        self.twin.lose_gpu(req.gpu, t, xid=79)
        self.twin.panic_node(node, t, "Fatal exception in interrupt")
