"""GETs are served from a cache of each object's JSON: no write may ever leave a GET answering stale."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException


def _ns(k8s: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(k8s).create_namespace({"metadata": {"name": name}})
    return name


def test_get_after_every_kind_of_write_returns_the_new_state(k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    made = core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"k": "1"}})
    assert core.read_namespaced_config_map("c", ns).data == {"k": "1"}  # now cached
    assert core.read_namespaced_config_map("c", ns).data == {"k": "1"}  # served from the cache

    got = core.read_namespaced_config_map("c", ns)
    got.data = {"k": "2"}
    core.replace_namespaced_config_map("c", ns, got)
    after_put = core.read_namespaced_config_map("c", ns)
    assert after_put.data == {"k": "2"}

    core.patch_namespaced_config_map("c", ns, {"data": {"k": "3"}})
    after_patch = core.read_namespaced_config_map("c", ns)
    assert after_patch.data == {"k": "3"}
    assert int(after_patch.metadata.resource_version) > int(after_put.metadata.resource_version)

    core.delete_namespaced_config_map("c", ns)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("c", ns)
    assert gone.value.status == 404

    again = core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"k": "4"}})
    reread = core.read_namespaced_config_map("c", ns)
    assert reread.data == {"k": "4"} and reread.metadata.uid == again.metadata.uid != made.metadata.uid


def test_get_after_status_and_scale_writes_returns_the_new_state(k8s: Any) -> None:
    apps = client.AppsV1Api(k8s)
    ns = _ns(k8s)
    labels = {"app": "d"}
    apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels}, "spec": {"containers": [{"name": "m", "image": "x:1"}]}}},
    })  # fmt: skip
    assert apps.read_namespaced_deployment("d", ns).spec.replicas == 1

    apps.patch_namespaced_deployment_status("d", ns, {"status": {"observedGeneration": 7}})
    assert apps.read_namespaced_deployment("d", ns).status.observed_generation == 7

    apps.patch_namespaced_deployment_scale("d", ns, {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("d", ns).spec.replicas == 3
