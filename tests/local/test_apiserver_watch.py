"""Watches: ordered events as they happen, resuming from a resourceVersion, 410 Expired, bookmarks,
selectors, timeouts, and the initial-events protocol."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from apiserver_harness import ApiServer, Kubectl
from kubernetes import client, config, watch

# Every namespace holds the control plane's `kube-root-ca.crt`; these watches leave it out.
NO_ROOT_CA = "fieldSelector=metadata.name%21%3Dkube-root-ca.crt"


def _ns(k8s: Any) -> str:
    name = f"w-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(k8s).create_namespace({"metadata": {"name": name}})
    return name


def _stream(server: ApiServer, path: str) -> Iterator[dict[str, Any]]:
    import urllib.request

    req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(req, context=server.ssl_context(), timeout=15) as resp:
        for line in resp:
            yield json.loads(line)


def test_watch_sees_changes_in_order(apiserver: ApiServer, k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    got: list[tuple[str, str, str]] = []
    done = threading.Event()

    def consume() -> None:
        for event in _stream(apiserver, f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}"):
            data = (event["object"].get("data") or {}).get("v", "")
            got.append((event["type"], event["object"]["metadata"]["name"], data))
            if event["type"] == "DELETED":
                done.set()
                return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}, "data": {"v": "1"}})
    core.patch_namespaced_config_map("a", ns, {"data": {"v": "2"}})
    core.delete_namespaced_config_map("a", ns)
    assert done.wait(10)
    assert got == [("ADDED", "a", "1"), ("MODIFIED", "a", "2"), ("DELETED", "a", "2")]


def test_watch_resumes_from_resource_version(apiserver: ApiServer, k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    first = core.create_namespaced_config_map(ns, {"metadata": {"name": "r1"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "r2"}})
    core.patch_namespaced_config_map("r1", ns, {"data": {"x": "y"}})
    events = []
    for event in _stream(apiserver, f"/api/v1/namespaces/{ns}/configmaps?watch=1&timeoutSeconds=1"
                                    f"&resourceVersion={first.metadata.resource_version}"):  # fmt: skip
        events.append((event["type"], event["object"]["metadata"]["name"]))
    assert events == [("ADDED", "r2"), ("MODIFIED", "r1")]


def test_watch_without_resource_version_starts_with_current_state(apiserver: ApiServer, k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "s1"}})
    events = list(
        _stream(apiserver, f"/api/v1/namespaces/{ns}/configmaps?watch=1&timeoutSeconds=1&{NO_ROOT_CA}")
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "s1")]


def test_too_old_resource_version_is_gone(fresh_apiserver: Callable[..., ApiServer]) -> None:
    server = fresh_apiserver("--watch-history", "20")
    api = config.new_client_from_config(config_file=str(server.kubeconfig))
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map("default").metadata.resource_version
    for i in range(30):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
    events = list(_stream(server, f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={start}"))
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["code"] == 410 and status["reason"] == "Expired"
    assert status["message"].startswith(f"too old resource version: {start} (")
    # The official client's watch raises the same way a client-go reflector would relist.
    with pytest.raises(client.exceptions.ApiException) as err:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=start,
                                      timeout_seconds=2):  # fmt: skip
            pass
    assert err.value.status == 410
    api.close()


def test_selectors_and_bookmarks(apiserver: ApiServer, k8s: Any) -> None:
    core = client.CoreV1Api(k8s)
    ns = _ns(k8s)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "in", "labels": {"pick": "yes"}}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "out"}})
    # Leaving the selection looks like a deletion to a watcher of that selection.
    core.patch_namespaced_config_map("in", ns, {"metadata": {"labels": {"pick": "no"}}})
    events = list(_stream(apiserver, f"/api/v1/namespaces/{ns}/configmaps?watch=1&labelSelector=pick%3Dyes"
                                     f"&resourceVersion={rv}&timeoutSeconds=1"))  # fmt: skip
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "in"),
        ("DELETED", "in"),
    ]
    events = list(_stream(apiserver, f"/api/v1/namespaces/{ns}/configmaps?watch=1&sendInitialEvents=true&{NO_ROOT_CA}"
                                     "&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"
                                     "&timeoutSeconds=1"))  # fmt: skip
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["ADDED", "ADDED"] and kinds[2] == "BOOKMARK"
    assert events[2]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_kubectl_get_watch_prints_rows(apiserver: ApiServer, kubectl: Kubectl, k8s: Any) -> None:
    ns = _ns(k8s)
    client.CoreV1Api(k8s).create_namespaced_config_map(
        ns, {"metadata": {"name": "shown"}, "data": {"a": "b"}}
    )
    out = kubectl("get", "configmaps", "-n", ns, "--watch", "--request-timeout=1s", "--field-selector",
                  "metadata.name!=kube-root-ca.crt", check=False).stdout  # fmt: skip
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert lines[1].split()[:2] == ["shown", "1"]
