"""Deletion: finalizers and deletionTimestamp, owner-reference garbage collection in its three modes,
preconditions, and pod logs served from the kubelet's files."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from apiserver_harness import ApiServer, Kubectl
from kubernetes import client
from kubernetes.client.rest import ApiException


def _ns(k8s: Any) -> str:
    name = f"g-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(k8s).create_namespace({"metadata": {"name": name}})
    return name


def _eventually(check: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.05)


def _exists(core: client.CoreV1Api, ns: str, name: str) -> bool:
    try:
        core.read_namespaced_config_map(name, ns)
        return True
    except ApiException as err:
        assert err.status == 404
        return False


def _owner_and_children(core: client.CoreV1Api, ns: str, block: bool = False) -> Any:
    owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid,
           "blockOwnerDeletion": block}  # fmt: skip
    for name in ("child-1", "child-2"):
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "ownerReferences": [ref]}})
    return owner


def test_finalizers_hold_deletion_until_removed(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map("f", ns)
    held = core.read_namespaced_config_map("f", ns)
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.finalizers == ["example.com/hold"]
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("f", ns, {"metadata": {"finalizers": ["example.com/hold", "x/y"]}})
    assert err.value.status == 403
    core.patch_namespaced_config_map("f", ns, {"metadata": {"finalizers": None}})
    assert not _exists(core, ns, "f")


def test_background_deletion_collects_dependents(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    _owner_and_children(core, ns)
    core.delete_namespaced_config_map("owner", ns, propagation_policy="Background")
    assert not _exists(core, ns, "owner")
    _eventually(lambda: not _exists(core, ns, "child-1") and not _exists(core, ns, "child-2"), "children go")


def test_foreground_deletion_waits_for_blocking_dependents(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    _owner_and_children(core, ns, block=True)
    core.patch_namespaced_config_map("child-1", ns, {"metadata": {"finalizers": ["example.com/slow"]}})
    core.delete_namespaced_config_map("owner", ns, propagation_policy="Foreground")
    owner = core.read_namespaced_config_map("owner", ns)
    assert owner.metadata.deletion_timestamp and "foregroundDeletion" in owner.metadata.finalizers
    _eventually(lambda: not _exists(core, ns, "child-2"), "the free child is deleted")
    time.sleep(0.2)
    assert _exists(core, ns, "owner"), "the owner waits for its blocking child"
    core.patch_namespaced_config_map("child-1", ns, {"metadata": {"finalizers": None}})
    _eventually(lambda: not _exists(core, ns, "owner"), "the owner goes after its children")


def test_orphan_deletion_keeps_dependents_without_owner(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    _owner_and_children(core, ns)
    core.delete_namespaced_config_map("owner", ns, propagation_policy="Orphan")
    _eventually(lambda: not _exists(core, ns, "owner"), "the owner goes")
    for name in ("child-1", "child-2"):
        assert not core.read_namespaced_config_map(name, ns).metadata.owner_references


def test_kubectl_delete_and_preconditions(apiserver: ApiServer, kubectl: Kubectl, k8s: Any) -> None:
    ns = _ns(k8s)
    core = client.CoreV1Api(k8s)
    made = core.create_namespaced_config_map(ns, {"metadata": {"name": "pre"}})
    code, raw = apiserver.request(
        f"/api/v1/namespaces/{ns}/configmaps/pre", method="DELETE",
        body={"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}},
    )  # fmt: skip
    assert code == 409 and "Precondition failed" in json.loads(raw)["message"]
    out = kubectl("delete", "configmap", "pre", "-n", ns).stdout
    assert out.strip() == 'configmap "pre" deleted'
    assert made.metadata.uid and not _exists(core, ns, "pre")
    result = kubectl("delete", "configmap", "pre", "-n", ns, check=False)
    assert result.returncode != 0 and 'configmaps "pre" not found' in result.stderr


def test_pod_logs_from_kubelet_files(apiserver: ApiServer, kubectl: Kubectl, k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    pod = core.create_namespaced_pod(ns, {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "main", "image": "ghcr.io/modelops/worker:1"}]}})  # fmt: skip
    assert pod.status.phase == "Pending"
    waiting = kubectl("logs", "p", "-n", ns, check=False)
    assert waiting.returncode != 0 and "waiting to start" in waiting.stderr
    logs = apiserver.dir / "pods" / ns / "p" / pod.metadata.uid / "main"
    logs.mkdir(parents=True)
    (logs / "0.log").write_text("first run\n")
    (logs / "1.log").write_text("line 1\nline 2\nline 3\n")
    assert kubectl("logs", "p", "-n", ns).stdout == "line 1\nline 2\nline 3\n"
    assert kubectl("logs", "p", "-n", ns, "--tail=1").stdout == "line 3\n"
    assert kubectl("logs", "p", "-n", ns, "--previous").stdout == "first run\n"
    status = {"status": {"phase": "Succeeded", "containerStatuses": [{"name": "main", "restartCount": 1, "ready": False,
              "image": "x", "imageID": "", "state": {"terminated": {"exitCode": 0}}}]}}  # fmt: skip
    core.patch_namespaced_pod_status("p", ns, status)
    assert kubectl("logs", "-f", "p", "-n", ns).stdout.endswith("line 3\n")


def test_eviction_respects_disruption_budgets(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    policy = client.PolicyV1Api(k8s)
    ns = _ns(k8s)
    core.create_namespaced_pod(ns, {"metadata": {"name": "e", "labels": {"app": "e"}}, "spec": {"containers": [
        {"name": "main", "image": "ghcr.io/modelops/worker:1"}]}})  # fmt: skip
    policy.create_namespaced_pod_disruption_budget(
        ns,
        {
            "metadata": {"name": "keep"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "e"}}},
        },
    )
    policy.patch_namespaced_pod_disruption_budget_status(
        "keep", ns, {"status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1,
                                "expectedPods": 1}})  # fmt: skip
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "e", "namespace": ns}}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_eviction("e", ns, eviction)
    assert err.value.status == 429
    assert "disruption budget" in json.loads(err.value.body)["message"]
    policy.patch_namespaced_pod_disruption_budget_status("keep", ns, {"status": {"disruptionsAllowed": 1}})
    core.create_namespaced_pod_eviction("e", ns, eviction)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("e", ns)
    assert err.value.status == 404


def test_bound_pods_are_deleted_gracefully(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    core.create_namespaced_pod(ns, {"metadata": {"name": "g"}, "spec": {"containers": [
        {"name": "main", "image": "ghcr.io/modelops/worker:1"}]}})  # fmt: skip
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "g"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}  # fmt: skip
    core.create_namespaced_pod_binding("g", ns, binding, _preload_content=False)
    # Foreground: the GC drops its finalizer at once (no dependents), the pod still waits for its kubelet.
    core.delete_namespaced_pod("g", ns, propagation_policy="Foreground")
    time.sleep(0.3)
    pod = core.read_namespaced_pod("g", ns)
    assert pod.metadata.deletion_timestamp is not None and pod.metadata.deletion_grace_period_seconds == 30
    assert not pod.metadata.finalizers
    core.delete_namespaced_pod("g", ns, grace_period_seconds=0)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("g", ns)
    assert err.value.status == 404
