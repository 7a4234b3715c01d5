"""Drain a Kubernetes node: cordon it and taint it NoSchedule through the official client, marked as ours.

The `kubernetes` package is imported only when a drain runs, so nodes without it lose nothing
but this executor, which then answers FAILED with the install hint.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from coldaisle.actions.fleet import FleetUnreadable, NodeState
from coldaisle.actions.interface import ActionKind, Decision, Outcome, Status
from coldaisle.telemetry.clock import Clock, RealClock

log = logging.getLogger(__name__)

DRAINED_BY = "coldaisle.io/drained-by"  # annotation: present (= "coldaisle") only on nodes we cordoned
DRAINED_AT = "coldaisle.io/drained-at"  # annotation: when we cordoned it (RFC 3339, UTC), beside the taint's timeAdded
REASON = "coldaisle.io/reason"
TAINT_KEY = "coldaisle.io/unhealthy"
_HINT = "the kubernetes client is not installed: pip install kubernetes"


def short_value(text: str, limit: int = 63) -> str:
    """A taint value: [A-Za-z0-9._-], at most 63 characters, alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:limit]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value) or "unhealthy"


class KubernetesDrain:
    """DRAIN executor for Kubernetes: cordon + taint `coldaisle.io/unhealthy=<reason>:NoSchedule`."""

    kind = ActionKind.DRAIN

    def __init__(self, api: Any | None = None, *, kubeconfig: str | None = None, clock: Clock | None = None) -> None:
        self._core = api  # a CoreV1Api (or anything with read_node/patch_node); built lazily when None
        self.kubeconfig = kubeconfig
        self.clock = clock or RealClock()

    def api(self) -> Any:
        """The CoreV1Api: in-cluster config first (the agent as a DaemonSet), else the kubeconfig."""
        if self._core is None:
            import kubernetes  # type: ignore[import-not-found]

            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config(config_file=self.kubeconfig)
            self._core = kubernetes.client.CoreV1Api()
        return self._core

    def execute(self, decision: Decision, *, dry_run: bool) -> Outcome:
        """Cordon (or, with `decision.restore`, uncordon a node of ours); never raises."""
        node = decision.target.node
        try:
            if decision.restore:
                status, detail = self.uncordon(node, dry_run=dry_run)
            else:
                reason = str(decision.params.get("reason") or decision.rule)
                status, detail = self.cordon(node, reason, dry_run=dry_run)
        except ImportError:
            status, detail = Status.FAILED, _HINT
        except Exception as exc:  # ApiException, config errors, a lost API server
            log.warning("kubernetes drain of %s failed: %s", node, exc)
            status, detail = Status.FAILED, f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        return Outcome(decision, status, detail, self.clock.time())

    def cordon(self, node: str, reason: str, *, dry_run: bool = False) -> tuple[Status, str]:
        """Mark `node` unschedulable and tainted, unless it is already cordoned (by a person: left alone)."""
        obj = self.api().read_node(node)
        ours = _annotations(obj).get(DRAINED_BY) == "coldaisle"
        if obj.spec.unschedulable:
            who = "coldaisle" if ours else "a person"
            return Status.DONE, f"{node} already cordoned by {who}; left alone"
        now = datetime.fromtimestamp(self.clock.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        taint = {"key": TAINT_KEY, "value": short_value(reason), "effect": "NoSchedule", "timeAdded": now}
        taints = [*(_taint(t) for t in obj.spec.taints or () if _taint(t)["key"] != TAINT_KEY), taint]
        body = {"metadata": {"annotations": {DRAINED_BY: "coldaisle", DRAINED_AT: now, REASON: reason[:1000]}},
                "spec": {"unschedulable": True, "taints": taints}}
        what = f"cordoned {node} and tainted it {TAINT_KEY}={taint['value']}:NoSchedule"
        if dry_run:
            return Status.DRY_RUN, f"would have {what}"
        self.api().patch_node(node, body)
        return Status.DONE, what

    def uncordon(self, node: str, *, dry_run: bool = False) -> tuple[Status, str]:
        """Undo our cordon and taint; a node cordoned without our annotation is never touched."""
        obj = self.api().read_node(node)
        if _annotations(obj).get(DRAINED_BY) != "coldaisle":
            if obj.spec.unschedulable:
                return Status.REFUSED, f"{node} was cordoned by a person; only they uncordon it"
            return Status.DONE, f"{node} is not cordoned by coldaisle; nothing to undo"
        taints = [_taint(t) for t in obj.spec.taints or () if _taint(t)["key"] != TAINT_KEY]
        body = {"metadata": {"annotations": {DRAINED_BY: None, DRAINED_AT: None, REASON: None}},
                "spec": {"unschedulable": False, "taints": taints}}
        if dry_run:
            return Status.DRY_RUN, f"would have uncordoned {node} and removed taint {TAINT_KEY}"
        self.api().patch_node(node, body)
        return Status.DONE, f"uncordoned {node} and removed taint {TAINT_KEY}"


    def node_state(self, node: str) -> NodeState:
        """One node for the healer (FleetUnreadable when the API does not answer)."""
        try:
            return _node_state(self.api().read_node(node))
        except ImportError:
            raise FleetUnreadable(_HINT) from None
        except Exception as exc:
            raise FleetUnreadable(f"{type(exc).__name__}: {str(exc).strip()[:300]}") from None

    def retag(self, node: str, reason: str, *, dry_run: bool = False) -> tuple[Status, str]:
        """Change our cordon's reason annotation (the node stays cordoned)."""
        if dry_run:
            return Status.DRY_RUN, f"would have set {node}'s reason: {reason}"
        self.api().patch_node(node, {"metadata": {"annotations": {REASON: reason[:1000]}}})
        return Status.DONE, f"{node} stays cordoned: {reason}"

    def fleet(self) -> list[NodeState]:
        """Every node of the cluster (`list nodes`): cordoned or NotReady is out of service; ours carry our taint."""
        try:
            items = self.api().list_node().items
        except ImportError:
            raise FleetUnreadable(_HINT) from None
        except Exception as exc:  # ApiException, a lost API server, missing RBAC
            raise FleetUnreadable(f"{type(exc).__name__}: {str(exc).strip()[:300]}") from None
        return [_node_state(obj) for obj in items]


def _node_state(obj: Any) -> NodeState:
    """One node: cordoned or not Ready is unavailable; ours when our annotation is there, since our taint's time."""
    ours = _annotations(obj).get(DRAINED_BY) == "coldaisle"
    ready = any(getattr(c, "type", None) == "Ready" and getattr(c, "status", None) == "True"
                for c in (getattr(getattr(obj, "status", None), "conditions", None) or ()))
    since = None
    for t in obj.spec.taints or ():
        taint = _taint(t)
        if taint["key"] == TAINT_KEY and taint.get("timeAdded"):
            since = _epoch(taint["timeAdded"])
    if since is None and ours:
        since = _epoch(_annotations(obj).get(DRAINED_AT, ""))
    unavailable = bool(obj.spec.unschedulable) or not ready
    reason = f"coldaisle: {_annotations(obj).get(REASON, '')}" if ours else ""
    return NodeState(obj.metadata.name, unavailable, ours and unavailable, since, reason)


def _epoch(stamp: str) -> float | None:
    """RFC 3339 (`2026-01-12T20:27:31Z`) to epoch seconds, None when it is not one."""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def _annotations(obj: Any) -> dict[str, str]:
    return dict(getattr(obj.metadata, "annotations", None) or {})


def _taint(t: Any) -> dict[str, Any]:
    """A V1Taint (or a mapping) as the plain dict a patch body carries."""
    get = t.get if isinstance(t, dict) else lambda k: getattr(t, k, None)
    out = {"key": get("key"), "value": get("value"), "effect": get("effect")}
    added = get("time_added") or get("timeAdded")
    if added is not None:
        out["timeAdded"] = added if isinstance(added, str) else added.isoformat()
    return {k: v for k, v in out.items() if v is not None}
