"""Verbs and their semantics through the official Python client: CRUD, patches, conflicts, bad input."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from apiserver_harness import ApiServer, Kubectl
from kubernetes import client
from kubernetes.client.rest import ApiException

# Every namespace holds the control plane's `kube-root-ca.crt`, as in a real cluster.
ROOT_CA = "kube-root-ca.crt"
NO_ROOT_CA = f"metadata.name!={ROOT_CA}"


def _ns(k8s: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(k8s).create_namespace({"metadata": {"name": name}})
    return name


def _status(err: ApiException) -> dict[str, Any]:
    return dict(json.loads(err.body))


def _deployment(name: str, env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "main", "image": "ghcr.io/modelops/worker:1", "env": env or []}]
                },
            },
        },
    }


def test_create_get_list_update_delete(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    made = core.create_namespaced_config_map(
        ns, {"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}}
    )
    assert made.metadata.uid and made.metadata.creation_timestamp and made.metadata.resource_version
    got = core.read_namespaced_config_map("a", ns)
    assert got.data == {"k": "v"}
    got.data["k"] = "w"
    updated = core.replace_namespaced_config_map("a", ns, got)
    assert int(updated.metadata.resource_version) > int(made.metadata.resource_version)
    listed = core.list_namespaced_config_map(ns, field_selector=NO_ROOT_CA)
    assert [c.metadata.name for c in listed.items] == ["a"]
    assert int(listed.metadata.resource_version) >= int(updated.metadata.resource_version)
    core.delete_namespaced_config_map("a", ns)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("a", ns)
    assert err.value.status == 404
    assert _status(err.value)["message"] == 'configmaps "a" not found'


def test_generate_name_and_already_exists(k8s: Any) -> None:
    apps = client.AppsV1Api(k8s)
    ns = _ns(k8s)
    made = apps.create_namespaced_deployment(ns, {**_deployment("x"), "metadata": {"generateName": "web-"}})
    assert made.metadata.name.startswith("web-") and len(made.metadata.name) == 9
    assert made.metadata.generation == 1
    assert made.spec.replicas == 1, "replicas defaults to 1 like the real server"
    apps.create_namespaced_deployment(ns, _deployment("same"))
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment(ns, _deployment("same"))
    assert err.value.status == 409
    assert _status(err.value)["reason"] == "AlreadyExists"
    assert _status(err.value)["message"] == 'deployments.apps "same" already exists'


def test_missing_namespace_is_not_found(k8s: Any) -> None:
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(k8s).create_namespaced_config_map("does-not-exist", {"metadata": {"name": "a"}})
    assert err.value.status == 404
    assert _status(err.value)["message"] == 'namespaces "does-not-exist" not found'


def test_stale_resource_version_conflicts(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    first = core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"n": "1"}})
    core.patch_namespaced_config_map("c", ns, {"data": {"n": "2"}})
    first.data = {"n": "3"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("c", ns, first)
    assert err.value.status == 409
    assert _status(err.value)["message"] == (
        'Operation cannot be fulfilled on configmaps "c": the object has been modified; please apply your '
        "changes to the latest version and try again"
    )
    assert core.read_namespaced_config_map("c", ns).data == {"n": "2"}


def test_merge_json_and_strategic_patches(apiserver: ApiServer, k8s: Any) -> None:
    apps = client.AppsV1Api(k8s)
    ns = _ns(k8s)
    apps.create_namespaced_deployment(
        ns, _deployment("p", [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    )
    # Strategic merge: env merges by name, a `$patch: delete` removes one entry.
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "main", "env": [
        {"name": "C", "value": "3"}, {"name": "A", "$patch": "delete"}]}]}}}}  # fmt: skip
    dep = apps.patch_namespaced_deployment("p", ns, patch)
    assert [(e.name, e.value) for e in dep.spec.template.spec.containers[0].env] == [("B", "2"), ("C", "3")]
    assert dep.metadata.generation == 2
    # JSON merge patch replaces lists wholesale and deletes with null.
    code, raw = apiserver.request(
        f"/apis/apps/v1/namespaces/{ns}/deployments/p", method="PATCH",
        body={"metadata": {"labels": {"app": None, "tier": "web"}}}, content_type="application/merge-patch+json",
    )  # fmt: skip
    assert code == 200
    dep = json.loads(raw)
    assert dep["metadata"]["labels"] == {"tier": "web"}
    assert dep["metadata"]["generation"] == 2, "metadata changes do not bump generation"
    # JSON patch.
    dep = apps.patch_namespaced_deployment("p", ns, [{"op": "replace", "path": "/spec/replicas", "value": 3}])
    assert dep.spec.replicas == 3 and dep.metadata.generation == 3
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment("p", ns, [{"op": "test", "path": "/spec/replicas", "value": 9}])
    assert err.value.status == 422


def test_status_subresource_and_main_resource_are_separate(k8s: Any) -> None:
    apps = client.AppsV1Api(k8s)
    ns = _ns(k8s)
    apps.create_namespaced_deployment(ns, {**_deployment("s"), "status": {"replicas": 5}})
    dep = apps.read_namespaced_deployment("s", ns)
    assert not dep.status.replicas, "status is not settable on create"
    dep = apps.patch_namespaced_deployment_status(
        "s", ns, {"status": {"replicas": 2}, "spec": {"replicas": 7}}
    )
    assert dep.status.replicas == 2 and dep.spec.replicas == 1 and dep.metadata.generation == 1
    dep = apps.patch_namespaced_deployment("s", ns, {"status": {"replicas": 9}, "spec": {"replicas": 4}})
    assert dep.status.replicas == 2 and dep.spec.replicas == 4 and dep.metadata.generation == 2


def test_scale_subresource(k8s: Any) -> None:
    apps = client.AppsV1Api(k8s)
    ns = _ns(k8s)
    apps.create_namespaced_deployment(ns, _deployment("sc"))
    scale = apps.read_namespaced_deployment_scale("sc", ns)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=sc"
    apps.patch_namespaced_deployment_scale("sc", ns, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("sc", ns).spec.replicas == 4


def test_dry_run_writes_nothing(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "d"}}, dry_run="All")
    assert core.list_namespaced_config_map(ns, field_selector=NO_ROOT_CA).items == []


def test_label_and_field_selectors(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    for name, labels in [("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "db"}), ("c", {})]:
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}})

    def names(**kw: str) -> list[str]:
        return [
            c.metadata.name
            for c in core.list_namespaced_config_map(ns, **kw).items
            if c.metadata.name != ROOT_CA
        ]

    assert names(label_selector="tier=web") == ["a"]
    assert names(label_selector="tier!=web") == ["b", "c"]
    assert names(label_selector="tier in (web,db)") == ["a", "b"]
    assert names(label_selector="tier notin (web)") == ["b", "c"]
    assert names(label_selector="tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c"]
    assert names(label_selector="tier,env=prod") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    with pytest.raises(ApiException) as err:
        names(field_selector="data.x=1")
    assert err.value.status == 400 and "not a known field selector" in _status(err.value)["message"]


def test_list_paging_with_continue(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    for i in range(7):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"p{i}", "labels": {"page": "yes"}}})
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(ns, limit=3, _continue=token, label_selector="page=yes")
        seen += [c.metadata.name for c in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(seen)
    assert seen == [f"p{i}" for i in range(7)] and pages == 3


def test_malformed_bodies_and_unknown_fields(apiserver: ApiServer, k8s: Any, kubectl: Kubectl) -> None:
    ns = _ns(k8s)
    path = f"/api/v1/namespaces/{ns}/configmaps"
    code, raw = apiserver.request(path, method="POST", body="{not json")
    assert code == 400 and json.loads(raw)["reason"] == "BadRequest"
    code, raw = apiserver.request(path, method="POST", body="a: [b", content_type="application/yaml")
    assert code == 400 and json.loads(raw)["reason"] == "BadRequest"
    code, raw = apiserver.request(path + "?fieldValidation=Strict", method="POST",
                                  body={"metadata": {"name": "u"}, "dataa": {"a": "b"}})  # fmt: skip
    assert code == 400
    assert json.loads(raw)["message"] == 'strict decoding error: unknown field "dataa"'
    warned = kubectl("apply", "--validate=warn", "-f", "-", stdin=f"apiVersion: v1\nkind: ConfigMap\nmetadata: "
                     f"{{name: w, namespace: {ns}}}\ndata: {{a: b}}\nbogus: 1\n")  # fmt: skip
    assert 'Warning: unknown field "bogus"' in warned.stderr
    stored = json.loads(kubectl("get", "configmap", "w", "-n", ns, "-o", "json").stdout)
    assert "bogus" not in stored and stored["data"] == {"a": "b"}, "unknown fields are dropped, not stored"
    manifest = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: u, namespace: {ns}}}\nspec: {{foo: 1}}\n"
    result = kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert result.returncode != 0
    assert 'unknown field "spec"' in result.stderr


def test_wrong_types_are_invalid_naming_the_field(apiserver: ApiServer, k8s: Any) -> None:
    ns = _ns(k8s)
    bad = _deployment("t")
    bad["spec"]["replicas"] = "three"
    code, raw = apiserver.request(f"/apis/apps/v1/namespaces/{ns}/deployments", method="POST", body=bad)
    assert code in (400, 422)
    assert "spec.replicas" in json.loads(raw)["message"]


def test_namespace_deletion_removes_contents(apiserver: ApiServer, k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "gone"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    code, raw = apiserver.request(f"/api/v1/namespaces/{ns}", method="DELETE")
    assert code == 200 and json.loads(raw)["status"]["phase"] == "Terminating"
    # Labelling a terminating namespace does not end it early: its content is still there.
    core.patch_namespace(ns, {"metadata": {"labels": {"x": "y"}}})
    assert core.read_namespace(ns).status.phase == "Terminating"
    assert core.read_namespaced_config_map("held", ns).metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    for _ in range(100):
        try:
            core.read_namespace(ns)
        except ApiException as gone:
            assert gone.status == 404
            break
        import time

        time.sleep(0.05)
    else:
        pytest.fail("namespace was never removed")
    assert core.list_namespaced_config_map(ns).items == []


def test_services_get_cluster_ips_from_the_local_range(k8s: Any) -> None:
    import ipaddress

    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    svc = core.create_namespaced_service(ns, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})
    assert ipaddress.ip_address(svc.spec.cluster_ip) in ipaddress.ip_network("127.96.0.0/16")
    assert svc.spec.cluster_ips == [svc.spec.cluster_ip]
    assert svc.spec.ports[0].target_port == 80 and svc.spec.ports[0].protocol == "TCP"
    other = core.create_namespaced_service(
        ns, {"metadata": {"name": "api"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert other.spec.cluster_ip != svc.spec.cluster_ip
    headless = core.create_namespaced_service(
        ns, {"metadata": {"name": "peers"}, "spec": {"clusterIP": "None", "ports": [{"port": 29500}]}}
    )
    assert headless.spec.cluster_ip == "None"
    patched = core.patch_namespaced_service("web", ns, {"metadata": {"labels": {"a": "b"}}})
    assert patched.spec.cluster_ip == svc.spec.cluster_ip


def test_events_in_both_api_groups(apiserver: ApiServer, k8s: Any) -> None:
    ns = _ns(k8s)
    client.EventsV1Api(k8s).create_namespaced_event(ns, {
        "metadata": {"name": "e1"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Tested",
        "note": "hello", "type": "Normal", "action": "Test", "reportingController": "tests",
        "reportingInstance": "tests-1", "regarding": {"kind": "Pod", "name": "p", "namespace": ns},
    })  # fmt: skip
    core = client.CoreV1Api(k8s)
    core.create_namespaced_event(ns, {
        "metadata": {"name": "e2"}, "reason": "Old", "message": "from core", "type": "Warning",
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": ns}, "source": {"component": "tests"},
    })  # fmt: skip
    as_core = {e.metadata.name: e for e in core.list_namespaced_event(ns).items}
    assert as_core["e1"].message == "hello" and as_core["e1"].involved_object.name == "p"
    # Read raw: a core event has no eventTime, which the generated events.k8s.io model refuses.
    code, raw = apiserver.request(f"/apis/events.k8s.io/v1/namespaces/{ns}/events")
    as_new = {e["metadata"]["name"]: e for e in json.loads(raw)["items"]}
    assert code == 200 and as_new["e2"]["note"] == "from core" and as_new["e2"]["regarding"]["kind"] == "Pod"
    selected = core.list_namespaced_event(ns, field_selector="involvedObject.name=p,type=Warning").items
    assert [e.metadata.name for e in selected] == ["e2"]


def test_pod_binding_assigns_a_node_once(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    core.create_namespaced_pod(ns, {"metadata": {"name": "b"}, "spec": {"containers": [
        {"name": "main", "image": "ghcr.io/modelops/worker:1"}]}})  # fmt: skip
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}  # fmt: skip
    core.create_namespaced_pod_binding("b", ns, binding, _preload_content=False)
    pod = core.read_namespaced_pod("b", ns)
    assert pod.spec.node_name == "node-1"
    assert [(c.type, c.status) for c in pod.status.conditions] == [("PodScheduled", "True")]
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_binding("b", ns, binding, _preload_content=False)
    assert err.value.status == 409
    assert core.list_namespaced_pod(ns, field_selector="spec.nodeName=node-1").items[0].metadata.name == "b"


def test_delete_collection_by_label(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    for name, labels in [("a", {"drop": "yes"}), ("b", {"drop": "yes"}), ("c", {})]:
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}})
    core.delete_collection_namespaced_config_map(ns, label_selector="drop=yes")
    assert [
        c.metadata.name for c in core.list_namespaced_config_map(ns, field_selector=NO_ROOT_CA).items
    ] == ["c"]
