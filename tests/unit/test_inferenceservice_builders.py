"""The children of an InferenceService, as manifests: valid, restricted, wired to the serving contract."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.serveconfig import ENV_SERVE_CONFIG, METRIC_INFLIGHT, METRIC_REQUESTS, ServeConfig
from modelops.builders import inferenceservice as b
from modelops.podsecurity import check_restricted
from modelops_local.schema import validate_builtin

SERVED = b.Served("digits-1", 1, "ab" * 32, "digits-checkpoints", "output/model.pt")


def spec(**over: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"modelRef": {"model": "digits", "version": 1}, **over})


def children(s: InferenceServiceSpec) -> list[dict[str, Any]]:
    return [
        b.deployment("digits", "ns", "uid-1", s, SERVED, b.STABLE),
        b.deployment("digits", "ns", "uid-1", s, SERVED, b.CANARY, replicas=1),
        b.service("digits", "ns", "uid-1"),
        b.service("digits", "ns", "uid-1", track=b.STABLE),
        b.hpa("digits", "ns", "uid-1", s),
        b.pdb("digits", "ns", "uid-1"),
    ]


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"autoscaling": {"metric": "concurrency", "target": 8}},
        {"autoscaling": {"metric": "rps", "target": 100}},
        {"resources": {"gpus": 1, "gpuType": "NVIDIA-A100"}, "auth": {"secretName": "tokens"}},
    ],
)
def test_every_child_validates_and_pods_are_restricted(over: dict[str, Any]) -> None:
    for obj in children(spec(**over)):
        assert validate_builtin(obj) == [], obj["kind"]
        if obj["kind"] == "Deployment":
            assert check_restricted(obj) == [], obj["kind"]
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert obj["metadata"]["annotations"][b.ANNOTATION_APPLIED]


def test_the_pod_runs_the_server_with_the_serving_contract() -> None:
    s = spec(batching={"maxBatchSize": 16}, quantization="int8", auth={"secretName": "tokens", "key": "t"})
    dep = b.deployment("digits", "ns", "uid-1", s, SERVED, b.STABLE)
    pod = dep["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["modelops-worker", "serve"]
    config = ServeConfig.model_validate_json(
        next(e["value"] for e in container["env"] if e["name"] == ENV_SERVE_CONFIG)
    )
    assert config.model_name == "digits" and config.model_version == "1"
    assert config.model_version_name == "digits-1"
    assert config.artifact_path == f"{b.MODEL_MOUNT}/output/model.pt"
    assert config.sha256 == SERVED.sha256
    assert config.batching.max_batch_size == 16 and config.quantization == "int8"
    # The Secret's key is projected as one file: a missing key fails the mount, naming the key.
    assert config.auth_tokens_file == f"{b.AUTH_MOUNT}/{b.AUTH_FILE}"
    auth = next(v for v in pod["spec"]["volumes"] if v["name"] == "auth")["secret"]
    assert auth["secretName"] == "tokens" and auth["items"] == [{"key": "t", "path": b.AUTH_FILE}]
    # The artifact's claim, read-only; the probes are the V2 health paths.
    claim = next(v for v in pod["spec"]["volumes"] if v["name"] == "model")["persistentVolumeClaim"]
    assert claim == {"claimName": "digits-checkpoints", "readOnly": True}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"
    assert pod["metadata"]["labels"][b.LABEL_MODELVERSION] == "digits-1"
    assert container["resources"]["requests"] == container["resources"]["limits"]
    # The HPA owns the stable track's size; the canary's is ours.
    assert "replicas" not in dep["spec"]
    assert b.deployment("digits", "ns", "u", s, SERVED, b.CANARY, replicas=2)["spec"]["replicas"] == 2


def test_the_service_spans_both_tracks_and_maps_80_to_the_server() -> None:
    svc = b.service("digits", "ns", "u")
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == "http"
    assert b.LABEL_TRACK not in svc["spec"]["selector"]
    assert b.service("digits", "ns", "u", tracks=(b.STABLE,))["spec"]["selector"][b.LABEL_TRACK] == "stable"
    canary = b.service("digits", "ns", "u", track=b.CANARY)
    assert canary["metadata"]["name"] == "digits-canary"
    assert b.url("digits", "ns") == "http://digits.ns.svc.cluster.local/v2/models/digits"


@pytest.mark.parametrize(
    ("metric", "kind", "name"),
    [("cpu", "Resource", "cpu"), ("concurrency", "Pods", METRIC_INFLIGHT), ("rps", "Pods", METRIC_REQUESTS)],
)
def test_the_hpa_scales_the_stable_track_on_the_chosen_metric(metric: str, kind: str, name: str) -> None:
    s = spec(
        minReplicas=2,
        maxReplicas=5,
        autoscaling={"metric": metric, "target": 7, "scaleDownStabilizationSeconds": 30},
    )
    hpa = b.hpa("digits", "ns", "u", s)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "digits-stable"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 30
    m = hpa["spec"]["metrics"][0]
    assert m["type"] == kind
    if kind == "Pods":
        assert m["pods"]["metric"]["name"] == name and m["pods"]["target"]["averageValue"] == "7"
    else:
        assert m["resource"]["target"]["averageUtilization"] == 7


def test_the_http_route_weights_the_track_services() -> None:
    s = spec(
        trafficRouting={"mode": "gatewayAPI", "parentRefs": [{"name": "gw"}], "hostnames": ["x.example"]}
    )
    route = b.http_route("digits", "ns", "u", s, 25)
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in backends] == [("digits-stable", 75), ("digits-canary", 25)]
    assert route["spec"]["parentRefs"] == [{"name": "gw"}]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    only = b.http_route("digits", "ns", "u", s, 0)["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in only] == [("digits-stable", 100)]


def test_the_applied_digest_changes_only_with_the_desired_form() -> None:
    one = b.deployment("digits", "ns", "u", spec(), SERVED, b.STABLE)
    again = b.deployment("digits", "ns", "u", spec(), SERVED, b.STABLE)
    other = b.deployment("digits", "ns", "u", spec(batching={"maxBatchSize": 8}), SERVED, b.STABLE)
    key = b.ANNOTATION_APPLIED
    assert one["metadata"]["annotations"][key] == again["metadata"]["annotations"][key]
    assert one["metadata"]["annotations"][key] != other["metadata"]["annotations"][key]
    json.dumps(one)


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("pvc://claim/output/model.pt", ("claim", "output/model.pt")),
        ("pvc://claim/model.pt", ("claim", "model.pt")),
        ("pvc://claim/", None),
        ("pvc://claim/../etc/passwd", None),
        ("s3://bucket/model.pt", None),
        (None, None),
    ],
)
def test_pvc_uris(uri: str | None, parsed: tuple[str, str] | None) -> None:
    assert b.parse_pvc_uri(uri) == parsed
