"""node-guard.yaml: the admission policy's CEL, evaluated on the patches KubernetesDrain really sends.

RBAC can only grant "patch any node"; the ValidatingAdmissionPolicy narrows it to the node named in the
pod-bound token and to the cordon, our taint and our annotations. Its expressions are evaluated here with
cel-python (the CEL standard macros Kubernetes uses: has, filter, all, in), in Kubernetes' order:
matchConditions, then variables, then validations; the request objects are what the API server would build
(oldObject, object = oldObject with the merge patch applied, userInfo with the node-name claim).
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import celpy
import pytest
import yaml

from coldaisle.actions.interface import ActionKind, Decision, Status, Target
from coldaisle.actions.k8s import DRAINED_BY, TAINT_KEY, KubernetesDrain

GUARD = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "node-guard.yaml"
AGENT = "system:serviceaccount:coldaisle:coldaisle-agent"
CLAIM = "authentication.kubernetes.io/node-name"
PERSON_TAINT = {"key": "maintenance", "value": "bios-update", "effect": "NoSchedule"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class NodeApi:
    """read_node/patch_node over plain node dicts; patch bodies are kept for the admission check."""

    def __init__(self, node: dict[str, Any]) -> None:
        self.node, self.bodies = node, []

    def read_node(self, name: str) -> SimpleNamespace:
        meta, spec = self.node["metadata"], self.node["spec"]
        return SimpleNamespace(metadata=SimpleNamespace(name=name, annotations=meta.get("annotations")),
                               spec=SimpleNamespace(unschedulable=spec.get("unschedulable", False),
                                                    taints=spec.get("taints")))

    def patch_node(self, name: str, body: dict[str, Any]) -> None:
        self.bodies.append(body)
        self.node = merge_patch(self.node, body)


class Guard:
    """The policy's expressions, compiled once."""

    def __init__(self) -> None:
        docs = list(yaml.safe_load_all(GUARD.read_text()))
        spec = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy")["spec"]
        env = celpy.Environment()
        compile_ = lambda text: env.program(env.compile(text))  # noqa: E731
        self.conditions = [compile_(c["expression"]) for c in spec["matchConditions"]]
        self.variables = [(v["name"], compile_(v["expression"])) for v in spec["variables"]]
        self.validations = [(compile_(v["expression"]), v["message"]) for v in spec["validations"]]
        self.rules = spec["matchConstraints"]["resourceRules"]

    def admit(self, user: str, extra: dict[str, list[str]], old: dict[str, Any], new: dict[str, Any]) -> str | None:
        """None when allowed, else the first failing validation's message."""
        request = {"userInfo": {"username": user, "extra": extra}, "operation": "UPDATE"}
        act: dict[str, Any] = {"request": request, "object": new, "oldObject": old}
        if not all(bool(c.evaluate(celpy.json_to_cel(act))) for c in self.conditions):
            return None  # the policy does not apply to this user
        variables: dict[str, Any] = {}
        for name, prog in self.variables:
            variables[name] = prog.evaluate(celpy.json_to_cel({**act, "variables": variables}))
        ctx = celpy.json_to_cel(act)
        ctx["variables"] = celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in variables.items()})
        for prog, message in self.validations:
            result = prog.evaluate(ctx)
            if isinstance(result, Exception) or not bool(result):
                return message
        return None


@pytest.fixture(scope="module")
def guard() -> Guard:
    return Guard()


def _node(name: str = "node-gpu-88") -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "coldaisle.io/rack": "r04"},
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"taints": [dict(PERSON_TAINT)]}}


def _drain(node: dict[str, Any], *, restore: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """What KubernetesDrain does to `node`: (old object, new object)."""
    api = NodeApi(copy.deepcopy(node))
    d = Decision(0.0, "gpu-lost-or-critical-xid", "critical", ActionKind.DRAIN, Target(node["metadata"]["name"]),
                 restore=restore, params={"reason": "gpu-lost-or-critical-xid: node-gpu-88/gpu2 xid=79"})
    outcome = KubernetesDrain(api).execute(d, dry_run=False)
    assert outcome.status == Status.DONE, outcome.detail
    assert len(api.bodies) == 1
    return node, api.node


def _own(name: str) -> dict[str, list[str]]:
    return {CLAIM: [name], "authentication.kubernetes.io/pod-name": ["coldaisle-agent-x7k2p"]}


def test_the_agent_may_cordon_and_uncordon_its_own_node(guard: Guard) -> None:
    old, new = _drain(_node())
    assert new["spec"]["unschedulable"] is True
    assert {t["key"] for t in new["spec"]["taints"]} == {TAINT_KEY, PERSON_TAINT["key"]}
    assert guard.admit(AGENT, _own("node-gpu-88"), old, new) is None
    back_old, back_new = _drain(new, restore=True)
    assert DRAINED_BY not in back_new["metadata"]["annotations"]
    assert guard.admit(AGENT, _own("node-gpu-88"), back_old, back_new) is None


def test_another_node_is_refused(guard: Guard) -> None:
    old, new = _drain(_node("node-gpu-12"))
    refused = guard.admit(AGENT, _own("node-gpu-88"), old, new)
    assert refused == "the coldaisle agent may change only the node its pod runs on"


def test_a_token_without_the_node_claim_is_refused(guard: Guard) -> None:
    old, new = _drain(_node())
    message = guard.admit(AGENT, {"authentication.kubernetes.io/pod-name": ["x"]}, old, new)
    assert message is not None and "carries no node name" in message


@pytest.mark.parametrize(("change", "message"), [
    (lambda n: n["spec"].update(taints=[t for t in n["spec"]["taints"] if t["key"] != "maintenance"]),
     "only its own taint"),
    (lambda n: n["metadata"]["labels"].update({"nvidia.com/gpu.present": "false"}), "may not change node labels"),
    (lambda n: n["metadata"]["annotations"].update({"node.alpha.kubernetes.io/ttl": "30"}),
     "only coldaisle.io/ annotations"),
    (lambda n: n["metadata"]["annotations"].pop("node.alpha.kubernetes.io/ttl"), "only coldaisle.io/ annotations"),
])
def test_changes_beyond_the_cordon_are_refused(guard: Guard, change: Any, message: str) -> None:
    old, new = _drain(_node())
    assert guard.admit(AGENT, _own("node-gpu-88"), old, new) is None
    change(new)
    refused = guard.admit(AGENT, _own("node-gpu-88"), old, new)
    assert refused is not None and message in refused


def test_other_users_are_not_this_policys_business(guard: Guard) -> None:
    old = _node()
    new = merge_patch(old, {"metadata": {"labels": {"nvidia.com/gpu.present": "false"}}})
    assert guard.admit("kubernetes-admin", {}, old, new) is None
    assert guard.admit("system:node:node-gpu-12", {}, old, new) is None


def test_the_policy_covers_updates_of_nodes_only(guard: Guard) -> None:
    assert guard.rules == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
                            "resources": ["nodes"]}]
