"""KubernetesDrain: cordon + taint with our annotation, a person's cordon left alone, a missing client explained.

The API object is a small in-memory stand-in with CoreV1Api's read_node/patch_node (merge-patch semantics);
the real client is not needed for the executor's decisions.
"""

from __future__ import annotations

import importlib.util
import time
from types import SimpleNamespace
from typing import Any

import pytest

from coldaisle.actions.interface import ActionKind, Decision, Status, Target
from coldaisle.actions.k8s import DRAINED_AT, DRAINED_BY, TAINT_KEY, KubernetesDrain, short_value
from coldaisle.telemetry.clock import SimClock

NODE = "node-gpu-88"


class FakeCoreV1:
    """read_node/patch_node over one node, applying a JSON merge patch to metadata and spec."""

    def __init__(self, *, unschedulable: bool = False, taints: list[dict] | None = None,
                 annotations: dict[str, str] | None = None) -> None:
        self.node = SimpleNamespace(metadata=SimpleNamespace(name=NODE, annotations=dict(annotations or {})),
                                    spec=SimpleNamespace(unschedulable=unschedulable, taints=list(taints or [])))
        self.patches: list[dict[str, Any]] = []

    def read_node(self, name: str) -> SimpleNamespace:
        assert name == NODE
        return self.node

    def patch_node(self, name: str, body: dict[str, Any]) -> SimpleNamespace:
        self.patches.append(body)
        for k, v in body.get("metadata", {}).get("annotations", {}).items():
            if v is None:
                self.node.metadata.annotations.pop(k, None)
            else:
                self.node.metadata.annotations[k] = v
        self.node.spec.unschedulable = body["spec"]["unschedulable"]
        self.node.spec.taints = body["spec"]["taints"]
        return self.node


def _drain(restore: bool = False) -> Decision:
    return Decision(time.time(), "gpu-overheat", "critical", ActionKind.DRAIN, Target(NODE),
                    params={"reason": "gpu-overheat: node-gpu-88/gpu2 temperature_c=91.0"}, restore=restore)


def test_cordon_taint_and_uncordon_our_own() -> None:
    other = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    api = FakeCoreV1(taints=[other])
    drainer = KubernetesDrain(api, clock=SimClock(1_780_000_000.0))  # 2026-05-28T20:26:40Z
    outcome = drainer.execute(_drain(), dry_run=False)
    assert outcome.status == Status.DONE, outcome.detail
    spec, ann = api.node.spec, api.node.metadata.annotations
    assert spec.unschedulable is True and ann[DRAINED_BY] == "coldaisle" and ann[DRAINED_AT] == "2026-05-28T20:26:40Z"
    ours = {"key": TAINT_KEY, "value": "gpu-overheat-node-gpu-88-gpu2-temperature_c-91.0", "effect": "NoSchedule",
            "timeAdded": "2026-05-28T20:26:40Z"}  # the fleet breaker dates our cordon by it
    assert spec.taints == [other, ours]

    assert drainer.execute(_drain(), dry_run=False).detail.endswith("already cordoned by coldaisle; left alone")
    outcome = drainer.execute(_drain(restore=True), dry_run=False)
    assert outcome.status == Status.DONE
    assert spec is api.node.spec and api.node.spec.unschedulable is False and api.node.spec.taints == [other]
    assert DRAINED_BY not in api.node.metadata.annotations


def test_a_persons_cordon_is_left_alone() -> None:
    api = FakeCoreV1(unschedulable=True)
    drainer = KubernetesDrain(api)
    outcome = drainer.execute(_drain(), dry_run=False)
    assert outcome.status == Status.DONE and "cordoned by a person" in outcome.detail
    assert drainer.execute(_drain(restore=True), dry_run=False).status == Status.REFUSED
    assert api.patches == [] and api.node.spec.unschedulable is True


def test_dry_run_patches_nothing() -> None:
    api = FakeCoreV1()
    outcome = KubernetesDrain(api).execute(_drain(), dry_run=True)
    assert outcome.status == Status.DRY_RUN and outcome.detail.startswith(f"would have cordoned {NODE}")
    assert api.patches == []


