"""KubernetesDrain: cordon + taint with our annotation, a person's cordon left alone, a missing client explained.

The API object is a small in-memory stand-in with CoreV1Api's read_node/patch_node (merge-patch semantics);
the real client is not needed for the executor's decisions.
"""

from __future__ import annotations

import importlib.util
import time
from types import SimpleNamespace
from typing import Any

from coldaisle.actions.interface import ActionKind, Decision, Status, Target
from coldaisle.actions.k8s import DRAINED_BY, TAINT_KEY, KubernetesDrain, short_value

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
    drainer = KubernetesDrain(api)
    outcome = drainer.execute(_drain(), dry_run=False)
    assert outcome.status == Status.DONE, outcome.detail
    spec, ann = api.node.spec, api.node.metadata.annotations
    assert spec.unschedulable is True and ann[DRAINED_BY] == "coldaisle"
    ours = {"key": TAINT_KEY, "value": "gpu-overheat-node-gpu-88-gpu2-temperature_c-91.0", "effect": "NoSchedule"}
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
