"""Clients that use more than JSON: helm v4 (server-side apply, protobuf release Secrets) and kubectl's
typed generators (`kubectl create configmap|secret|namespace` send protobuf)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from apiserver_harness import KUBECTL, ApiServer, Kubectl

HELM = KUBECTL.parent / "helm"
CHART = Path(__file__).parent / "fixtures" / "tiny-chart"


def _helm(server: ApiServer, *args: str) -> str:
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), HOME=str(server.dir),
               HELM_CACHE_HOME=str(server.dir / "helm-cache"), HELM_CONFIG_HOME=str(server.dir / "helm-config"),
               HELM_DATA_HOME=str(server.dir / "helm-data"))  # fmt: skip
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_helm_install_upgrade_uninstall(apiserver: ApiServer, kubectl: Kubectl) -> None:
    _helm(apiserver, "install", "tiny", str(CHART), "-n", "helm-test", "--create-namespace", "--wait=false")
    dep = json.loads(kubectl("get", "deploy", "tiny-web", "-n", "helm-test", "-o", "json").stdout)
    assert [e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]] == ["ALWAYS", "EXTRA"]
    releases = json.loads(_helm(apiserver, "list", "-n", "helm-test", "-o", "json"))
    assert [(r["name"], r["status"]) for r in releases] == [("tiny", "deployed")]
    _helm(apiserver, "upgrade", "tiny", str(CHART), "-n", "helm-test", "--set", "replicas=3",
          "--set", "extraEnv=false")  # fmt: skip
    dep = json.loads(kubectl("get", "deploy", "tiny-web", "-n", "helm-test", "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 3
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["ALWAYS"], "a field dropped from the chart is removed on upgrade"
    secrets = kubectl("get", "secrets", "-n", "helm-test", "-o", "name").stdout.split()
    assert secrets == ["secret/sh.helm.release.v1.tiny.v1", "secret/sh.helm.release.v1.tiny.v2"]
    _helm(apiserver, "uninstall", "tiny", "-n", "helm-test")
    left = kubectl("get", "deploy,svc,cm,secrets", "-n", "helm-test", "-o", "name").stdout.split()
    assert left == ["configmap/kube-root-ca.crt"], "only what the control plane itself keeps there remains"


def test_kubectl_typed_create_commands(kubectl: Kubectl) -> None:
    kubectl("create", "namespace", "typed")
    kubectl("create", "configmap", "c", "-n", "typed", "--from-literal=a=b")
    kubectl("create", "secret", "generic", "s", "-n", "typed", "--from-literal=p=q")
    cm = json.loads(kubectl("get", "configmap", "c", "-n", "typed", "-o", "json").stdout)
    assert cm["data"] == {"a": "b"} and "generateName" not in cm["metadata"]
    secret = json.loads(kubectl("get", "secret", "s", "-n", "typed", "-o", "json").stdout)
    assert secret["data"] == {"p": "cQ=="} and secret["type"] == "Opaque"
    result = kubectl("create", "deployment", "d", "-n", "typed", "--image=x", check=False)
    assert result.returncode != 0, "kinds without a protobuf decoder are refused with 415, not misread"
    assert "unknown format" in result.stderr


def test_server_side_apply_conflicts_and_force(kubectl: Kubectl) -> None:
    manifest = """apiVersion: apps/v1
kind: Deployment
metadata: {name: owned, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: owned}}
  template:
    metadata: {labels: {app: owned}}
    spec: {containers: [{name: main, image: ghcr.io/modelops/worker:1}]}
"""
    kubectl("apply", "--server-side", "-f", "-", stdin=manifest)
    kubectl("scale", "deployment", "owned", "--replicas=3")
    result = kubectl("apply", "--server-side", "-f", "-", stdin=manifest, check=False)
    assert result.returncode != 0
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas' in result.stderr
    )
    assert "--force-conflicts" in result.stderr
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest)
    dep = json.loads(kubectl("get", "deployment", "owned", "-o", "json", "--show-managed-fields").stdout)
    assert dep["spec"]["replicas"] == 1
    assert "conflict" not in kubectl("apply", "--server-side", "-f", "-", stdin=manifest).stderr
    kubectl("delete", "deployment", "owned")
