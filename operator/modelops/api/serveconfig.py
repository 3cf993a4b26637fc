"""The serving contract: what the operator tells a serving pod, and what the pod exposes.

Written once, imported by both sides (the InferenceService builders and `modelops-worker serve`), so
the two cannot drift. No torch here: the operator imports this module.

Environment of a serving container (`modelops-worker serve`):

- `MODELOPS_SERVE_CONFIG` (required): JSON of `ServeConfig` (camelCase keys).
- `MODELOPS_TERMINATION_LOG` (default `/dev/termination-log`): why the server refused to start
  (e.g. `ArtifactDigestMismatch`), as JSON `{status, reason, message, exitCode}`.

The server listens on `SERVE_PORT` for the Open Inference Protocol v2 REST API (KServe's V2):
`GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2`, `GET /v2/models/{name}[/versions/{v}]`,
`GET /v2/models/{name}[/versions/{v}]/ready`, `POST /v2/models/{name}[/versions/{v}]/infer`, and the
Prometheus endpoint `GET /metrics` on the same port. Ready means: the artifact loaded and its sha256
equals `ServeConfig.sha256`. A server that cannot load or verify its artifact exits with
`EXIT_BAD_DATA` (65) after writing its termination message; the operator reports the reason.

What is served is the model's signature (`ServeConfig.signature`, else read from the artifact), with the
runtime the format picks (`SERVABLE_FORMATS`); `modelops-worker verify` refuses any other format with
`REASON_NO_RUNTIME_FOR_FORMAT` and a model that does not match its declared signature with
`REASON_SIGNATURE_MISMATCH`. A client's mistake is answered 4xx, never 5xx, and a client that closed
its connection is counted under code `CODE_CLIENT_CLOSED` (499): analysis and alerts read 5xx only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from modelops.api.common import ApiModel
from modelops.api.inferenceservice import Batching
from modelops.api.signature import ModelSignature

ENV_SERVE_CONFIG = "MODELOPS_SERVE_CONFIG"

SERVE_PORT = 8080
GRPC_PORT = 9000  # OIP v2 over gRPC (KServe grpc_predict_v2.proto), same batcher, auth and metrics
PATH_LIVE = "/v2/health/live"
PATH_READY = "/v2/health/ready"
PATH_METRICS = "/metrics"

# Metric names (all carry the label `model` = the protocol's model name, and `version`).
METRIC_REQUESTS = "modelops_serving_requests_total"  # counter, labels: code (HTTP status)
METRIC_LATENCY = "modelops_serving_request_duration_seconds"  # histogram, infer requests, labels: code
METRIC_BATCH_SIZE = "modelops_serving_batch_size"  # histogram, samples per forward pass
METRIC_INFLIGHT = "modelops_serving_inflight_requests"  # gauge, infer requests in progress
METRIC_QUEUE = "modelops_serving_queue_samples"  # gauge, samples waiting for a batch
METRIC_MODEL_INFO = "modelops_serving_model_info"  # gauge 1, labels: sha256, format, device, precision

REASON_ARTIFACT_NOT_FOUND = "ArtifactNotFound"
REASON_ARTIFACT_DIGEST_MISMATCH = "ArtifactDigestMismatch"
REASON_ARTIFACT_LOAD_FAILED = "ArtifactLoadFailed"
REASON_INVALID_SERVE_CONFIG = "InvalidServeConfig"  # exit 64: MODELOPS_SERVE_CONFIG or auth file wrong
REASON_DEVICE_UNAVAILABLE = "DeviceUnavailable"  # exit 64: device cuda asked for, no CUDA device visible
# Verification (`modelops-worker verify`) refusals beyond the artifact ones above, for the ModelVersion
# controller: no runtime can serve the format; the model does not match its declared signature.
REASON_NO_RUNTIME_FOR_FORMAT = "NoRuntimeForFormat"
REASON_SIGNATURE_MISMATCH = "SignatureMismatch"
# Formats a serving runtime exists for (torch for the first two, ONNX Runtime for onnx).
SERVABLE_FORMATS = ("torchscript", "state_dict", "onnx")

# The code label of `modelops_serving_requests_total` for a client that closed the connection before
# its request was read or answered (nginx's 499 "client closed request"): neither a success nor a
# server error, so the canary analysis and the error-rate alerts (5xx only) never count it.
CODE_CLIENT_CLOSED = 499

# Output tensors of an infer response (FP32 [n, classes], FP32 [n, classes], INT64 [n]); a request
# that names no outputs gets logits and predicted_class.
OUTPUT_LOGITS = "logits"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_CLASS = "predicted_class"


class ServeConfig(ApiModel):
    """What one serving pod serves, and how."""

    model_name: str = Field(description="The model's name in the protocol: the InferenceService's name.")
    model_version: str = Field(description="The version number as a string, as in `/versions/{v}`.")
    model_version_name: str = Field(default="", description="metadata.name of the ModelVersion.")
    artifact_path: str = Field(description="Path of the artifact file inside the container.")
    sha256: str = Field(
        description="The sha256 the ModelVersion verified; the server refuses any other file."
    )
    format: Literal["torchscript", "state_dict", "onnx"] = Field(
        default="torchscript", description="Artifact format; picks the runtime (torch or ONNX Runtime)."
    )
    signature: ModelSignature | None = Field(
        default=None,
        description="The signature verification recorded; what model metadata answers and requests are "
        "checked against. Absent: read from the artifact (ONNX graph, or our model card).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where the model runs; auto picks cuda when the pod has a GPU."
    )
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        default="fp32", description="Compute precision on the device (fp16/bf16 only take effect on a GPU)."
    )
    grpc_port: int | None = Field(
        default=GRPC_PORT, ge=1, le=65535, description="OIP v2 gRPC port; none: no gRPC server."
    )
    batching: Batching = Field(default_factory=Batching, description="Batching settings.")
    quantization: Literal["none", "int8"] = Field(default="none", description="int8 dynamic quantization.")
    auth_tokens_file: str | None = Field(
        default=None, description="File with accepted bearer tokens, one per line; no auth when absent."
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="Largest request body.")
    port: int = Field(default=SERVE_PORT, ge=1, le=65535, description="Listening port.")
    drain_seconds: float = Field(
        default=20.0, ge=0, description="How long SIGTERM waits for in-flight requests before exiting."
    )
