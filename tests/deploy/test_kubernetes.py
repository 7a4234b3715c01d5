"""deploy/kubernetes: schema-valid offline, wired together, RBAC exactly what actions/k8s.py calls, the policy in sync.

Core objects are validated against the Kubernetes OpenAPI schemas bundled in `kubernetes-validate`, strict
(unknown fields refused), for the oldest (1.30: ValidatingAdmissionPolicy v1) and newest bundled versions.
The ServiceMonitor (a CRD) goes through the prometheus-operator models of `cloudcoil-models-prometheus-operator`:
parsed, then dumped back, so any field the CRD does not know shows up as a difference.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer
import yaml

from coldaisle.actions import k8s
from coldaisle.policy.loader import load_policy

Manifests = dict[tuple[str, str], dict[str, Any]]
REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())


def load_docs(path: Path) -> list[dict[str, Any]]:
    """Every YAML document of one manifest file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _core(manifests: Manifests) -> list[dict[str, Any]]:
    return [doc for (kind, _), doc in manifests.items() if kind != "ServiceMonitor"]


@pytest.mark.parametrize("version", VERSIONS)
def test_core_objects_match_the_kubernetes_schema(manifests: Manifests, version: str) -> None:
    for doc in _core(manifests):
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_refuses_a_misspelt_field(manifests: Manifests) -> None:
    ds = copy.deepcopy(manifests[("DaemonSet", "coldaisle-agent")])
    ds["spec"]["template"]["spec"]["hostPid"] = True  # the real field is hostPID
    with pytest.raises(kubernetes_validate.ValidationError, match="hostPid"):
        kubernetes_validate.validate(ds, VERSIONS[0], strict=True)


def _service_monitor_round_trip(doc: dict[str, Any]) -> dict[str, Any]:
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    return ServiceMonitor.model_validate(doc).model_dump(by_alias=True, exclude_unset=True, mode="json")


