"""The local API server as a client first meets it: TLS, token, kubeconfig, discovery, OpenAPI, restarts."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable

from apiserver_harness import ApiServer, Kubectl, run_kubectl


def test_every_api_path_requires_the_token(apiserver: ApiServer) -> None:
    code, body = apiserver.request("/api/v1/namespaces", token=None)
    assert code == 401
    status = json.loads(body)
    assert status["kind"] == "Status" and status["reason"] == "Unauthorized"
    assert apiserver.request("/api/v1/namespaces", token="wrong")[0] == 401
    assert apiserver.request("/api/v1/namespaces")[0] == 200
    for probe in ("/healthz", "/readyz", "/livez"):
        assert apiserver.request(probe, token=None)[0] == 200


def test_kubeconfig_and_token_are_private_and_use_tls(apiserver: ApiServer) -> None:
    for name in ("kubeconfig", "token", "apiserver.key"):
        mode = stat.S_IMODE((apiserver.dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"
    assert apiserver.url.startswith("https://127.0.0.1:")
    assert "certificate-authority-data" in apiserver.kubeconfig.read_text()


def test_kubectl_discovers_builtin_and_subresources(apiserver: ApiServer, kubectl: Kubectl) -> None:
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.33.")
    resources = kubectl("api-resources", "--no-headers").stdout
    for line in ("deployments", "poddisruptionbudgets", "customresourcedefinitions", "leases", "cronjobs"):
        assert line in resources
    code, body = apiserver.request("/apis/apps/v1")
    names = {r["name"]: r for r in json.loads(body)["resources"]}
    assert names["deployments/scale"]["kind"] == "Scale"
    assert names["deployments/scale"]["group"] == "autoscaling"
    assert names["deployments"]["shortNames"] == ["deploy"]
    assert "all" in names["deployments"]["categories"]
    code, body = apiserver.request("/api/v1")
    assert code == 200
    core = {r["name"] for r in json.loads(body)["resources"]}
    assert {"pods/log", "pods/status", "namespaces/finalize", "services/status"} <= core


def test_unknown_paths_answer_not_found_status(apiserver: ApiServer) -> None:
    code, body = apiserver.request("/apis/nope.example.com/v1/things")
    assert code == 404
    assert json.loads(body)["reason"] == "NotFound"


def test_kubectl_explain_builtin_and_nested_fields(kubectl: Kubectl) -> None:
    out = kubectl("explain", "deployment.spec.replicas").stdout
    assert "Number of desired pods" in out
    out = kubectl("explain", "pods.spec.containers.env").stdout
    assert "valueFrom" in out


def test_state_survives_restart(fresh_apiserver: Callable[..., ApiServer]) -> None:
    first = fresh_apiserver()
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\ndata: {a: b}\n"
    run_kubectl(first, "apply", "-f", "-", stdin=cm)
    rv = json.loads(run_kubectl(first, "get", "configmap", "keep", "-o", "json").stdout)["metadata"]
    first.stop()
    second = fresh_apiserver(directory=first.dir)
    assert second.token == first.token
    assert second.url == first.url, "a restarted server comes back on its port, so old kubeconfigs work"
    again = json.loads(run_kubectl(second, "get", "configmap", "keep", "-o", "json").stdout)
    assert again["data"] == {"a": "b"}
    assert again["metadata"]["uid"] == rv["uid"]
    run_kubectl(second, "label", "configmap", "keep", "x=y")
    newer = json.loads(run_kubectl(second, "get", "configmap", "keep", "-o", "json").stdout)["metadata"]
    assert int(newer["resourceVersion"]) > int(rv["resourceVersion"])
