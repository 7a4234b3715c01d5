"""One job on several nodes, one supervisor per node: they agree on a hang and on its straggler through the job's
own rendezvous store, with no service of ours.

`srun coldaisle run -- torchrun --nnodes N ...` (or N `coldaisle run`s started any other way) gives each node
its own supervisor, which sees only its own ranks. torchrun (and `init_process_group("env://")`) keeps a c10d
TCPStore at MASTER_ADDR:MASTER_PORT for the job's lifetime; each supervisor joins it as one more client (keys
under `coldaisle/<run>/`, which torch never reads):

- `status/<node>`: every few seconds, the node's freshest progress age and whether it suspects a hang;
- `hang/<node>`: once a supervisor confirms a hang locally, its ranks' placements (guard.ranks.Placement);
- `read/<node>`: it has read everyone's placements (the node hosting the store waits for these before it stops
  its part of the job, since the store goes with it).

A hang is declared when every node whose supervisor is alive (a status within `alive_s`) has confirmed it; a
node still making progress holds the others back (they look again later; `--hang-timeout` stays the bound).
All supervisors then run the same analysis over the same pooled placements, so they name the same straggler;
only the supervisor on the straggler's node drains its node. A store that cannot be reached costs only the
agreement: each supervisor then judges its own ranks alone, and says so.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from coldaisle.guard.ranks import HangAnalysis, Placement, RankView, analyse
from coldaisle.guard.rhythm import RankActivity
from coldaisle.guard.watch import Look, Verdict
from coldaisle.telemetry.clock import Clock
from coldaisle.telemetry.procfs import read_environ


class Store(Protocol):
    """The part of torch's c10d Store the agreement uses."""

    def set(self, key: str, value: str | bytes) -> None:
        """Store `value` under `key`."""

    def get(self, key: str) -> bytes:
        """The value under `key` (blocks until it exists: call `check` first)."""
        ...

    def check(self, keys: list[str]) -> bool:
        """Whether every key exists."""
        ...


