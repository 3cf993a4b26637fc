"""Runtimes chosen by format, custom predictors, signatures, and the reasons a serving state can hang on.

Pure functions with plain dicts: the builders' pods and Services per runtime (including a GPU pod's
device, which no CPU machine can run), resolution of a format no runtime serves, canary analysis of a
custom predictor's own metric names and of no data at all, a missing Secret and a refused child.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from modelops.api import inferenceservice as api
from modelops.api.inferenceservice import Analysis, InferenceServiceSpec
from modelops.api.modelversion import ModelVersionSpec
from modelops.api.serveconfig import ENV_SERVE_CONFIG, METRIC_LATENCY, METRIC_REQUESTS, ServeConfig
from modelops.builders import inferenceservice as b
from modelops.builders import modelversion as mvb
from modelops.controllers import children
from modelops.controllers import inferenceservice as c
from modelops.controllers import inferenceservice_analysis as isvc_analysis
from modelops.controllers import inferenceservice_pods as isvc_pods
from modelops.controllers import inferenceservice_resolve as isvc_resolve
from modelops.controllers import modelversion as mv
from modelops.podsecurity import check_restricted
from modelops_local.schema import validate_builtin

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SIGNATURE = {
    "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "mask", "datatype": "BOOL", "shape": [-1, 3]},
    ],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
}
ONNX = b.Served("reg-1", 1, "ab" * 32, "models", "reg.onnx", "onnx", SIGNATURE)
PREDICTOR = {
    "image": "ghcr.io/acme/predictor:1.2",
    "command": ["python", "-m", "acme.serve"],
    "args": ["--port", "8000"],
    "port": 8000,
    "env": [
        {"name": "MODE", "value": "fast"},
        {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "acme", "key": "api-key"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ],
}


def spec(**over: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"modelRef": {"model": "reg", "version": 1}, **over})


def container(dep: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    return found


def serve_config(dep: dict[str, Any]) -> ServeConfig:
    env = container(dep)["env"]
    return ServeConfig.model_validate_json(next(e["value"] for e in env if e["name"] == ENV_SERVE_CONFIG))


# -- the worker runtime -------------------------------------------------------------------------------


def test_the_worker_serves_the_versions_format_and_signature_over_rest_and_grpc() -> None:
    dep = b.deployment("reg", "ns", "u", spec(precision="bf16"), ONNX, b.STABLE)
    config = serve_config(dep)
    assert config.format == "onnx" and config.precision == "bf16" and config.device == "auto"
    assert config.signature is not None and [t.name for t in config.signature.inputs] == ["x", "mask"]
    assert config.grpc_port == 9000
    ports = {p["name"]: p["containerPort"] for p in container(dep)["ports"]}
    assert ports == {"http": 8080, "grpc": 9000}
    svc = b.service("reg", "ns", "u")
    by_name = {p["name"]: p for p in svc["spec"]["ports"]}
    assert by_name["http"]["port"] == 80 and by_name["http"]["targetPort"] == "http"
    assert by_name["grpc"]["port"] == 9000 and by_name["grpc"]["targetPort"] == "grpc"
    assert by_name["grpc"]["appProtocol"] == b.GRPC_APP_PROTOCOL
    assert validate_builtin(svc) == [] and validate_builtin(dep) == [] and check_restricted(dep) == []


def test_a_gpu_pod_runs_the_model_on_its_gpu_with_the_asked_precision() -> None:
    s = spec(resources={"gpus": 1, "gpuType": "NVIDIA-L4"}, precision="fp16")
    dep = b.deployment("reg", "ns", "u", s, ONNX, b.STABLE)
    config = serve_config(dep)
    assert config.device == "cuda" and config.precision == "fp16"
    pod = dep["spec"]["template"]["spec"]
    assert container(dep)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert check_restricted(dep) == []


def test_the_default_analysis_series_are_the_workers() -> None:
    # api/inferenceservice.py spells them (serveconfig imports it): they must stay equal.
    assert api.DEFAULT_REQUESTS_METRIC == METRIC_REQUESTS and api.DEFAULT_LATENCY_METRIC == METRIC_LATENCY


# -- custom predictors --------------------------------------------------------------------------------


def test_a_custom_predictor_runs_the_users_container_restricted_with_the_version_mounted() -> None:
    s = spec(predictor=PREDICTOR, auth={"secretName": "tokens"})
    served = b.Served("reg-1", 1, "cd" * 32, "models", "reg.onnx", "onnx")
    dep = b.deployment("reg", "ns", "u", s, served, b.STABLE)
    ctr = container(dep)
    assert ctr["image"] == "ghcr.io/acme/predictor:1.2"
    assert ctr["command"] == ["python", "-m", "acme.serve"] and ctr["args"] == ["--port", "8000"]
    env = {e["name"]: e for e in ctr["env"]}
    assert env["MODELOPS_MODEL_PATH"]["value"] == "/mnt/models/reg.onnx"
    assert env["MODELOPS_MODEL_SHA256"]["value"] == "cd" * 32 and env["MODELOPS_MODEL_NAME"]["value"] == "reg"
    assert env["API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "acme", "key": "api-key"}}
    assert env["POD"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["MODELOPS_AUTH_TOKENS_FILE"]["value"].startswith(b.AUTH_MOUNT)
    assert ctr["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    # OIP v2 by default: the V2 health paths on the predictor's port.
    assert ctr["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert ctr["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    mounts = {m["mountPath"]: m for m in ctr["volumeMounts"]}
    assert mounts["/mnt/models"]["readOnly"] is True
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8000" and annotations[b.ANNOTATION_RUNTIME] == "custom"
    assert validate_builtin(dep) == [] and check_restricted(dep) == []


def test_a_plain_http_predictor_is_probed_by_tcp_and_its_own_probes_win() -> None:
    plain = spec(predictor={**PREDICTOR, "protocol": "http"})
    ctr = container(b.deployment("reg", "ns", "u", plain, ONNX, b.STABLE))
    assert ctr["readinessProbe"]["tcpSocket"] == {"port": "http"} and "httpGet" not in ctr["livenessProbe"]
    assert b.url("reg", "ns", "http") == "http://reg.ns.svc.cluster.local"  # no OIP path to promise
    own = {"httpGet": {"path": "/healthz", "port": 8000}, "periodSeconds": 5}
    mine = spec(predictor={**PREDICTOR, "readinessProbe": own, "livenessProbe": own})
    dep = b.deployment("reg", "ns", "u", mine, ONNX, b.STABLE)
    assert container(dep)["readinessProbe"] == own and container(dep)["livenessProbe"] == own
    assert validate_builtin(dep) == []


def test_a_predictor_without_a_model_is_served_as_itself_and_its_edits_roll_out() -> None:
    s = InferenceServiceSpec.model_validate({"predictor": PREDICTOR})
    tg = isvc_resolve.targets(s, {}, [])
    assert tg.stable is not None and tg.stable.model_version.startswith(b.PREDICTOR_REVISION_PREFIX)
    dep = b.deployment("echo", "ns", "u", s, tg.stable, b.STABLE)
    assert all(v["name"] != "model" for v in dep["spec"]["template"]["spec"]["volumes"])
    assert "MODELOPS_MODEL_PATH" not in {e["name"] for e in container(dep)["env"]}
    assert check_restricted(dep) == []
    p = c.plan(
        {"metadata": {"name": "echo", "namespace": "ns", "uid": "u"}, "spec": {}, "status": {}},
        s,
        tg,
        [],
        [],
        gateway_api=False,
        verdict=None,
        now=T0,
    )
    services = [m for m in p.manifests if m["kind"] == "Service"]
    assert [port["name"] for port in services[0]["spec"]["ports"]] == ["http"]  # no gRPC port to forward
    assert p.status_patch["rolloutHistory"][0]["trigger"] == "predictor"
    edited = InferenceServiceSpec.model_validate({"predictor": {**PREDICTOR, "image": "ghcr.io/acme/p:1.3"}})
    other = isvc_resolve.targets(edited, {}, [])
    assert other.stable is not None and other.stable.model_version != tg.stable.model_version


# -- a format no runtime serves -------------------------------------------------------------------------


def safetensors_version() -> dict[str, Any]:
    return {
        "metadata": {"name": "llm-1"},
        "spec": {"model": "llm", "version": 1, "format": "safetensors"},
        "status": {
            "phase": "Ready",
            "version": 1,
            "artifact": {"uri": "pvc://models/llm.safetensors", "sha256": "ef" * 32, "format": "safetensors"},
        },
    }


def test_a_format_no_runtime_serves_stalls_naming_the_format() -> None:
    s = InferenceServiceSpec.model_validate({"modelRef": {"model": "llm", "version": 1}})
    tg = isvc_resolve.targets(s, {}, [safetensors_version()])
    assert tg.stable is None and tg.problem is not None and tg.problem.reason == "NoRuntimeForFormat"
    meta = {"name": "llm", "namespace": "ns", "uid": "u", "generation": 1}
    p = c.plan({"metadata": meta, "status": {}}, s, tg, [], [], gateway_api=False, verdict=None, now=T0)
    ready = next(x for x in p.status_patch["conditions"] if x["type"] == "Ready")
    stalled = next(x for x in p.status_patch["conditions"] if x["type"] == "Stalled")
    assert ready["status"] == "False" and ready["reason"] == "NoRuntimeForFormat"
    assert "'safetensors'" in ready["message"] and stalled["status"] == "True"
    assert p.manifests == []  # nothing started that could only crash
    # A custom predictor serves any verified format.
    custom = InferenceServiceSpec.model_validate(
        {"modelRef": {"model": "llm", "version": 1}, "predictor": {"image": "vllm/vllm-openai:v0.6"}}
    )
    served = isvc_resolve.targets(custom, {}, [safetensors_version()]).stable
    assert served is not None and served.format == "safetensors"


# -- canary analysis of any runtime -------------------------------------------------------------------

MLSERVER = """# TYPE rest_server_requests_total counter
rest_server_requests_total{method="POST",path="/v2/models/m/infer",status_code="200"} 40
rest_server_requests_total{method="POST",path="/v2/models/m/infer",status_code="503"} 10
# TYPE rest_server_request_duration_seconds histogram
rest_server_request_duration_seconds_bucket{le="0.1"} 45
rest_server_request_duration_seconds_bucket{le="+Inf"} 50
rest_server_request_duration_seconds_count 50
rest_server_request_duration_seconds_sum 2.0
"""
CANARY = [isvc_pods.PodView("m-canary-a", b.CANARY, "m-2", True, False, "10.0.0.9", None)]
ANALYSIS = Analysis(minSuccessRate=0.95, minRequests=10)


def test_a_custom_predictors_own_series_and_code_label_are_analysed() -> None:
    s = spec(
        predictor={
            "image": "seldonio/mlserver:1.6",
            "metrics": {
                "requestsTotal": "rest_server_requests_total",
                "latencyHistogram": "rest_server_request_duration_seconds",
                "codeLabel": "status_code",
                "port": 8082,
            },
        }
    )
    names = isvc_analysis.metric_names(s)
    verdict, baseline = isvc_analysis.analyse(ANALYSIS, CANARY, {"m-canary-a": MLSERVER}, None, names)
    assert verdict.result == "Failed" and verdict.requests == 50 and verdict.success_rate == 0.8
    assert baseline["m-canary-a"].errors == 10
    assert b.metrics_endpoint(s) == (8082, "/metrics")


@pytest.mark.parametrize(
    ("scraped", "why"),
    [({"m-canary-a": None}, "could not be read"), ({"m-canary-a": MLSERVER}, "exposes the counter")],
)
def test_no_data_is_said_plainly_and_the_canary_does_not_advance(
    scraped: dict[str, str | None], why: str
) -> None:
    # Our default names against MLServer's series (or an unreachable endpoint): nothing to measure.
    verdict, _ = isvc_analysis.analyse(Analysis(minRequests=0), CANARY, scraped, None)
    assert verdict.result == "Inconclusive" and verdict.reason == "AnalysisNoData" and why in verdict.message
    mvs = [_mv(1), _mv(2)]
    s = InferenceServiceSpec.model_validate(
        {
            "modelRef": {"model": "m", "version": 1},
            "canary": {"modelRef": {"model": "m", "version": 2}, "steps": [10, 50]},
        }
    )
    tg = isvc_resolve.targets(s, {}, mvs)
    meta = {"name": "m", "namespace": "ns", "uid": "u", "generation": 1}
    first = c.plan({"metadata": meta, "status": {}}, s, tg, [], [], gateway_api=False, verdict=None, now=T0)
    st = {k: v for k, v in first.status_patch.items() if v is not None}
    later = T0 + datetime.timedelta(minutes=5)
    tg = isvc_resolve.targets(s, st, mvs)
    p = c.plan({"metadata": meta, "status": st}, s, tg, [], [], gateway_api=False, verdict=verdict, now=later)
    analysis = p.status_patch["canary"]["analysis"]
    assert analysis["step"] == 0 and analysis["failures"] == 0 and analysis["reason"] == "AnalysisNoData"
    progressing = next(x for x in p.status_patch["conditions"] if x["type"] == "CanaryProgressing")
    assert progressing["reason"] == "AnalysisNoData" and "no data" in progressing["message"]


def test_a_rolled_back_canarys_lingering_pods_are_not_judged_as_the_next_canary() -> None:
    broken = isvc_pods.PodView("m-canary-old", b.CANARY, "m-broken", True, False, "10.0.0.8", None)
    failing = {"m-canary-old": 'modelops_serving_requests_total{code="500"} 90\n'}
    good = isvc_pods.PodView("m-canary-new", b.CANARY, "m-2", True, False, "10.0.0.9", None)
    passing = {"m-canary-new": 'modelops_serving_requests_total{code="200"} 40\n'}
    pods = [broken, good, isvc_pods.PodView("m-stable-a", b.STABLE, "m-1", True, False, "10.0.0.7", None)]
    kept = isvc_analysis.of_candidate(pods, "m-2")
    assert [p.name for p in kept] == ["m-canary-new", "m-stable-a"]
    verdict, _ = isvc_analysis.analyse(ANALYSIS, kept, {**failing, **passing}, None)
    assert verdict.result == "Passed" and verdict.requests == 40
    mixed, _ = isvc_analysis.analyse(ANALYSIS, pods, {**failing, **passing}, None)
    assert mixed.result == "Failed"  # what judging every canary-labelled pod would have said


def _mv(version: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"m-{version}"},
        "spec": {"model": "m", "version": version},
        "status": {
            "phase": "Ready",
            "version": version,
            "artifact": {
                "uri": f"pvc://c/m{version}.pt",
                "sha256": f"{version}" * 64,
                "format": "torchscript",
            },
        },
    }


# -- states that must not hang without a reason ---------------------------------------------------------


def _pending_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {b.LABEL_TRACK: b.STABLE, b.LABEL_MODELVERSION: "m-1"}},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
    }


def _sync(pods: list[isvc_pods.PodView], **kw: Any) -> c.Plan:
    s = InferenceServiceSpec.model_validate(
        {"modelRef": {"model": "m", "version": 1}, "auth": {"secretName": "t"}}
    )
    tg = isvc_resolve.targets(s, {}, [_mv(1)])
    meta = {"name": "m", "namespace": "ns", "uid": "u", "generation": 1}
    return c.plan(
        {"metadata": meta, "status": {}}, s, tg, [], pods, gateway_api=False, verdict=None, now=T0, **kw
    )


def test_a_missing_auth_secret_stalls_as_secret_not_found_and_recovers() -> None:
    events = [
        {
            "reason": "FailedMount",
            "involvedObject": {"kind": "Pod", "name": "m-stable-a"},
            "lastTimestamp": "2026-01-01T00:00:01Z",
            "message": 'MountVolume.SetUp failed for volume "auth" : secret "t" not found',
        }
    ]
    pod = isvc_pods.view(_pending_pod("m-stable-a"), events)
    ready = next(x for x in _sync([pod]).status_patch["conditions"] if x["type"] == "Ready")
    assert ready["reason"] == "SecretNotFound" and 'secret "t" not found' in ready["message"]
    assert _sync([pod]).conclusion.state.value == "Stalled"
    # The Secret was created: the pod starts and is ready; the old event no longer matters.
    running = _pending_pod("m-stable-a")
    running["status"] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "server", "ready": True, "state": {"running": {}}}],
    }
    healed = isvc_pods.view(running, events)
    assert _sync([healed]).conclusion.reason == "Serving"


def test_a_missing_env_secret_is_secret_not_found_too() -> None:
    pod = _pending_pod("m-stable-b")
    pod["status"]["containerStatuses"] = [
        {
            "name": "server",
            "ready": False,
            "state": {
                "waiting": {"reason": "CreateContainerConfigError", "message": 'secret "acme" not found'}
            },
        }
    ]
    assert _sync([isvc_pods.view(pod)]).conclusion.reason == "SecretNotFound"


def test_a_child_the_api_server_refuses_stalls_with_its_message() -> None:
    refusal = (
        'Deployment.apps "m-stable" is invalid: spec.template.spec.containers[0].image: Required value',
    )
    refused = children.ChildRejected("Deployment", "m-stable", 422, "Invalid", refusal[0])
    p = _sync([], rejected=[refused])
    assert p.conclusion.reason == "ChildRejected" and p.conclusion.state.value == "Stalled"
    assert "containers[0].image: Required value" in p.conclusion.message


# -- the registry side ---------------------------------------------------------------------------------


def test_the_declared_signature_goes_to_the_verifier_and_the_found_one_into_status() -> None:
    spec_mv = ModelVersionSpec.model_validate(
        {"model": "reg", "source": {"uri": "pvc://models/reg.pt"}, "signature": SIGNATURE}
    )
    assert spec_mv.signature is not None
    pod = mvb.verification_pod(
        "reg-1",
        "ns",
        "u",
        location=mvb.Location("models", "reg.pt"),
        sha256=None,
        fmt="torchscript",
        request="",
        signature=spec_mv.signature.model_dump_json(by_alias=True),
    )
    args = pod["spec"]["containers"][0]["args"]
    assert json.loads(args[args.index("--signature") + 1]) == SIGNATURE
    answer = {
        "status": "Succeeded",
        "message": "verified",
        "artifact": {"sha256": "ab" * 32, "format": "torchscript"},
        "signature": SIGNATURE,
    }
    verdict = mv.pod_verdict(_finished("Succeeded", json.dumps(answer)))
    assert verdict is not None and verdict.signature == SIGNATURE
    location = mvb.Location("models", "reg.pt")
    recorded = mv.verified_status(verdict, location, spec_mv, None, image="w", now=T0)
    assert recorded["signature"] == SIGNATURE


@pytest.mark.parametrize("reason", ["NoRuntimeForFormat", "SignatureMismatch"])
def test_a_version_no_runtime_can_serve_fails_with_the_workers_reason(reason: str) -> None:
    answer = {
        "status": "Failed",
        "reason": reason,
        "message": "input 'x': declared FP32 [-1, 3], model wants [-1, 4]",
    }
    verdict = mv.pod_verdict(_finished("Failed", json.dumps(answer)))
    assert verdict is not None and not verdict.ok and verdict.reason == reason
    assert "[-1, 4]" in mv.failure_message(verdict) and "spec." in mv.failure_message(verdict)


def _finished(phase: str, message: str) -> dict[str, Any]:
    code = 0 if phase == "Succeeded" else 65
    return {
        "status": {
            "phase": phase,
            "containerStatuses": [{"state": {"terminated": {"exitCode": code, "message": message}}}],
        }
    }


# -- what the API server refuses ---------------------------------------------------------------------


def _errors(spec_: dict[str, Any]) -> list[str]:
    from modelops.api import INFERENCESERVICE
    from modelops.api.crdgen import crd
    from modelops_local.schema import validate_custom_resource

    schema = crd(INFERENCESERVICE)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "s", "namespace": "default"},
        "spec": spec_,
    }
    return [str(e) for e in validate_custom_resource(schema, obj).errors]


@pytest.mark.parametrize(
    ("spec_", "field", "phrase"),
    [
        ({}, "spec.modelRef", "custom spec.predictor may leave it out"),
        (
            {"predictor": {"image": "x"}, "canary": {"trafficPercent": 10}},
            "spec",
            "spec.canary needs spec.modelRef",
        ),
        ({"modelRef": {"model": "m", "version": 1}, "precision": "fp8"}, "spec.precision", ""),
        ({"predictor": {"image": "x", "protocol": "grpc"}}, "spec.predictor.protocol", ""),
        (
            {
                "predictor": {
                    "image": "x",
                    "env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
                }
            },
            "spec.predictor.env[0]",
            "not both",
        ),
        (
            {"predictor": {"image": "x", "env": [{"name": "A", "valueFrom": {}}]}},
            "spec.predictor.env[0].valueFrom",
            "exactly one",
        ),
    ],
)
def test_specs_no_runtime_can_honour_are_refused_naming_the_field(
    spec_: dict[str, Any], field: str, phrase: str
) -> None:
    found = _errors(spec_)
    assert any(e.startswith((f"{field}:", f"{field}[")) for e in found), found
    assert not phrase or any(phrase in e for e in found), found


def test_a_custom_predictor_without_a_model_is_accepted() -> None:
    assert _errors({"predictor": {"image": "ghcr.io/acme/echo:1"}}) == []


@pytest.mark.parametrize(
    ("spec_", "named"),
    [
        ({}, "spec.modelRef: required field is missing"),
        ({"predictor": {"image": "x"}, "canary": {}}, "spec.canary"),
    ],
)
def test_a_spec_past_an_older_crd_stalls_naming_the_field_instead_of_crashing(
    spec_: dict[str, Any], named: str
) -> None:
    conclusion = c.decide(InferenceServiceSpec.model_validate(spec_))
    assert conclusion.state.value == "Stalled" and conclusion.reason == "InvalidSpec"
    assert named in conclusion.message
