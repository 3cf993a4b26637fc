"""The serving parts that need no server: the wire format, the core's checks and the batcher, with real
numpy forwards."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import numpy as np
import pytest

from modelops.api.inferenceservice import Batching
from modelops_worker.serve import protocol
from modelops_worker.serve.auth import TokenFile
from modelops_worker.serve.batching import Batcher, QueueFull
from modelops_worker.serve.protocol import ProtocolError


def parse(raw: bytes, header_length: int | None = None) -> np.ndarray[Any, Any]:
    """The one input of a request, as the classifier core would read it (float32 [n, 4])."""
    req = protocol.parse_infer(raw, header_length)
    return CORE.check(req.inputs).inputs["input"]


class _Model:
    """The LoadedModel attributes the core reads, for a 4-feature 3-class classifier."""

    def __init__(self) -> None:
        from modelops_worker.serve.model import classifier_signature

        self.signature = classifier_signature(4, 3)
        self.classifier_logits = "logits"
        self.features = 4
        self.runtime_outputs = ["logits"]
        self.batchable = True
        self.platform = "test"

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        x = inputs["input"]
        return {"logits": np.stack([x.sum(1), -x.sum(1), x[:, 0]], axis=1)}


def _core() -> Any:
    import torch  # noqa: F401

    from modelops_worker.serve.core import InferenceCore

    return InferenceCore(_Model(), Batching())  # type: ignore[arg-type]


CORE = _core()


def body(**tensor: Any) -> bytes:
    t = {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": list(range(8)), **tensor}
    return json.dumps({"id": "a", "inputs": [t]}).encode()


def test_flat_nested_and_image_shaped_data_read_the_same() -> None:
    flat = parse(body())
    nested = parse(body(data=[[0, 1, 2, 3], [4, 5, 6, 7]]))
    image = parse(body(shape=[2, 2, 2]))
    ints = parse(body(datatype="INT16"))
    for arr in (flat, nested, image, ints):
        assert arr.dtype == np.float32 and arr.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    one = parse(body(shape=[4], data=[1, 2, 3, 4]))
    assert one.shape == (1, 4)


def test_binary_tensor_in_and_out() -> None:
    x = np.arange(8, dtype="<f4").reshape(2, 4)
    head = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}
            ],
            "outputs": [{"name": "predicted_class", "parameters": {"binary_data": True}}, {"name": "logits"}],
        }
    ).encode()
    req = protocol.parse_infer(head + x.tobytes(), len(head))
    assert parse(head + x.tobytes(), len(head)).tolist() == x.tolist()
    assert req.outputs == ("predicted_class", "logits")
    logits = np.array([[0, 2, 1], [3, 1, 0]], dtype=np.float32)
    out, head_len = protocol.encode_response(
        "m", "1", req, CORE._select({"logits": logits}, req.outputs), CORE.output_types
    )
    assert head_len is not None
    meta = json.loads(out[:head_len])
    assert meta["outputs"][0] == {
        "name": "predicted_class",
        "shape": [2],
        "datatype": "INT64",
        "parameters": {"binary_data_size": 16},
    }
    assert np.frombuffer(out[head_len:], dtype="<i8").tolist() == [1, 0]
    assert meta["outputs"][1]["data"] == [0, 2, 1, 3, 1, 0]
    with pytest.raises(ProtocolError, match="binary_data_size"):
        protocol.parse_infer(head + x.tobytes()[:-4], len(head))
    with pytest.raises(ProtocolError, match="does not fit a body"):
        protocol.parse_infer(head, len(head) + 10)


@pytest.mark.parametrize(
    ("tensor", "says"),
    [
        ({"data": [1e39] * 8}, "outside the finite range of FP32"),
        ({"datatype": "UINT8", "data": [300] * 8}, "outside the range of UINT8"),
        ({"datatype": "FP32", "data": [True] * 8}, "booleans"),
        ({"data": "0,1,2"}, "must be a list"),
        ({"shape": [2, 4], "data": [[0] * 4, [0] * 4, [0] * 4]}, "nested otherwise than shape"),
        ({"shape": [2, 4], "data": [0] * 12}, "needs 8"),
        ({"shape": [0, 4], "data": []}, "no samples"),
    ],
)
def test_refusals_name_the_field(tensor: dict[str, Any], says: str) -> None:
    with pytest.raises(ProtocolError, match=says) as exc:
        parse(body(**tensor))
    assert "inputs[0]" in exc.value.message and exc.value.status == 400


def test_probabilities_are_a_softmax_and_classes_the_argmax() -> None:
    logits = np.array([[1000, 0, -1000], [0, 0, 0]], dtype=np.float32)
    t = CORE._select({"logits": logits}, ["probabilities", "predicted_class"])
    assert np.allclose(t["probabilities"].sum(axis=1), 1) and np.isfinite(t["probabilities"]).all()
    assert t["predicted_class"].tolist() == [0, 0]


def _forward(log: list[int], delay: float = 0.0) -> Any:
    def f(inputs: dict[str, Any]) -> dict[str, Any]:
        x = inputs["x"]
        log.append(len(x))
        time.sleep(delay)
        return {"y": np.stack([x.sum(axis=1), -x.sum(axis=1)], axis=1).astype(np.float32)}

    return f


def test_concurrent_submissions_share_passes_and_get_their_own_rows() -> None:
    passes: list[int] = []

    async def scenario() -> list[np.ndarray[Any, Any]]:
        b = Batcher(_forward(passes, 0.02), Batching(max_batch_size=8, max_latency_ms=50))
        b.start()
        outs = await asyncio.gather(
            *(b.submit({"x": np.full((1, 3), i, dtype=np.float32)}, 1) for i in range(20))
        )
        await b.close()
        return [o["y"] for o in outs]

    outs = asyncio.run(scenario())
    assert [float(o[0, 0]) for o in outs] == [3.0 * i for i in range(20)]
    assert sum(passes) == 20 and max(passes) <= 8 and len(passes) < 20


def test_a_lone_request_is_not_held_back_waiting_for_company() -> None:
    passes: list[int] = []

    async def scenario() -> float:
        # A huge maxLatencyMs: only the adaptive rule can make a lone request go at once.
        b = Batcher(_forward(passes), Batching(max_batch_size=32, max_latency_ms=10000))
        b.start()
        await asyncio.sleep(0.3)  # idle: no recent arrivals
        t0 = time.monotonic()
        await b.submit({"x": np.ones((1, 3), dtype=np.float32)}, 1)
        took = time.monotonic() - t0
        await b.close()
        return took

    assert asyncio.run(scenario()) < 5.0  # far below the 10 s a non-adaptive batcher would wait
    assert passes == [1]


def test_the_queue_refuses_samples_beyond_its_bound() -> None:
    release = threading.Event()

    def slow(inputs: dict[str, Any]) -> dict[str, Any]:
        release.wait(10)
        return {"y": np.zeros((len(inputs["x"]), 2), dtype=np.float32)}

    async def scenario() -> str:
        b = Batcher(slow, Batching(max_batch_size=1, max_queue_size=3))
        b.start()
        one = {"x": np.ones((1, 3), dtype=np.float32)}
        first = asyncio.ensure_future(b.submit(one, 1))
        await asyncio.sleep(0.05)  # in the forward pass now; the queue is empty again
        queued = [asyncio.ensure_future(b.submit(one, 1)) for _ in range(3)]
        await asyncio.sleep(0)
        try:
            await b.submit(one, 1)
            message = ""
        except QueueFull as exc:
            message = str(exc)
        release.set()
        await asyncio.gather(first, *queued)
        await b.close()
        return message

    assert "maxQueueSize" in asyncio.run(scenario())


def test_tokens_file_accepts_only_its_bearer_tokens(tmp_path) -> None:
    f = tmp_path / "tokens"
    f.write_text("alpha\n\n  beta  \n")
    tokens = TokenFile(f)
    assert tokens.accepts("Bearer alpha") and tokens.accepts("bearer beta")
    assert not tokens.accepts("Bearer gamma") and not tokens.accepts("alpha") and not tokens.accepts(None)
    assert not tokens.accepts("Bearer ") and not tokens.accepts("Basic alpha")


@pytest.mark.parametrize("fmt", ["torchscript", "state_dict"])
def test_both_artifact_formats_load_from_their_verified_bytes_and_quantize(tmp_path, fmt) -> None:
    import torch

    from modelops.api.serveconfig import ServeConfig
    from modelops.api.trainingjob import ModelSpec
    from modelops_worker import export, models
    from modelops_worker.errors import WorkerError
    from modelops_worker.serve import model as serve_model

    spec = ModelSpec.model_validate({"architecture": "mlp", "hiddenSize": 16, "layers": 2, "dropout": 0.0})
    torch.manual_seed(0)
    net = models.build(spec, 6, 3, torch.zeros(6), torch.ones(6), None)
    desc = {"spec": spec.model_dump(by_alias=True), "numFeatures": 6, "numClasses": 3}
    art = export.export(net, fmt, desc, {}, tmp_path)
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    with torch.no_grad():
        want = net.eval()(torch.from_numpy(x)).numpy()

    def cfg(**kw: Any) -> ServeConfig:
        return ServeConfig.model_validate(
            {
                "modelName": "m",
                "modelVersion": "1",
                "artifactPath": str(tmp_path / art["path"]),
                "sha256": art["sha256"],
                "format": fmt,
                **kw,
            }
        )

    loaded = serve_model.load(cfg())
    assert loaded.signature == serve_model.classifier_signature(6, 3)
    assert np.allclose(loaded.forward(x), want, atol=1e-5)
    q = serve_model.load(cfg(quantization="int8"))
    assert q.quantized and np.abs(q.forward(x) - want).max() < 0.1
    with pytest.raises(WorkerError) as exc:
        serve_model.load(cfg(sha256="sha256:" + "1" * 64))
    assert exc.value.reason == "ArtifactDigestMismatch" and exc.value.exit_code == 65


def test_the_cgroup_cpu_limit_bounds_the_forward_threads(tmp_path) -> None:
    import torch  # noqa: F401

    from modelops_worker.serve.model import cpu_limit

    f = tmp_path / "cpu.max"
    f.write_text("150000 100000\n")
    assert cpu_limit(f) == 2  # 1.5 CPUs: two threads may run, neither all the time
    f.write_text("max 100000\n")
    assert cpu_limit(f) is None
    assert cpu_limit(tmp_path / "absent") is None


# --- device and precision (CUDA availability faked: this machine has no GPU) -----------------------


@pytest.mark.parametrize(
    ("device", "precision", "cuda", "want_device", "want_precision", "note"),
    [
        ("auto", "fp32", False, "cpu", "fp32", "on cpu"),
        ("auto", "fp32", True, "cuda", "fp32", "on cuda"),
        ("auto", "fp16", True, "cuda", "fp16", "on cuda in fp16"),
        ("cuda", "bf16", True, "cuda", "bf16", "on cuda in bf16"),
        ("auto", "fp16", False, "cpu", "fp32", "precision fp16 was asked for, but the model runs on the CPU"),
        ("cpu", "bf16", True, "cpu", "fp32", "only take effect on a GPU"),
    ],
)
def test_device_and_precision_follow_the_config_and_what_the_pod_has(
    device: str, precision: str, cuda: bool, want_device: str, want_precision: str, note: str
) -> None:
    import torch  # noqa: F401

    from modelops_worker.serve.model import select_placement

    p = select_placement(device, precision, cuda)
    assert (p.device, p.precision) == (want_device, want_precision) and note in p.note


def test_asking_for_cuda_without_a_gpu_fails_instead_of_serving_on_the_cpu() -> None:
    import torch  # noqa: F401

    from modelops_worker.errors import WorkerError
    from modelops_worker.serve.model import Placement, onnx_providers, select_placement

    with pytest.raises(WorkerError) as exc:
        select_placement("cuda", "fp32", False)
    assert exc.value.reason == "DeviceUnavailable" and exc.value.exit_code == 64
    assert onnx_providers(Placement("cpu", "fp32"), ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CPUExecutionProvider"
    ]
    assert onnx_providers(Placement("cuda", "fp16"), ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    with pytest.raises(WorkerError, match="no CUDAExecutionProvider"):
        onnx_providers(Placement("cuda", "fp32"), ["CPUExecutionProvider"])


def _classifier_artifact(tmp_path: Any) -> Any:
    import torch

    from modelops.api.serveconfig import ServeConfig
    from modelops.api.trainingjob import ModelSpec
    from modelops_worker import export, models

    spec = ModelSpec.model_validate({"architecture": "mlp", "hiddenSize": 16, "layers": 2, "dropout": 0.0})
    torch.manual_seed(0)
    net = models.build(spec, 6, 3, torch.zeros(6), torch.ones(6), None).eval()
    desc = {"spec": spec.model_dump(by_alias=True), "numFeatures": 6, "numClasses": 3}
    art = export.export(net, "torchscript", desc, {}, tmp_path)

    def cfg(**kw: Any) -> ServeConfig:
        return ServeConfig.model_validate(
            {
                "modelName": "m",
                "modelVersion": "1",
                "artifactPath": str(tmp_path / art["path"]),
                "sha256": art["sha256"],
                **kw,
            }
        )

    return net, cfg


def test_with_a_gpu_visible_the_model_is_moved_to_cuda(tmp_path, monkeypatch) -> None:
    _, cfg = _classifier_artifact(tmp_path)
    from modelops_worker.errors import WorkerError
    from modelops_worker.serve import model as serve_model

    # Fault injection: this process "sees" a GPU. The CPU-only torch here then fails the move to
    # cuda, which shows the move is attempted; on a GPU node it succeeds.
    monkeypatch.setattr(serve_model, "cuda_available", lambda: True)
    with pytest.raises(WorkerError) as exc:
        serve_model.load(cfg(device="auto", precision="fp16"))
    assert exc.value.reason == "ArtifactLoadFailed" and "CUDA" in exc.value.message


def test_on_the_cpu_fp16_is_not_applied_and_the_log_says_so(tmp_path, caplog) -> None:
    _net, cfg = _classifier_artifact(tmp_path)
    from modelops_worker.serve import model as serve_model

    with caplog.at_level("INFO", logger="modelops_worker.serve"):
        loaded = serve_model.load(cfg(precision="fp16"))
    assert loaded.placement.device == "cpu" and loaded.placement.precision == "fp32"
    assert "precision fp16 was asked for, but the model runs on the CPU" in caplog.text


def test_the_reduced_precision_cast_path_keeps_outputs_in_their_declared_type(tmp_path) -> None:
    # What a GPU placement in bf16 does to a model and its inputs, exercised on the CPU.
    import torch

    net, _cfg = _classifier_artifact(tmp_path)
    from modelops_worker.serve import model as serve_model
    from modelops_worker.serve.model import Placement

    data = (tmp_path / "model.pt").read_bytes()
    loaded = serve_model.build(data, "torchscript", None, Placement("cpu", "bf16"))
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    got = loaded.run({"input": x})["logits"]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert got.dtype == np.float32 and np.abs(got - want).max() < 0.1
