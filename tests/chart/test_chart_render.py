"""The chart renders valid, restricted, correctly wired manifests for the values users set.

Each value set is rendered with the real helm binary, linted with `helm lint --strict`, validated
against the official Kubernetes 1.33 schemas (strict: unknown fields are errors) and every pod
template is checked against Pod Security Standards "restricted".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
from chartkit import CHART, NAMESPACE, Manifests, of_kind, only

from modelops.podsecurity import check_restricted

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "watch-namespaces": {"watchNamespaces": ["team-a", "team-b"]},
    "custom-image": {
        "image": {"repository": "registry.example.com/mlp/operator", "tag": "1.2.3", "pullPolicy": "Always"},
        "workerImage": {"repository": "registry.example.com/mlp/worker", "tag": "1.2.3-cuda"},
        "imagePullSecrets": ["regcred"],
    },
    "resources-and-scheduling": {
        "resources": {"requests": {"cpu": "250m", "memory": "300Mi"}, "limits": {"memory": "1Gi"}},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
                    ]
                }
            }
        },
        "podAnnotations": {"example.com/team": "ml-platform"},
        "operator": {"extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]},
    },
    "minimal": {
        "metrics": {"service": {"enabled": False}},
        "serviceAccount": {"create": False, "name": "existing"},
        "podDisruptionBudget": {"enabled": False},
    },
    # Everything optional switched on, as a production install with the Prometheus Operator would.
    "production": {
        "watchNamespaces": ["team-a"],
        "image": {"digest": "sha256:" + "ab" * 32},
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "labels": {"release": "kube-prometheus-stack"},
                "metricRelabelings": [
                    {"action": "drop", "regex": "python_gc_.*", "sourceLabels": ["__name__"]}
                ],
            },
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
        "networkPolicy": {
            "enabled": True,
            "apiServer": {"cidrs": ["172.18.0.2/32", "fd00::2/128"]},
            "metricsFrom": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
            ],
            "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"port": 3128}]}],
        },
        "podDisruptionBudget": {"maxUnavailable": 0},
    },
}

# Kinds of the Prometheus Operator: their schemas are CRDs that no offline validator carries, so
# tests/chart/test_chart_production.py checks how they are wired instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_lint_strict_is_clean(helm: Callable[..., Any], values: dict[str, Any]) -> None:
    result = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, values=values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_manifest_is_valid_kubernetes_1_33(
    render: Callable[..., Manifests], values: dict[str, Any]
) -> None:
    manifests = render(values)
    assert manifests
    for manifest in manifests:
        if manifest["kind"] not in CRD_KINDS:
            assert_valid(manifest, "1.33")


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_manifest_is_valid_on_the_oldest_supported_kubernetes(
    render: Callable[..., Manifests], values: dict[str, Any]
) -> None:
    # Chart.yaml promises kubeVersion >=1.28: nothing may use a field or API added later.
    for manifest in render(values, "--kube-version", "1.28.0"):
        if manifest["kind"] not in CRD_KINDS:
            assert_valid(manifest, "1.28")


def assert_valid(manifest: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.absolute_path)
        pytest.fail(
            f"{manifest['kind']}/{manifest['metadata']['name']} at {path} (Kubernetes {version}): {error.message}"
        )


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_pod_is_restricted(render: Callable[..., Manifests], values: dict[str, Any]) -> None:
    holders = [
        m
        for m in render(values)
        if m["kind"] in {"Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
    ]
    assert holders
    for holder in holders:
        assert check_restricted(holder) == [], holder["metadata"]["name"]


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_object_carries_the_standard_labels(
    render: Callable[..., Manifests], values: dict[str, Any]
) -> None:
    for manifest in render(values):
        labels = manifest["metadata"]["labels"]
        assert labels["helm.sh/chart"] == "modelops-0.1.0"
        assert labels["app.kubernetes.io/name"] == "modelops"
        assert labels["app.kubernetes.io/instance"] == "mo"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_defaults_install_an_all_namespaces_operator(render: Callable[..., Manifests]) -> None:
    manifests = render()
    assert sorted(m["kind"] for m in manifests) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    deployment = only(manifests, "Deployment")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    # Two replicas, one active (leader election), rolled one at a time.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }

    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mo-modelops"
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["runAsGroup"] == 65532
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/modelops/operator:0.1.0"
    assert container["command"] == ["modelops"]
    assert container["args"] == [
        "operator",
        "--health-port=8081",
        "--metrics-port=8080",
        "--log-format=json",
        "--leader-elect",
        "--leader-election-id=mo-modelops",
        "--leader-election-lease-duration=15",
        "--leader-election-renew-deadline=10",
        "--leader-election-retry-period=2",
    ]
    # The standby on another node when the cluster has one (preferred, so one node still works).
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == deployment["spec"]["selector"]["matchLabels"]
    )

    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8080, "health": 8081}
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["MODELOPS_WORKER_IMAGE"]["value"] == "ghcr.io/modelops/worker:0.1.0"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # The only writable path is an emptyDir at /tmp.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]

    service = only(manifests, "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )

    binding = only(manifests, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == only(manifests, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mo-modelops", "namespace": NAMESPACE}]
    assert only(manifests, "ServiceAccount")["automountServiceAccountToken"] is False


def test_without_leader_election_one_replica_is_recreated(render: Callable[..., Manifests]) -> None:
    deployment = only(render({"leaderElection": {"enabled": False}, "replicaCount": 1}), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert not any(a.startswith("--leader") for a in pod["containers"][0]["args"])
    assert "affinity" not in pod


def test_watch_namespaces_become_flags_and_roles(render: Callable[..., Manifests]) -> None:
    manifests = render(VALUE_SETS["watch-namespaces"])
    container = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert [a for a in container["args"] if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]

    # A Role and a RoleBinding in each watched namespace and nowhere else (besides the leader
    # election's own, in the release namespace).
    def watched(kind: str) -> list[dict[str, Any]]:
        return [r for r in of_kind(manifests, kind) if not r["metadata"]["name"].endswith("-leader-election")]

    for kind in ("Role", "RoleBinding"):
        assert sorted(r["metadata"]["namespace"] for r in watched(kind)) == ["team-a", "team-b"]
    for binding in watched("RoleBinding"):
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "mo-modelops",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "mo-modelops", "namespace": NAMESPACE}
        ]
    # The ClusterRole keeps only cluster-scoped resources: no cluster-wide access to pods.
    cluster_resources = {r for rule in only(manifests, "ClusterRole")["rules"] for r in rule["resources"]}
    assert "pods" not in cluster_resources and "trainingjobs" not in cluster_resources


def test_custom_images_and_pull_secrets(render: Callable[..., Manifests]) -> None:
    pod = only(render(VALUE_SETS["custom-image"]), "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example.com/mlp/operator:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELOPS_WORKER_IMAGE"] == "registry.example.com/mlp/worker:1.2.3-cuda"


def test_a_digest_pins_the_image(render: Callable[..., Manifests]) -> None:
    digest = "sha256:" + "ab" * 32
    container = only(render({"image": {"digest": digest}}), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["image"] == f"ghcr.io/modelops/operator@{digest}"


def test_resources_and_scheduling_reach_the_pod(render: Callable[..., Manifests]) -> None:
    values = VALUE_SETS["resources-and-scheduling"]
    deployment = only(render(values), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == values["resources"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["example.com/team"] == "ml-platform"
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in pod["containers"][0]["env"]


def test_minimal_uses_an_existing_service_account(render: Callable[..., Manifests]) -> None:
    manifests = render(VALUE_SETS["minimal"])
    assert of_kind(manifests, "ServiceAccount") == [] and of_kind(manifests, "Service") == []
    assert only(manifests, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"
    assert only(manifests, "ClusterRoleBinding")["subjects"][0]["name"] == "existing"


def test_rbac_can_be_left_to_the_cluster_admin(render: Callable[..., Manifests]) -> None:
    values = {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "provisioned"}}
    kinds = sorted(m["kind"] for m in render(values))
    assert kinds == ["Deployment", "PodDisruptionBudget", "Service"], "no Role for the Lease either"


def test_an_existing_service_account_must_be_named(helm: Callable[..., Any]) -> None:
    result = helm("template", "mo", str(CHART), values={"serviceAccount": {"create": False}})
    assert result.returncode != 0
    assert "serviceAccount.name is required when serviceAccount.create is false" in result.stderr


def test_chart_metadata(render: Callable[..., Manifests]) -> None:
    import yaml

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.28.0-0"
    assert chart["appVersion"] == "0.1.0"


def test_kube_version_below_1_28_is_refused(helm: Callable[..., Any]) -> None:
    result = helm("template", "mo", str(CHART), "--kube-version", "1.27.0")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr or ">=1.28.0-0" in result.stderr, result.stderr


def test_null_removes_a_default_resource(render: Callable[..., Manifests]) -> None:
    values = {"resources": {"limits": {"memory": None}}}
    container = only(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "memory" not in container["resources"].get("limits", {})
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_the_operator_cli_accepts_the_arguments_the_chart_passes(
    render: Callable[..., Manifests], values: dict[str, Any]
) -> None:
    # The real argument parser of `modelops operator`: a flag the CLI does not know would make the
    # pod crash-loop in a cluster, which no schema check of the manifest can see.
    cli = pytest.importorskip("modelops.cli", reason="modelops.cli is not written yet")
    container = only(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["modelops"]  # the console script of pyproject.toml
    parser, _ = cli.build_parser(container["args"])
    args = parser.parse_args(container["args"])
    assert args.command == "operator"
    assert args.namespaces == values.get("watchNamespaces", [])
    assert (args.health_port, args.metrics_port) == (8081, 8080)
    assert args.log_format == "json"


def test_install_notes_name_what_was_installed(helm: Callable[..., Any]) -> None:
    values = {"watchNamespaces": ["team-a", "team-b"], "replicaCount": 0}
    result = helm("install", "mo", str(CHART), "--namespace", NAMESPACE, "--dry-run=client", values=values)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"kubectl --namespace {NAMESPACE} rollout status deployment/mo-modelops" in notes
    assert "watches the namespaces: team-a, team-b" in notes
    assert "paused" in notes