@dataclass(frozen=True, slots=True)
class JobNodes:
    """Where this supervisor sits in a multi-node job, from its ranks' environment."""

    node: int  # this node's rank (torchrun's GROUP_RANK, Slurm's SLURM_NODEID)
    nnodes: int
    master: tuple[str, int]  # the job's rendezvous store
    run: str  # keys are scoped by this (torchrun's run id and restart count, or the Slurm job)
    host: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobNodes | None:
        """The job's nodes as a rank's environment tells them; None for a job on one node (or none to meet in)."""
        try:
            node = int(env.get("GROUP_RANK", env.get("SLURM_NODEID", "")))
            nnodes = int(env.get("GROUP_WORLD_SIZE", env.get("SLURM_NNODES", ""))
                         or int(env["WORLD_SIZE"]) // int(env["LOCAL_WORLD_SIZE"]))
            master = (env["MASTER_ADDR"], int(env["MASTER_PORT"]))
        except (KeyError, ValueError, ZeroDivisionError):
            return None
        if nnodes < 2:
            return None
        run = "-".join(x for x in (env.get("TORCHELASTIC_RUN_ID", ""), env.get("TORCHELASTIC_RESTART_COUNT", ""),
                                   env.get("SLURM_JOB_ID", "")) if x) or "job"
        return cls(node, nnodes, master, run, socket.gethostname().split(".")[0])


def tcp_store(master: tuple[str, int], timeout_s: float) -> Store:
    """A client of the job's TCPStore (torch is imported only for a multi-node job)."""
    from torch.distributed import TCPStore

    return TCPStore(master[0], master[1], is_master=False, timeout=timedelta(seconds=timeout_s),  # type: ignore[return-value]
                    wait_for_workers=False)


@dataclass(frozen=True, slots=True)
class Agreement:
    """What every node's supervisor concluded from the pooled placements."""

    analysis: HangAnalysis
    nodes: tuple[int, ...]  # the nodes whose placements were pooled
    missing: tuple[int, ...]  # nodes that never answered (their supervisor gone, or the store unreachable)

    @property
    def straggler_nodes(self) -> set[int]:
        """The nodes hosting a straggler."""
        return {p.node for p in self.analysis.stragglers}

    def evidence(self) -> dict[str, Any]:
        """For the verdict."""
        return {**self.analysis.evidence(), "nodes_agreeing": list(self.nodes), "nodes_missing": list(self.missing),
                "straggler_nodes": sorted(self.straggler_nodes)}


class Peers:
    """This supervisor's side of the agreement (see the module doc)."""

    def __init__(self, job: JobNodes, clock: Clock, say: Callable[[str], None], *,
                 store: Callable[[], Store] | None = None, wait_s: float = 20.0, alive_s: float = 30.0,
                 every_s: float = 2.0) -> None:
        self.job, self.clock, self.say = job, clock, say
        self._open = store or (lambda: tcp_store(job.master, timeout_s=5.0))
        self.wait_s, self.alive_s, self.every_s = wait_s, alive_s, every_s
        self.prefix = f"coldaisle/{job.run}"
        self._store: Store | None = None
        self._broken = False
        self._next = 0.0

    def _key(self, kind: str, node: int | None = None) -> str:
        return f"{self.prefix}/{kind}/{self.job.node if node is None else node}"

    def store(self) -> Store | None:
        """The store, joined on first use; None (said once) when it cannot be reached."""
        if self._store is None and not self._broken:
            try:
                self._store = self._open()
            except Exception as exc:  # torch missing, the store gone: judge alone
                self._broken = True
                self.say(f"cannot reach the job's rendezvous store at {self.job.master[0]}:{self.job.master[1]} "
                         f"({type(exc).__name__}: {exc}); judging this node's ranks alone")
        return self._store

    def publish(self, now: float, freshest_age_s: float, suspect: bool) -> None:
        """This node's status, every `every_s` (cheap: one small set)."""
        if now < self._next:
            return
        self._next = now + self.every_s
        self._set("status", {"wall": self.clock.time(), "age_s": freshest_age_s, "suspect": suspect,
                             "host": self.job.host})

    def others_progressing(self) -> list[int]:
        """Peers whose ranks still make progress: a fresh status (within three publishing periods) that suspects
        nothing, and no hang posted. A peer busy agreeing, or gone, holds nobody back."""
        out = []
        for node in self._others():
            st = self._get("status", node)
            fresh = st is not None and self.clock.time() - float(st["wall"]) < 3 * self.every_s
            if fresh and not st.get("suspect") and self._get("hang", node) is None:  # type: ignore[union-attr]
                out.append(node)
        return out

    def agree(self, local: list[Placement]) -> Agreement:
        """Post this node's placements, wait for the others' (up to `wait_s`), analyse them all together."""
        self._set("hang", {"placements": [p.as_dict() for p in local], "host": self.job.host})
        pooled = {self.job.node: local}
        deadline = self.clock.monotonic() + self.wait_s
        while True:
            for node in self._others():
                if node not in pooled and (got := self._get("hang", node)) is not None:
                    try:
                        pooled[node] = [Placement.from_dict(d) for d in got["placements"]]
                    except (KeyError, TypeError, ValueError):
                        pooled[node] = []
            missing = [n for n in range(self.job.nnodes) if n not in pooled]
            if not missing or self.clock.monotonic() >= deadline or self.store() is None:
                break
            self.clock.sleep(0.2)
        self._set("read", {"wall": self.clock.time()})
        return Agreement(analyse([p for n in sorted(pooled) for p in pooled[n]]), tuple(sorted(pooled)),
                         tuple(missing))

    def wait_for_readers(self, timeout_s: float = 5.0) -> None:
        """The node hosting the store lets the others finish reading before its part of the job (and the store)
        stops."""
        deadline = self.clock.monotonic() + timeout_s
        keys = [self._key("read", n) for n in self._others()]
        while keys and self.clock.monotonic() < deadline and (st := self.store()) is not None:
            try:
                if st.check(keys):
                    return
            except Exception:
                return
            self.clock.sleep(0.2)

    def _others(self) -> list[int]:
        return [n for n in range(self.job.nnodes) if n != self.job.node]

    def _set(self, kind: str, value: dict[str, Any]) -> None:
        st = self.store()
        if st is None:
            return
        try:
            st.set(self._key(kind), json.dumps(value))
        except Exception as exc:
            self._lost(exc)

    def _get(self, kind: str, node: int) -> dict[str, Any] | None:
        st = self.store()
        if st is None:
            return None
        key = self._key(kind, node)
        try:
            if not st.check([key]):
                return None
            return json.loads(st.get(key))  # type: ignore[no-any-return]
        except Exception as exc:
            self._lost(exc)
            return None

    def _lost(self, exc: Exception) -> None:
        if not self._broken:
            self._broken, self._store = True, None
            self.say(f"lost the job's rendezvous store ({type(exc).__name__}: {exc}); judging this node's ranks "
                     "alone")


class PeerWatch:
    """Finds the job's other nodes from its ranks' environment (once ranks report), then publishes this node's
    status at every look. Never a verdict: the judge asks `peers` when it has one."""

    def __init__(self, activity: RankActivity, clock: Clock, say: Callable[[str], None],
                 suspect: Callable[[float], bool], *, store: Callable[[JobNodes], Store] | None = None,
                 proc: str = "/proc", host: str = "", gpus: Callable[[int], str] = lambda _r: "") -> None:
        self.activity, self.clock, self.say, self.suspect = activity, clock, say, suspect
        self._store, self.proc, self.host, self.gpus = store, proc, host, gpus
        self.peers: Peers | None = None
        self._looked = False

    def place(self, view: RankView) -> Placement:
        """A rank placed with its host, GPU and node, to pool with other nodes' placements."""
        return view.placement(self.host, self.gpus(view.rank), self.peers.job.node if self.peers else -1)

    def look(self, job: Look) -> Verdict | None:
        """Meet the other nodes once; publish this node's progress age."""
        if not self._looked and self.activity.pids:
            self._looked = True
            env = read_environ(next(iter(self.activity.pids.values())), self.proc) or {}
            nodes = JobNodes.from_env(env)
            if nodes is not None:
                opener = self._store
                self.peers = Peers(nodes, self.clock, self.say,
                                   store=(lambda: opener(nodes)) if opener is not None else None)
                self.say(f"a job on {nodes.nnodes} nodes, this is node {nodes.node}: hangs are agreed with the "
                         f"other nodes' supervisors through the job's store at {nodes.master[0]}:{nodes.master[1]}")
        if self.peers is not None and not math.isnan(age := job.progress_age_s):
            self.peers.publish(job.now, age, self.suspect(age))
        return None
