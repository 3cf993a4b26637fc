"""The chart's web console: off by default; when on, read-only RBAC of its own and a restricted pod."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import kubernetes_validate
from chartkit import Manifests

from modelops.console import server
from modelops.podsecurity import check_restricted

ON = {"console": {"enabled": True, "allowedHosts": ["console.example.com"]}}


def console_objects(manifests: Manifests) -> Manifests:
    return [m for m in manifests if m["metadata"]["labels"].get("app.kubernetes.io/component") == "console"]


def test_no_console_by_default(render: Callable[..., Manifests]) -> None:
    assert console_objects(render()) == []


def test_the_console_can_only_read_and_never_secrets(render: Callable[..., Manifests]) -> None:
    objects = console_objects(render(ON))
    assert sorted(m["kind"] for m in objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    role = next(m for m in objects if m["kind"] == "ClusterRole")
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
        assert "secrets" not in rule["resources"] and "*" not in rule["resources"], rule
    binding = next(m for m in objects if m["kind"] == "ClusterRoleBinding")
    deployment = next(m for m in objects if m["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"] != "mo-modelops"
    # Never selected by the operator's Service, PDB or NetworkPolicy (component operator).
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "console"


def test_the_console_pod_is_restricted_valid_and_runs_the_console_as_passed(
    render: Callable[..., Manifests],
) -> None:
    objects = console_objects(render(ON))
    for m in objects:
        kubernetes_validate.validate(m, "1.33", strict=True)
    deployment = next(m for m in objects if m["kind"] == "Deployment")
    assert check_restricted(deployment) == []
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["modelops"] and container["args"][0] == "console"
    parser = argparse.ArgumentParser()
    server.add_arguments(parser)
    args = parser.parse_args(container["args"][1:])
    assert args.address == "0.0.0.0" and args.port == container["ports"][0]["containerPort"]
    assert server.allowed(args) == (*server.LOOPBACK_HOSTS, "console.example.com")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
