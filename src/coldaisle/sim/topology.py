"""Cluster layout as index arrays: which node, rack, row and shelf every GPU belongs to."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from coldaisle.sim.scenario import Topology

I32 = NDArray[np.int32]


@dataclass(frozen=True)
class Layout:
    """Rows -> racks -> shelves -> nodes -> GPUs, numbered from 0 internally, from 1 for people."""

    topology: Topology

    @cached_property
    def n_nodes(self) -> int:
        """Nodes in the cluster."""
        t = self.topology
        return t.rows * t.racks_per_row * t.nodes_per_rack

    @property
    def n_racks(self) -> int:
        """Racks in the cluster."""
        return self.topology.rows * self.topology.racks_per_row

    @property
    def n_rows(self) -> int:
        """Rows in the room."""
        return self.topology.rows

    @cached_property
    def n_gpus(self) -> int:
        """GPUs in the cluster."""
        return self.n_nodes * self.topology.gpus_per_node

    @cached_property
    def node_names(self) -> tuple[str, ...]:
        """Host names, in node order (`node-gpu-01` ...)."""
        t = self.topology
        return tuple(t.node_name.format(n=t.first_node + i) for i in range(self.n_nodes))

    @cached_property
    def node_index(self) -> dict[str, int]:
        """Host name -> node index."""
        return {name: i for i, name in enumerate(self.node_names)}

    @cached_property
    def node_rack(self) -> I32:
        """Rack index of each node."""
        return (np.arange(self.n_nodes) // self.topology.nodes_per_rack).astype(np.int32)

    @cached_property
    def node_shelf(self) -> I32:
        """Shelf index (within its rack) of each node; shelf 0 is the bottom."""
        per_shelf = math.ceil(self.topology.nodes_per_rack / self.topology.shelves_per_rack)
        return ((np.arange(self.n_nodes) % self.topology.nodes_per_rack) // per_shelf).astype(np.int32)

    @cached_property
    def rack_row(self) -> I32:
        """Row index of each rack."""
        return (np.arange(self.n_racks) // self.topology.racks_per_row).astype(np.int32)

    @cached_property
    def gpu_node(self) -> I32:
        """Node index of each GPU."""
        return (np.arange(self.n_gpus) // self.topology.gpus_per_node).astype(np.int32)

    @cached_property
    def gpu_local(self) -> I32:
        """Index of each GPU within its node (NVML's device index)."""
        return (np.arange(self.n_gpus) % self.topology.gpus_per_node).astype(np.int32)

    @cached_property
    def gpu_rack(self) -> I32:
        """Rack index of each GPU."""
        return self.node_rack[self.gpu_node]

    @cached_property
    def gpu_row(self) -> I32:
        """Row index of each GPU."""
        return self.rack_row[self.gpu_rack]

    @cached_property
    def node_row(self) -> I32:
        """Row index of each node."""
        return self.rack_row[self.node_rack]

    def gpus_of_node(self, node: int) -> I32:
        """Global GPU indices of one node."""
        g = self.topology.gpus_per_node
        return np.arange(node * g, (node + 1) * g, dtype=np.int32)

    def gpu(self, node: int, local: int) -> int:
        """Global index of GPU `local` on `node`."""
        return node * self.topology.gpus_per_node + local

    def gpu_label(self, gpu: int) -> str:
        """`node-gpu-88/gpu2` for people."""
        return f"{self.node_names[int(self.gpu_node[gpu])]}/gpu{int(self.gpu_local[gpu])}"

    def expand_nodes(self, spec: str | list[str]) -> list[int]:
        """Node indices of `node-gpu-01..node-gpu-48, node-gpu-60` style lists; KeyError names the bad one."""
        items = [spec] if isinstance(spec, str) else list(spec)
        out: list[int] = []
        for item in items:
            for part in (p.strip() for p in item.split(",")):
                if not part:
                    continue
                lo, _, hi = part.partition("..")
                a = self._lookup(lo)
                b = self._lookup(hi) if hi else a
                out.extend(range(min(a, b), max(a, b) + 1))
        return sorted(set(out))

    def _lookup(self, name: str) -> int:
        name = name.strip()
        if name in self.node_index:
            return self.node_index[name]
        m = re.fullmatch(r"rack:?(\d+)", name)
        if m and 1 <= int(m.group(1)) <= self.n_racks:
            raise KeyError(f"{name!r}: racks are not allowed in a node range")
        raise KeyError(f"no node named {name!r} (the cluster has {self.node_names[0]}..{self.node_names[-1]})")