def test_service_monitor_matches_the_crd(manifests: Manifests) -> None:
    sm = manifests[("ServiceMonitor", "coldaisle-agent")]
    assert _service_monitor_round_trip(sm) == sm
    typo = copy.deepcopy(sm)
    typo["spec"]["endpoints"][0]["intervall"] = "15s"
    assert _service_monitor_round_trip(typo) != typo  # an unknown field is dropped, so the comparison catches it
    bad = copy.deepcopy(sm)
    bad["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(ValueError, match="interval"):
        _service_monitor_round_trip(bad)


def test_kustomization_lists_every_manifest() -> None:
    kust = load_docs(K8S / "kustomization.yaml")[0]
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kust["resources"]) == sorted(files)
    ds = load_docs(K8S / "daemonset.yaml")[0]
    image = ds["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.split(":")[0] in {i["name"] for i in kust["images"]}


# -- wiring ------------------------------------------------------------------------------------------------
def _agent(manifests: Manifests) -> dict[str, Any]:
    return manifests[("DaemonSet", "coldaisle-agent")]


def _container(manifests: Manifests) -> dict[str, Any]:
    [c] = _agent(manifests)["spec"]["template"]["spec"]["containers"]
    return c


def _agent_args(manifests: Manifests) -> dict[str, Any]:
    """The container's args as the real `coldaisle agent` command line parses them."""
    from coldaisle.cli import app

    group = typer.main.get_command(app)
    args = _container(manifests)["args"]
    assert args[0] == "agent"
    ctx = group.make_context("coldaisle", ["agent"])
    agent = group.get_command(ctx, "agent")  # type: ignore[attr-defined]
    return dict(agent.make_context("agent", list(args[1:])).params)


def test_agent_runs_with_the_mounted_policy_its_node_and_a_scrapable_port(manifests: Manifests) -> None:
    params = _agent_args(manifests)
    c = _container(manifests)
    pod = _agent(manifests)["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    cm = manifests[("ConfigMap", "coldaisle-policy")]
    policy_volume = next(n for n, v in volumes.items() if v.get("configMap", {}).get("name") == "coldaisle-policy")
    assert params["policy"] == f"{mounts[policy_volume]}/{next(iter(cm['data']))}"
    assert params["node"] == "$(NODE_NAME)"  # drains name the Kubernetes node, not the pod's hostname
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    host, _, port = params["listen"].rpartition(":")
    assert host == "0.0.0.0"  # Prometheus scrapes the pod IP
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == int(port)
    assert str(params["audit"]).startswith(mounts["state"] + "/")
    assert volumes["state"]["hostPath"]["path"] == "/var/lib/coldaisle"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_agent_pod_is_placed_and_privileged_as_a_node_guard(manifests: Manifests) -> None:
    pod = _agent(manifests)["spec"]["template"]["spec"]
    c = _container(manifests)
    assert pod["hostPID"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["serviceAccountName"] == manifests[("ServiceAccount", "coldaisle-agent")]["metadata"]["name"]
    tolerated = {(t["key"], t.get("effect")) for t in pod["tolerations"]}
    assert ("nvidia.com/gpu", "NoSchedule") in tolerated
    assert (k8s.TAINT_KEY, "NoSchedule") in tolerated  # it keeps running on the nodes it drained
    requests = c["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]
    assert "cpu" not in c["resources"].get("limits", {})  # a CPU limit would throttle it on a busy node
    everything = {**requests, **c["resources"].get("limits", {})}
    assert not any(k.startswith("nvidia.com/") for k in everything)  # watching GPUs must not take one from a job
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all" and env["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    caps = c["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"] and set(caps["add"]) == {"KILL", "SYS_NICE", "SYS_PTRACE"}
    assert c["securityContext"].get("privileged") is not True


def test_service_and_monitor_reach_the_agent_pods(manifests: Manifests) -> None:
    pod_labels = _agent(manifests)["spec"]["template"]["metadata"]["labels"]
    svc = manifests[("Service", "coldaisle-agent")]
    sm = manifests[("ServiceMonitor", "coldaisle-agent")]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert svc["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
    [port] = svc["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in _container(manifests)["ports"]}
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert targets["rack"] == ["__meta_kubernetes_node_label_coldaisle_io_rack"]  # needs attachMetadata.node
    assert sm["spec"]["attachMetadata"]["node"] is True


def test_every_namespaced_object_is_in_the_namespace(manifests: Manifests) -> None:
    namespace = manifests[("Namespace", "coldaisle")]["metadata"]["name"]
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                      "ValidatingAdmissionPolicyBinding"}
    for (kind, name), doc in manifests.items():
        assert (doc["metadata"].get("namespace") == namespace) == (kind not in cluster_scoped), (kind, name)


# -- the policy ConfigMap ------------------------------------------------------------------------------------
def test_policy_configmap_is_the_default_policy_and_loads(manifests: Manifests, tmp_path: Path) -> None:
    cm = manifests[("ConfigMap", "coldaisle-policy")]
    [(name, text)] = cm["data"].items()
    shipped = (REPO / "src/coldaisle/policy/default.yaml").read_text()
    assert text == shipped, "deploy/kubernetes/configmap-policy.yaml drifted from src/coldaisle/policy/default.yaml"
    path = tmp_path / name
    path.write_text(text)
    lp = load_policy(str(path))
    assert [cr.rule.name for cr in lp.rules] == [cr.rule.name for cr in load_policy("default").rules]
    assert lp.policy.mode == "dry-run"  # a fresh fleet decides and audits before anyone lets it act


# -- RBAC: exactly the API calls of actions/k8s.py -----------------------------------------------------------
_CLIENT_VERB = {"read": "get", "list": "list", "watch": "watch", "create": "create", "patch": "patch",
                "replace": "update", "delete": "delete"}


def k8s_api_calls() -> set[tuple[str, str]]:
    """(resource, verb) for every CoreV1Api method k8s.py calls on `self.api()`, by the client's naming."""
    tree = ast.parse(Path(k8s.__file__).read_text())
    calls: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        if isinstance(target, ast.Call) and isinstance(target.func, ast.Attribute) and target.func.attr == "api":
            m = re.fullmatch(r"(read|list|watch|create|patch|replace|delete)_(?:namespaced_)?([a-z_]+?)(_status)?",
                             node.func.attr)
            assert m, f"k8s.py calls {node.func.attr}, which this test cannot map to an RBAC rule"
            resource = m[2] + "s" + ("/status" if m[3] else "")
            calls.add((resource, _CLIENT_VERB[m[1]]))
    return calls


def granted(manifests: Manifests) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) every Role/ClusterRole in the manifests grants."""
    out = set()
    for (kind, _), doc in manifests.items():
        if kind in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                assert "resourceNames" not in rule and "nonResourceURLs" not in rule
                out |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return out


def test_rbac_grants_exactly_what_the_drain_executor_calls(manifests: Manifests) -> None:
    calls = k8s_api_calls()
    assert calls == {("nodes", "get"), ("nodes", "list"), ("nodes", "patch")}  # read_node, list_node (fleet), patch
    assert granted(manifests) == {("", resource, verb) for resource, verb in calls}
    binding = manifests[("ClusterRoleBinding", "coldaisle-agent")]
    assert binding["roleRef"]["name"] == "coldaisle-agent"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "coldaisle-agent", "namespace": "coldaisle"}]
