"""Models that are not our classifiers, served on the local plane from examples/serving/ as users apply it.

One plane for the module. `examples/serving/make_artifacts.py` (the script the examples' comments
name) writes a two-input TorchScript model, a regression model, an image-shaped CNN and the
two-input model exported with `torch.onnx.export` onto the claim `models`; the example manifests are
applied with the real kubectl (the CNN's GPU asked away: this machine has none). Each version is
verified (its signature recorded) and served; predictions through the Service, over REST (urllib)
and gRPC (grpcio's own client on KServe's proto), equal the same models run in this process. A
safetensors version and a version whose declared signature does not match fail verification naming
why. A custom predictor (a small OIP v2 server written here, run by the venv's python: the local plane
runs processes, not images) serves a mounted version with its own metric names. A missing auth Secret
stalls an InferenceService as SecretNotFound until the Secret exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localplane import Plane

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "serving"
SERVED = {"two-inputs": "10", "regression": "20", "cnn": "30", "two-inputs-onnx": "40"}

pytestmark = pytest.mark.e2e


def wait_for(what: str, check: Callable[[], Any], plane: Plane, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{plane.logs()}")


def apply(plane: Plane, *docs: dict[str, Any]) -> None:
    plane.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))


def example(prefix: str) -> list[dict[str, Any]]:
    path = next(EXAMPLES.glob(f"{prefix}-*.yaml"))
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("runtimes") / "plane")
    lp.modelops("local", "up", "--dir", str(lp.dir))
    try:
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


@pytest.fixture(scope="module")
def models(plane: Plane) -> Path:
    """The claim `models` holding the artifacts, written by the examples' own script."""
    apply(plane, *example("00"))
    plane.kubectl("wait", "pvc/models", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s")
    claim = plane.dir / "volumes" / "default" / "models"
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(EXAMPLES / "make_artifacts.py"), str(claim)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return claim


@pytest.fixture(scope="module")
def applied(plane: Plane, models: Path) -> list[str]:
    """Every runtime's example applied at once, as a user would: the InferenceService names."""
    for name, prefix in SERVED.items():
        docs = example(prefix)
        for doc in docs:
            if doc["kind"] == "InferenceService":
                # Small pods for a shared 2-core machine; no GPU here (the pod spec is unit-tested).
                doc["spec"]["resources"] = {"cpu": "250m", "memory": "768Mi"}
                doc["spec"].pop("precision", None)
                doc["spec"]["maxReplicas"] = 1
        apply(plane, *docs)
        assert name in {d["metadata"]["name"] for d in docs}
    return list(SERVED)


@pytest.fixture(scope="module")
def served(plane: Plane, applied: list[str]) -> dict[str, str]:
    """Every example Ready: InferenceService name -> its Service's address."""
    for name in applied:
        plane.kubectl(
            "wait", f"inferenceservice/{name}", "--for=condition=Ready", "--timeout=300s", timeout=310
        )
    return {name: plane.get("service", name)["spec"]["clusterIP"] for name in applied}


@pytest.fixture(scope="module")
def onnx_version(plane: Plane, applied: list[str]) -> dict[str, Any]:
    """The ONNX example's ModelVersion, verified (what the custom predictor and the auth test serve)."""
    plane.kubectl(
        "wait", "modelversion/two-inputs-onnx-1", "--for=condition=Ready", "--timeout=180s", timeout=190
    )
    version: dict[str, Any] = plane.get("modelversion", "two-inputs-onnx-1")
    return version


def http(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


# Inputs and what the same seeded models answer in this process.
_EXPECTED = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
import make_artifacts
m = make_artifacts.build()
g = torch.Generator().manual_seed(5)
feats = torch.randn(3, 4, generator=g); mask = torch.rand(3, 4, generator=g) > 0.5
x = torch.randn(3, 8, generator=g); image = torch.randn(2, 3, 32, 32, generator=g)
with torch.no_grad():
    score, kept = m["two-inputs"](feats, mask)
    y = m["regression"](x); logits = m["cnn"](image)
print(json.dumps({
    "features": feats.tolist(), "mask": mask.tolist(), "score": score.flatten().tolist(),
    "kept": kept.tolist(), "x": x.tolist(), "y": y.flatten().tolist(),
    "image": image.flatten().tolist(), "logits": logits.flatten().tolist()}))
"""


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _EXPECTED, str(EXAMPLES)],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


def close(got: list[float], want: list[float], tol: float = 1e-4) -> bool:
    return len(got) == len(want) and all(
        abs(a - b) <= tol * max(1.0, abs(b)) for a, b in zip(got, want, strict=True)
    )


def flat(rows: Any) -> list[Any]:
    if isinstance(rows, list):
        return [v for r in rows for v in flat(r)]
    return [rows]


def two_input_request(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [3, 4], "data": flat(e["features"])},
            {"name": "mask", "datatype": "BOOL", "shape": [3, 4], "data": flat(e["mask"])},
        ]
    }


def outputs(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in answer["outputs"]}


def test_every_runtime_serves_its_model_over_rest(
    plane: Plane, served: dict[str, str], expected: dict[str, Any]
) -> None:
    for name in SERVED:
        mv = plane.get("modelversion", f"{name}-1")
        signature = mv["status"]["signature"]
        code, meta = http(f"http://{served[name]}/v2/models/{name}")
        assert code == 200, meta
        assert [i["name"] for i in meta["inputs"]] == [i["name"] for i in signature["inputs"]], name
        isvc = plane.get("inferenceservice", name)
        assert isvc["status"]["stable"]["modelVersion"] == f"{name}-1"
    # The ONNX graph's own names and types, read at verification.
    onnx_inputs = plane.get("modelversion", "two-inputs-onnx-1")["status"]["signature"]["inputs"]
    assert [(i["name"], i["datatype"]) for i in onnx_inputs] == [("features", "FP32"), ("mask", "BOOL")]

    for name in ("two-inputs", "two-inputs-onnx"):
        code, answer = http(f"http://{served[name]}/v2/models/{name}/infer", two_input_request(expected))
        assert code == 200, answer
        out = outputs(answer)
        assert close(out["score"]["data"], expected["score"]), (name, out)
        assert out["kept"]["data"] == expected["kept"] and out["kept"]["datatype"] == "INT64"
    x = {"name": "x", "datatype": "FP32", "shape": [3, 8], "data": flat(expected["x"])}
    code, answer = http(f"http://{served['regression']}/v2/models/regression/infer", {"inputs": [x]})
    assert code == 200 and close(outputs(answer)["y"]["data"], expected["y"]), answer
    assert "predicted_class" not in outputs(answer)  # no classifier conveniences for a regression
    image = {"name": "image", "datatype": "FP32", "shape": [2, 3, 32, 32], "data": expected["image"]}
    code, answer = http(f"http://{served['cnn']}/v2/models/cnn/infer", {"inputs": [image]})
    assert code == 200 and close(outputs(answer)["logits"]["data"], expected["logits"]), answer
    # A wrong shape is the client's mistake: 400 naming the input, never a 500.
    bad = {"name": "x", "datatype": "FP32", "shape": [1, 7], "data": [0.0] * 7}
    code, answer = http(f"http://{served['regression']}/v2/models/regression/infer", {"inputs": [bad]})
    assert code == 400 and "x" in json.dumps(answer), answer


def test_the_service_forwards_grpc_to_the_same_models(
    served: dict[str, str], expected: dict[str, Any]
) -> None:
    import grpc

    from modelops_worker.serve.grpc_gen import grpc_predict_v2_pb2 as pb
    from modelops_worker.serve.grpc_gen import grpc_predict_v2_pb2_grpc as pb_grpc

    for name in ("two-inputs", "two-inputs-onnx"):
        with grpc.insecure_channel(f"{served[name]}:9000") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ModelReady(pb.ModelReadyRequest(name=name), timeout=20).ready
            request = pb.ModelInferRequest(model_name=name, id="g1")
            features = request.inputs.add(name="features", datatype="FP32", shape=[3, 4])
            features.contents.fp32_contents.extend(flat(expected["features"]))
            mask = request.inputs.add(name="mask", datatype="BOOL", shape=[3, 4])
            mask.contents.bool_contents.extend(flat(expected["mask"]))
            answer = stub.ModelInfer(request, timeout=20)
        assert answer.id == "g1" and answer.model_name == name
        by_name = {o.name: i for i, o in enumerate(answer.outputs)}
        score = answer.outputs[by_name["score"]]
        if answer.raw_output_contents:
            import numpy as np

            got = np.frombuffer(answer.raw_output_contents[by_name["score"]], dtype="<f4").tolist()
        else:
            got = list(score.contents.fp32_contents)
        assert close(got, expected["score"]), (name, got)


def test_a_format_without_runtime_or_a_wrong_signature_fails_verification(plane: Plane, models: Path) -> None:
    (models / "llm.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    safetensors = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "llm-1"},
        "spec": {
            "model": "llm",
            "version": 1,
            "source": {"uri": "pvc://models/llm.safetensors"},
            "format": "safetensors",
        },
    }
    wrong = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "regression-9"},
        "spec": {
            "model": "regression",
            "version": 9,
            "source": {"uri": "pvc://models/regression.pt"},
            "signature": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 5]}]},
        },
    }
    apply(plane, safetensors, wrong)
    for name, reason, named in (
        ("llm-1", "NoRuntimeForFormat", "safetensors"),
        ("regression-9", "SignatureMismatch", "x"),
    ):

        def failed(name: str = name) -> dict[str, Any] | None:
            mv = plane.get("modelversion", name)
            return mv if (mv.get("status") or {}).get("phase") == "Failed" else None

        mv = wait_for(f"{name} to fail verification", failed, plane, timeout=150)
        ready = condition(mv, "Ready")
        assert ready["status"] == "False" and ready["reason"] == reason, ready
        assert named in ready["message"] and condition(mv, "Stalled")["status"] == "True"


# A predictor of someone else's making: OIP v2 over plain http.server, its own metric names, and the
# version's artifact found through MODELOPS_MODEL_PATH (its sha256 is in the model metadata).
_PREDICTOR = """
import hashlib, http.server, json, os
path = os.environ["MODELOPS_MODEL_PATH"]
sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
name = "echo"  # MODELOPS_MODEL_NAME says so too, but the local plane rewrites env values naming a Service
counts = {}
class H(http.server.BaseHTTPRequestHandler):
    def answer(self, code, body, kind="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code); self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        if self.path in ("/v2/health/live", "/v2/health/ready"):
            return self.answer(200, {})
        if self.path == "/v2/models/" + name:
            return self.answer(200, {"name": name, "platform": "echo", "sha256": sha, "inputs": [], "outputs": []})
        if self.path == "/stats":
            lines = ["# TYPE echo_requests_total counter"]
            lines += ['echo_requests_total{status="%s"} %d' % (k, v) for k, v in counts.items()]
            return self.answer(200, ("\\n".join(lines) + "\\n").encode(), "text/plain")
        self.answer(404, {"error": "no such path"})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        total = sum(sum(i["data"]) for i in body["inputs"])
        counts["200"] = counts.get("200", 0) + 1
        self.answer(200, {"model_name": name, "outputs": [{"name": "sum", "datatype": "FP64", "shape": [1], "data": [total]}]})
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
"""


def test_a_custom_predictor_serves_a_mounted_version_with_its_own_metrics(
    plane: Plane, onnx_version: dict[str, Any]
) -> None:
    from modelops.builders.trainingjob import worker_image

    isvc = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "echo"},
        "spec": {
            "modelRef": {"model": "two-inputs-onnx", "version": 1},
            "predictor": {
                # On a cluster this is your image; the local plane runs the worker image's Python.
                "image": worker_image(),
                # Inline: a file path under /tmp would be taken for the pod's /tmp volume.
                "command": ["python", "-c", textwrap.dedent(_PREDICTOR)],
                "metrics": {"path": "/stats", "requestsTotal": "echo_requests_total", "codeLabel": "status"},
            },
            "resources": {"cpu": "100m", "memory": "256Mi"},
        },
    }
    second = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "two-inputs-onnx-2"},
        "spec": {**onnx_version["spec"], "version": 2},
    }
    apply(plane, isvc, second)
    plane.kubectl("wait", "inferenceservice/echo", "--for=condition=Ready", "--timeout=120s", timeout=130)
    address = plane.get("service", "echo")["spec"]["clusterIP"]
    code, meta = http(f"http://{address}/v2/models/echo")
    assert code == 200 and meta["sha256"] == onnx_version["status"]["artifact"]["sha256"]
    code, answer = http(
        f"http://{address}/v2/models/echo/infer",
        {"inputs": [{"name": "a", "datatype": "FP64", "shape": [2], "data": [1, 2]}]},
    )
    assert code == 200 and answer["outputs"][0]["data"] == [3], answer
    pods = plane.get("pods", "-l", "modelops.dev/inferenceservice=echo")["items"]
    pod = pods[0]
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/stats"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert [p["name"] for p in plane.get("service", "echo")["spec"]["ports"]] == ["http"]
    plane.kubectl(
        "wait", "modelversion/two-inputs-onnx-2", "--for=condition=Ready", "--timeout=120s", timeout=130
    )

    # A canary of version 2 whose analysis is told the wrong series: it says so and does not move.
    canary = {
        "modelRef": {"model": "two-inputs-onnx", "version": 2},
        "steps": [50],
        "analysis": {"intervalSeconds": 5, "minRequests": 3, "failureLimit": 2},
    }
    wrong = {"spec": {"canary": canary, "predictor": {"metrics": {"requestsTotal": "absent_requests_total"}}}}
    plane.kubectl("patch", "misvc", "echo", "--type=merge", "-p", json.dumps(wrong))
    body = {"inputs": [{"name": "a", "datatype": "FP64", "shape": [1], "data": [1]}]}
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                http(f"http://{address}/v2/models/echo/infer", body)
            time.sleep(0.05)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:

        def no_data() -> dict[str, Any] | None:
            found = condition(plane.get("inferenceservice", "echo"), "CanaryProgressing")
            return found if found.get("reason") == "AnalysisNoData" else None

        said = wait_for("the canary to say AnalysisNoData", no_data, plane, timeout=90)
        assert "absent_requests_total" in said["message"], said
        analysis = plane.get("inferenceservice", "echo")["status"]["canary"]["analysis"]
        assert analysis["step"] == 0 and analysis["failures"] == 0  # no data never passes nor fails
        # The right series: the same canary is analysed from the predictor's own counter and promoted.
        right = {"spec": {"predictor": {"metrics": {"requestsTotal": "echo_requests_total"}}}}
        plane.kubectl("patch", "misvc", "echo", "--type=merge", "-p", json.dumps(right))
        record = wait_for(
            "the custom predictor's canary to be promoted",
            lambda: next(
                (
                    r
                    for r in plane.get("inferenceservice", "echo")["status"]["rolloutHistory"]
                    if r["outcome"] == "Promoted"
                ),
                None,
            ),
            plane,
            timeout=90,
        )
    finally:
        stop.set()
        worker.join(timeout=30)
    assert record["modelVersion"] == "two-inputs-onnx-2" and "requests" in record["reason"], record
    plane.kubectl("delete", "inferenceservice", "echo", "--wait=true", timeout=90)


def test_a_missing_auth_secret_stalls_and_recovers_when_created(
    plane: Plane, onnx_version: dict[str, Any], expected: dict[str, Any]
) -> None:
    docs = example("40")
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    isvc["metadata"]["name"] = "guarded"
    isvc["spec"].update(
        auth={"secretName": "guarded-tokens"}, resources={"cpu": "100m", "memory": "768Mi"}, maxReplicas=1
    )
    apply(plane, isvc)

    def stalled() -> dict[str, Any] | None:
        ready = condition(plane.get("inferenceservice", "guarded"), "Ready")
        return ready if ready.get("reason") == "SecretNotFound" else None

    ready = wait_for("the InferenceService to say SecretNotFound", stalled, plane, timeout=90)
    assert "guarded-tokens" in ready["message"]
    assert condition(plane.get("inferenceservice", "guarded"), "Stalled")["status"] == "True"
    token = hashlib.sha256(b"e2e").hexdigest()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "guarded-tokens"},
        "stringData": {"tokens": token},
    }
    apply(plane, secret)
    plane.kubectl("wait", "inferenceservice/guarded", "--for=condition=Ready", "--timeout=150s", timeout=160)
    address = plane.get("service", "guarded")["spec"]["clusterIP"]
    x = two_input_request(expected)
    assert http(f"http://{address}/v2/models/guarded/infer", x)[0] == 401
    code, _ = http(f"http://{address}/v2/models/guarded/infer", x, {"Authorization": f"Bearer {token}"})
    assert code == 200
    plane.kubectl("delete", "inferenceservice", "guarded", "--wait=true", timeout=90)


def test_a_child_the_api_server_refuses_stalls_with_its_message_and_recovers(plane: Plane) -> None:
    from modelops.builders.trainingjob import worker_image

    predictor = {
        "image": worker_image(),
        "command": ["python", "-c", "import time; time.sleep(3600)"],
        "readinessProbe": {"httpGet": {"path": "/ready"}},  # no port: the API server refuses the Deployment
    }
    isvc = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "refused"},
        "spec": {"predictor": predictor, "resources": {"cpu": "50m", "memory": "64Mi"}},
    }
    apply(plane, isvc)

    def rejected() -> dict[str, Any] | None:
        ready = condition(plane.get("inferenceservice", "refused"), "Ready")
        return ready if ready.get("reason") == "ChildRejected" else None

    ready = wait_for("the InferenceService to say ChildRejected", rejected, plane, timeout=60)
    assert "readinessProbe.httpGet.port" in ready["message"], ready
    assert condition(plane.get("inferenceservice", "refused"), "Stalled")["status"] == "True"
    fixed = [
        {"op": "replace", "path": "/spec/predictor/readinessProbe", "value": {"tcpSocket": {"port": 8080}}}
    ]
    plane.kubectl("patch", "misvc", "refused", "--type=json", "-p", json.dumps(fixed))
    wait_for(
        "the refusal to clear once the spec is fixed",
        lambda: (
            condition(plane.get("inferenceservice", "refused"), "Ready").get("reason") != "ChildRejected"
            and "refused-stable" in plane.kubectl("get", "deployments", "-o", "name")
        ),
        plane,
        timeout=60,
    )
    plane.kubectl("delete", "inferenceservice", "refused", "--wait=true", timeout=90)
