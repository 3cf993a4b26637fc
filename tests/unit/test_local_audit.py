"""The local API server's audit log: request classification as RBAC sees it, and the JSON lines written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelops_local.apiserver.audit import AuditLog, RequestInfo, read_events, request_info
from modelops_local.apiserver.serviceaccounts import ADMIN, Identity


def rbac(info: RequestInfo) -> tuple[str, str, str, str, str, str]:
    return (info.verb, info.api_group, info.resource, info.subresource, info.namespace, info.name)


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        # core group, namespaced: get / list / create / update / patch / delete / deletecollection
        ("GET", "/api/v1/namespaces/ns/pods/web-0", {}, ("get", "", "pods", "", "ns", "web-0")),
        ("HEAD", "/api/v1/namespaces/ns/pods/web-0", {}, ("get", "", "pods", "", "ns", "web-0")),
        ("GET", "/api/v1/namespaces/ns/pods", {}, ("list", "", "pods", "", "ns", "")),
        ("POST", "/api/v1/namespaces/ns/pods", {}, ("create", "", "pods", "", "ns", "")),
        ("PUT", "/api/v1/namespaces/ns/pods/web-0", {}, ("update", "", "pods", "", "ns", "web-0")),
        ("PATCH", "/api/v1/namespaces/ns/pods/web-0", {}, ("patch", "", "pods", "", "ns", "web-0")),
        ("DELETE", "/api/v1/namespaces/ns/pods/web-0", {}, ("delete", "", "pods", "", "ns", "web-0")),
        ("DELETE", "/api/v1/namespaces/ns/pods", {}, ("deletecollection", "", "pods", "", "ns", "")),
        # all namespaces and cluster-scoped resources
        ("GET", "/api/v1/pods", {}, ("list", "", "pods", "", "", "")),
        ("GET", "/api/v1/nodes/n1", {}, ("get", "", "nodes", "", "", "n1")),
        ("PATCH", "/api/v1/nodes/n1/status", {}, ("patch", "", "nodes", "status", "", "n1")),
        # named groups
        ("GET", "/apis/apps/v1/namespaces/ns/deployments", {}, ("list", "apps", "deployments", "", "ns", "")),
        (
            "PUT",
            "/apis/apps/v1/namespaces/ns/deployments/web/scale",
            {},
            ("update", "apps", "deployments", "scale", "ns", "web"),
        ),
        (
            "PATCH",
            "/apis/modelops.dev/v1alpha1/namespaces/ml/trainingjobs/tj/status",
            {},
            ("patch", "modelops.dev", "trainingjobs", "status", "ml", "tj"),
        ),
        (
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/trainingjobs.modelops.dev",
            {},
            ("get", "apiextensions.k8s.io", "customresourcedefinitions", "", "", "trainingjobs.modelops.dev"),
        ),
        # subresources of pods and service accounts
        ("GET", "/api/v1/namespaces/ns/pods/web-0/log", {}, ("get", "", "pods", "log", "ns", "web-0")),
        (
            "POST",
            "/api/v1/namespaces/ns/pods/web-0/eviction",
            {},
            ("create", "", "pods", "eviction", "ns", "web-0"),
        ),
        (
            "POST",
            "/api/v1/namespaces/ns/pods/web-0/binding",
            {},
            ("create", "", "pods", "binding", "ns", "web-0"),
        ),
        (
            "POST",
            "/api/v1/namespaces/ns/serviceaccounts/default/token",
            {},
            ("create", "", "serviceaccounts", "token", "ns", "default"),
        ),
        # watch: by query (any value but 0/false) or the /watch/ path prefix
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "1"}, ("watch", "", "pods", "", "ns", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, ("watch", "", "pods", "", "ns", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "True"}, ("watch", "", "pods", "", "ns", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "false"}, ("list", "", "pods", "", "ns", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "0"}, ("list", "", "pods", "", "ns", "")),
        ("GET", "/api/v1/watch/namespaces/ns/pods", {}, ("watch", "", "pods", "", "ns", "")),
        ("GET", "/api/v1/watch/namespaces/ns/pods/web-0", {}, ("watch", "", "pods", "", "ns", "web-0")),
        ("GET", "/apis/apps/v1/watch/deployments", {}, ("watch", "apps", "deployments", "", "", "")),
        # kubectl get pod X -w: a watch of the collection narrowed to one name
        (
            "GET",
            "/api/v1/namespaces/ns/pods",
            {"watch": "1", "fieldSelector": "metadata.name=web-0"},
            ("watch", "", "pods", "", "ns", "web-0"),
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods",
            {"fieldSelector": "status.phase=Running,metadata.name==web-1"},
            ("list", "", "pods", "", "ns", "web-1"),
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods",
            {"fieldSelector": "metadata.name!=web-0"},
            ("list", "", "pods", "", "ns", ""),
        ),
        # namespaces themselves: the namespace of a namespace is its name; status/finalize subresources
        ("GET", "/api/v1/namespaces", {}, ("list", "", "namespaces", "", "", "")),
        ("GET", "/api/v1/namespaces/ml", {}, ("get", "", "namespaces", "", "ml", "ml")),
        ("DELETE", "/api/v1/namespaces/ml", {}, ("delete", "", "namespaces", "", "ml", "ml")),
        ("PUT", "/api/v1/namespaces/ml/finalize", {}, ("update", "", "namespaces", "finalize", "ml", "ml")),
        ("PUT", "/api/v1/namespaces/ml/status", {}, ("update", "", "namespaces", "status", "ml", "ml")),
        # the proxy verb keeps the rest of the path out of the subresource
        (
            "GET",
            "/api/v1/proxy/namespaces/ns/pods/web-0/metrics",
            {},
            ("proxy", "", "pods", "", "ns", "web-0"),
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods/web-0/proxy/metrics",
            {},
            ("get", "", "pods", "proxy", "ns", "web-0"),
        ),
    ],
)
def test_request_info_matches_what_rbac_checks(
    method: str, path: str, query: dict[str, str], expected: tuple[str, ...]
) -> None:
    info = request_info(method, path, query)
    assert info.is_resource_request
    assert rbac(info) == expected


@pytest.mark.parametrize(
    ("method", "path", "verb"),
    [
        ("GET", "/healthz", "get"),
        ("GET", "/version", "get"),
        ("GET", "/api", "get"),
        ("GET", "/api/v1", "get"),
        ("GET", "/apis", "get"),
        ("GET", "/apis/apps", "get"),
        ("GET", "/apis/apps/v1", "get"),
        ("GET", "/openapi/v3/api/v1", "get"),
        ("POST", "/logs/x", "post"),
        ("GET", "/", "get"),
    ],
)
def test_discovery_and_health_are_non_resource_requests_with_the_http_verb(
    method: str, path: str, verb: str
) -> None:
    info = request_info(method, path, {})
    assert not info.is_resource_request
    assert info.verb == verb
    assert info.path == path


def test_the_log_has_one_audit_event_per_request_with_user_and_code(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    operator = Identity(
        "system:serviceaccount:modelops-system:modelops",
        ("system:serviceaccounts", "system:serviceaccounts:modelops-system", "system:authenticated"),
        namespace="modelops-system",
        service_account="modelops",
        uid="sa-uid",
    )
    log.record(
        "PATCH",
        "/apis/modelops.dev/v1alpha1/namespaces/ml/trainingjobs/tj/status",
        {},
        user=operator,
        code=200,
        user_agent="kopf/1.45",
        source_ip="127.244.0.7",
    )
    log.record(
        "GET", "/api/v1/pods", {"watch": "1"}, user=ADMIN, code=200, request_uri="/api/v1/pods?watch=1"
    )
    log.record("GET", "/api/v1/secrets", {}, user=None, code=401)
    log.record("GET", "/readyz", {}, user=ADMIN, code=200)
    log.close()

    events = read_events(tmp_path / "audit.log")
    assert [e["verb"] for e in events] == ["patch", "watch", "list", "get"]
    first = events[0]
    assert first["apiVersion"] == "audit.k8s.io/v1" and first["kind"] == "Event"
    assert first["stage"] == "ResponseComplete" and first["level"] == "Metadata"
    assert first["user"]["username"] == "system:serviceaccount:modelops-system:modelops"
    assert "system:serviceaccounts:modelops-system" in first["user"]["groups"]
    assert first["objectRef"] == {
        "resource": "trainingjobs",
        "namespace": "ml",
        "name": "tj",
        "apiGroup": "modelops.dev",
        "apiVersion": "v1alpha1",
        "subresource": "status",
    }
    assert first["responseStatus"]["code"] == 200
    assert first["sourceIPs"] == ["127.244.0.7"] and first["userAgent"] == "kopf/1.45"
    assert first["requestReceivedTimestamp"].endswith("Z")
    assert events[1]["requestURI"] == "/api/v1/pods?watch=1"
    assert events[1]["objectRef"] == {"resource": "pods", "apiGroup": "", "apiVersion": "v1"}
    assert events[2]["user"]["username"] == "system:anonymous" and events[2]["responseStatus"]["code"] == 401
    assert "objectRef" not in events[3]
    assert len({e["auditID"] for e in events}) == 4
    assert (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o600


def test_a_watch_is_logged_when_it_starts_and_again_when_it_ends(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    started = log.record(
        "GET", "/api/v1/pods", {"watch": "true"}, user=ADMIN, code=200, stage="ResponseStarted"
    )
    log.record("GET", "/api/v1/pods", {"watch": "true"}, user=ADMIN, code=200, audit_id=started["auditID"])
    log.close()
    events = read_events(tmp_path / "audit.log")
    assert [(e["stage"], e["verb"]) for e in events] == [
        ("ResponseStarted", "watch"),
        ("ResponseComplete", "watch"),
    ]
    assert events[0]["auditID"] == events[1]["auditID"]


def test_the_log_appends_across_restarts_and_rotates_at_its_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    first = AuditLog(path)
    first.record("GET", "/api/v1/namespaces/a/pods", {}, user=ADMIN, code=200)
    first.close()
    second = AuditLog(path, max_bytes=2000)
    for i in range(8):
        second.record("GET", f"/api/v1/namespaces/a/pods/p{i}", {}, user=ADMIN, code=200)
    second.close()
    rotated = path.with_name("audit.log.1")
    assert rotated.exists()
    names = [e["objectRef"].get("name", "") for e in read_events(rotated) + read_events(path)]
    written = ["", *(f"p{i}" for i in range(8))]
    # In order, nothing skipped: one older generation is kept, so only the oldest lines may be gone.
    assert len(names) >= 4
    assert names == written[-len(names) :]
    assert path.stat().st_size <= 2000
    for line in path.read_text().splitlines():
        json.loads(line)