def test_missing_client_is_a_failed_outcome_with_a_hint() -> None:
    outcome = KubernetesDrain(kubeconfig="/nonexistent/kubeconfig").execute(_drain(), dry_run=False)
    assert outcome.status == Status.FAILED
    if importlib.util.find_spec("kubernetes") is None:
        assert outcome.detail == "the kubernetes client is not installed: pip install kubernetes"


def test_taint_values_are_valid_label_values() -> None:
    assert short_value("coldaisle: GPU 3 at 95 °C!") == "coldaisle-GPU-3-at-95-C"
    assert len(short_value("x" * 100)) == 63
    assert short_value("!!!") == "unhealthy"


class FakeFleetApi:
    """read_node/list_node/patch_node over several nodes, shaped like CoreV1Api's V1Node objects."""

    def __init__(self, n: int) -> None:
        self.nodes = {f"gpu-{i:02d}": SimpleNamespace(
            metadata=SimpleNamespace(name=f"gpu-{i:02d}", annotations={}),
            spec=SimpleNamespace(unschedulable=False, taints=[]),
            status=SimpleNamespace(conditions=[SimpleNamespace(type="Ready", status="True")])) for i in range(n)}

    def read_node(self, name: str) -> SimpleNamespace:
        return self.nodes[name]

    def list_node(self) -> SimpleNamespace:
        return SimpleNamespace(items=list(self.nodes.values()))

    def patch_node(self, name: str, body: dict[str, Any]) -> SimpleNamespace:
        node = self.nodes[name]
        for k, v in body.get("metadata", {}).get("annotations", {}).items():
            if v is None:
                node.metadata.annotations.pop(k, None)
            else:
                node.metadata.annotations[k] = v
        if "spec" in body:
            node.spec.unschedulable = body["spec"]["unschedulable"]
            node.spec.taints = [SimpleNamespace(key=t["key"], value=t.get("value"), effect=t["effect"],
                                                time_added=t.get("timeAdded")) for t in body["spec"]["taints"]]
        return node


def test_the_fleet_breaker_counts_our_taints_cordons_and_not_ready_nodes() -> None:
    """Kubernetes: our cordons dated by their taint's timeAdded; a person's cordon and a NotReady node count too."""
    from coldaisle.actions.fleet import FleetBreaker

    api, clock = FakeFleetApi(10), SimClock(1_780_000_000.0)
    drainer = KubernetesDrain(api, clock=clock)
    api.nodes["gpu-08"].spec.unschedulable = True  # a person's cordon
    api.nodes["gpu-09"].status.conditions[0].status = "False"  # NotReady
    breaker = FleetBreaker(drainer, max_share=0.3, window_s=3600, clock=clock, settle_s=0)
    assert breaker.before("gpu-00") == (None, True)
    assert drainer.cordon("gpu-00", "hot")[0] == Status.DONE
    states = {s.name: s for s in drainer.fleet()}
    assert states["gpu-00"].ours and states["gpu-00"].since == 1_780_000_000.0 and states["gpu-00"].unavailable
    assert states["gpu-08"].unavailable and not states["gpu-08"].ours and states["gpu-09"].unavailable
    assert states["gpu-00"].reason == "coldaisle: hot"
    why, _ = breaker.before("gpu-01")  # 1 of ours + 2 others = 3 = ceil(0.3 * 10): one more is over
    assert why is not None and "1 drained by coldaisle in the window + 2 otherwise out of service, limit 3" in why
    assert drainer.retag("gpu-00", "flapping: resumed 2 times")[0] == Status.DONE
    assert drainer.node_state("gpu-00").reason == "coldaisle: flapping: resumed 2 times"


def test_the_fleet_cannot_be_read_without_the_api() -> None:
    from coldaisle.actions.fleet import FleetUnreadable

    class Down:
        def list_node(self) -> None:
            raise ConnectionError("the API server does not answer")

    with pytest.raises(FleetUnreadable, match="does not answer"):
        KubernetesDrain(Down()).fleet()
