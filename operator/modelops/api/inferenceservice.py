"""InferenceService: serve a ModelVersion over the Open Inference Protocol (v2), with analysed canaries.

The shape follows KServe's (a model reference, replicas, resources) with rollouts in the manner of
Flagger and Argo Rollouts built in: a canary gets a share of traffic, its success rate and latency are
analysed every interval, and it is promoted or rolled back without a human editing anything.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from modelops.api.alerting import AlertingStatus, ServingAlerts
from modelops.api.common import (
    CONDITIONS_FIELD,
    DNS_SUBDOMAIN_PATTERN,
    ENV_FIELD_PATH_PATTERN,
    IMAGE_PATTERN,
    LABEL_VALUE_PATTERN,
    ApiModel,
    Condition,
    DnsLabel,
    Quantity,
    Timestamp,
    rules,
)
from modelops.api.inferenceservice_llm import SPEC_RULES as LLM_SPEC_RULES
from modelops.api.inferenceservice_llm import LLMServing

# A Gateway API hostname (HTTPRoute spec.hostnames): a DNS name, optionally a leading wildcard label.
HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# The serving worker's metric names (serveconfig.METRIC_REQUESTS and METRIC_LATENCY; serveconfig imports
# this module, so they are spelled here too and a unit test keeps them equal).
DEFAULT_REQUESTS_METRIC = "modelops_serving_requests_total"
DEFAULT_LATENCY_METRIC = "modelops_serving_request_duration_seconds"


class ModelRef(ApiModel):
    """Which ModelVersion to serve: a fixed version, or an alias to follow."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            ("has(self.version) != has(self.alias)", "modelRef: set exactly one of version or alias"),
        )
    )

    model: DnsLabel = Field(description="The registered model (ModelVersion spec.model).")
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="A fixed version number.")
    alias: DnsLabel | None = Field(
        default=None,
        description="An alias to follow (e.g. champion); when it moves, a new rollout starts.",
    )


class Autoscaling(ApiModel):
    """How the HorizontalPodAutoscaler scales between minReplicas and maxReplicas."""

    metric: Literal["cpu", "concurrency", "rps", "waiting"] = Field(
        default="cpu",
        description="cpu: average CPU utilisation (percent of the request); concurrency: in-flight requests "
        "per pod; rps: requests per second per pod; waiting: LLM requests waiting for a free sequence per "
        "pod (modelops_llm_requests_waiting, vLLM's vllm:num_requests_waiting; LLM versions only).",
    )
    target: int = Field(default=80, ge=1, le=100000, description="Target value of the metric per pod.")
    scale_down_stabilization_seconds: int = Field(
        default=300, ge=0, le=3600, description="Window before scaling in (the HPA's stabilization window)."
    )


class ServingResources(ApiModel):
    """Compute per serving pod."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            ("!has(self.gpuType) || self.gpus > 0", "spec.resources.gpuType needs spec.resources.gpus > 0"),
        )
    )

    cpu: Quantity = Field(default="1", description="CPU request and limit per pod.")
    memory: Quantity = Field(default="1Gi", description="Memory request and limit per pod.")
    gpus: int = Field(default=0, ge=0, le=8, description="GPUs per pod (nvidia.com/gpu).")
    gpu_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description="GPU product (node label nvidia.com/gpu.product).",
    )


class Batching(ApiModel):
    """Server-side batching of concurrent requests into one forward pass."""

    enabled: bool = Field(default=True, description="Coalesce concurrent requests.")
    max_batch_size: int = Field(default=32, ge=1, le=4096, description="Largest batch, in samples.")
    max_latency_ms: int = Field(
        default=5, ge=0, le=10000, description="Longest a request waits for others to join its batch."
    )
    adaptive: bool = Field(
        default=True,
        description="Size the wait from observed latency instead of always waiting maxLatencyMs.",
    )
    max_queue_size: int = Field(
        default=1024, ge=1, le=1000000, description="Queued samples before new requests get 429/503."
    )


class KeySelector(ApiModel):
    """A key of a Secret or ConfigMap in this namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the Secret or ConfigMap.",
    )
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="The key.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class FieldSelector(ApiModel):
    """A field of the pod (downward API), e.g. metadata.name or status.podIP."""

    field_path: str = Field(
        min_length=1,
        max_length=256,
        pattern=ENV_FIELD_PATH_PATTERN,
        description="Path of the field: metadata.name, metadata.namespace, metadata.uid, "
        "metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, "
        "status.hostIP(s) or status.podIP(s).",
    )
    api_version: Literal["v1"] | None = Field(default=None, description="Schema version of fieldPath (v1).")


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from (as a container's env[].valueFrom)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) + "
                "(has(self.fieldRef) ? 1 : 0) == 1",
                "valueFrom: set exactly one of secretKeyRef, configMapKeyRef or fieldRef",
            ),
        )
    )

    secret_key_ref: KeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeySelector | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: FieldSelector | None = Field(default=None, description="A field of the pod.")


class EnvVar(ApiModel):
    """An environment variable of the predictor container."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            ("!(has(self.value) && has(self.valueFrom))", "env: set value or valueFrom, not both"),
        )
    )

    name: str = Field(
        min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Variable name."
    )
    value: str | None = Field(default=None, max_length=32768, description="A literal value.")
    value_from: EnvVarSource | None = Field(
        default=None, description="A value from a Secret, ConfigMap or field."
    )


# Prometheus' own rules for metric and label names.
METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


def _d(description: str, **schema: Any) -> dict[str, Any]:
    return {**schema, "description": description}


_PORT_NUMBER = {"type": "integer", "minimum": 1, "maximum": 65535}
# A probe's port: a number, or the name of a port of the predictor container (http, or metrics when
# metrics.port is another port).
_PROBE_PORT = _d(
    "A port number, or the container's port name http (or metrics).",
    anyOf=[{"type": "integer"}, {"type": "string"}],
    **{
        "x-kubernetes-int-or-string": True,
        "x-kubernetes-validations": [
            {
                "rule": "type(self) == int ? self >= 1 && self <= 65535 : self in ['http', 'metrics']",
                "message": "port: a number from 1 to 65535, or the container's port name http (or metrics)",
            }
        ],
    },
)


def _probe_schema(field: str, liveness: bool) -> dict[str, Any]:
    """The structural schema of a core/v1 Probe, checked so that a probe that could never pass (a period
    of 0, a threshold of 0, two handlers) is refused at apply rather than by the Deployment."""
    handlers = ("httpGet", "tcpSocket", "exec", "grpc")
    # (A handler without its port is left to the API server, which refuses the Deployment naming the
    # field: the InferenceService is then Stalled with reason ChildRejected and recovers once fixed.)
    checks = [
        {
            "rule": " + ".join(f"(has(self.{h}) ? 1 : 0)" for h in handlers) + " == 1",
            "message": f"{field}: set exactly one of " + ", ".join(handlers),
        }
    ]
    if not liveness:
        checks.append(
            {
                "rule": "!has(self.terminationGracePeriodSeconds)",
                "message": f"{field}.terminationGracePeriodSeconds applies to liveness probes only",
            }
        )
    if liveness:
        checks.append(
            {
                "rule": "!has(self.successThreshold) || self.successThreshold == 1",
                "message": f"{field}.successThreshold must be 1 for a liveness probe (Kubernetes' rule)",
            }
        )
    host = _d("Host to connect to (default: the pod's IP).", type="string", maxLength=253)
    header = _d(
        "A request header.",
        type="object",
        required=["name", "value"],
        properties={
            "name": _d(
                "Header name.",
                type="string",
                minLength=1,
                maxLength=256,
                pattern="^[-A-Za-z0-9!#$%&'*+.^_`|~]+$",
            ),
            "value": _d("Header value.", type="string", maxLength=4096),
        },
    )
    return {
        "type": "object",
        "properties": {
            "httpGet": _d("An HTTP GET that must answer 200-399.", type="object", properties={
                "path": _d("Path, starting with /.", type="string", pattern="^/", maxLength=1024),
                "port": _PROBE_PORT,
                "host": host,
                "scheme": _d("HTTP or HTTPS.", type="string", enum=["HTTP", "HTTPS"]),
                "httpHeaders": _d("Extra request headers.", type="array", maxItems=16, items=header),
            }),
            "tcpSocket": _d("A TCP connect that must succeed.", type="object", properties={
                "port": _PROBE_PORT, "host": host,
            }),
            "exec": _d("A command in the container that must exit 0.", type="object", required=["command"],
                       properties={"command": _d("The command and its arguments.", type="array", minItems=1,
                                                 maxItems=64, items={"type": "string", "maxLength": 4096})}),
            "grpc": _d("A gRPC health check.", type="object", required=["port"], properties={
                "port": _d("Port number.", **_PORT_NUMBER),
                "service": _d("Service name of the health check.", type="string", maxLength=253),
            }),
            "initialDelaySeconds": _d("Seconds before the first probe.", type="integer", minimum=0, maximum=3600),
            "timeoutSeconds": _d("Seconds a probe may take.", type="integer", minimum=1, maximum=3600),
            "periodSeconds": _d("Seconds between probes.", type="integer", minimum=1, maximum=3600),
            "successThreshold": _d("Successes in a row to pass.", type="integer", minimum=1, maximum=100),
            "failureThreshold": _d("Failures in a row to fail.", type="integer", minimum=1, maximum=100),
            "terminationGracePeriodSeconds": _d(
                "Grace period when a failed probe kills the container.", type="integer", minimum=1, maximum=3600
            ),
        },
        "x-kubernetes-validations": checks,
    }  # fmt: skip


class PredictorMetrics(ApiModel):
    """Where the predictor's Prometheus metrics are and what they are called, for canary analysis."""

    path: str = Field(
        default="/metrics", pattern=r"^/", max_length=253, description="HTTP path of the metrics."
    )
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Port of the metrics (default: the predictor's port)."
    )
    requests_total: str = Field(
        default=DEFAULT_REQUESTS_METRIC,
        min_length=1,
        max_length=253,
        pattern=METRIC_NAME_PATTERN,
        description="Counter of requests with the response code as a label (MLServer: "
        "rest_server_requests_total with codeLabel status_code).",
    )
    latency_histogram: str = Field(
        default=DEFAULT_LATENCY_METRIC,
        min_length=1,
        max_length=253,
        pattern=METRIC_NAME_PATTERN,
        description="Histogram of request latency in seconds, without the _bucket suffix (MLServer: "
        "rest_server_requests_duration_seconds).",
    )
    code_label: str = Field(
        default="code",
        min_length=1,
        max_length=63,
        pattern=LABEL_NAME_PATTERN,
        description="Label of requestsTotal holding the response code.",
    )


class Predictor(ApiModel):
    """A custom predictor: your own serving container in place of modelops-worker serve (as KServe's).

    The operator still owns the Deployments, Service, HPA, canary and rollback. With spec.modelRef
    the version's artifact is mounted read-only at /mnt/models and named by MODELOPS_MODEL_PATH.
    """

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "(has(self.metrics.port) && self.metrics.port != self.port) || ("
                + " && ".join(
                    f"(!has(self.{probe}) || !has(self.{probe}.{handler}) || !has(self.{probe}.{handler}.port) || "
                    f"self.{probe}.{handler}.port != 'metrics')"
                    for probe in ("readinessProbe", "livenessProbe")
                    for handler in ("httpGet", "tcpSocket")
                )
                + ")",
                "spec.predictor: a probe's port metrics names spec.predictor.metrics.port, which is unset or "
                "the same as spec.predictor.port; use http or a number",
            )
        )
    )

    image: str = Field(
        min_length=1, max_length=4096, pattern=IMAGE_PATTERN, description="Container image of the predictor."
    )
    command: list[str] | None = Field(
        default=None, max_length=64, description="Entrypoint (the image's when unset)."
    )
    args: list[str] | None = Field(default=None, max_length=256, description="Arguments to the entrypoint.")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        description="Environment variables.",
        # Keyed by name: a second entry of the same name is refused, not silently the winner.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    port: int = Field(default=8080, ge=1, le=65535, description="Port the predictor serves HTTP on.")
    protocol: Literal["v2", "http"] = Field(
        default="v2",
        description="v2: the Open Inference Protocol (probes default to /v2/health/live and "
        "/v2/health/ready); http: any HTTP API (probes default to a TCP connect).",
    )
    readiness_probe: dict[str, Any] | None = Field(
        default=None,
        description="A Kubernetes probe for readiness (default by protocol).",
        json_schema_extra=_probe_schema("spec.predictor.readinessProbe", liveness=False),
    )
    liveness_probe: dict[str, Any] | None = Field(
        default=None,
        description="A Kubernetes probe for liveness (default by protocol).",
        json_schema_extra=_probe_schema("spec.predictor.livenessProbe", liveness=True),
    )
    resources: ServingResources | None = Field(
        default=None, description="Compute of the predictor container (default: spec.resources)."
    )
    metrics: PredictorMetrics = Field(
        default_factory=PredictorMetrics, description="Prometheus metrics read by canary analysis."
    )


class Analysis(ApiModel):
    """What a canary must show, measured each interval, to be promoted."""

    interval_seconds: int = Field(default=30, ge=5, le=3600, description="Seconds between analyses.")
    min_success_rate: float = Field(
        default=0.99, ge=0, le=1, description="Lowest fraction of non-5xx responses accepted."
    )
    max_p99_latency_ms: int | None = Field(
        default=None, ge=1, le=3600000, description="Highest p99 latency accepted, in milliseconds."
    )
    max_ttft_p99_ms: int | None = Field(
        default=None,
        ge=1,
        le=3600000,
        description="Highest p99 time to first token accepted, in milliseconds (LLM versions: "
        "modelops_llm_time_to_first_token_seconds, vLLM's vllm:time_to_first_token_seconds).",
    )
    failure_limit: int = Field(
        default=2, ge=1, le=100, description="Failed analyses before the canary is rolled back."
    )
    min_requests: int = Field(
        default=10, ge=0, description="Fewest canary requests in an interval for it to count."
    )


class Canary(ApiModel):
    """A second version getting a share of traffic until analysis promotes or rolls it back."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!(has(self.trafficPercent) && has(self.steps))",
                "spec.canary: set spec.canary.trafficPercent or spec.canary.steps, not both",
            ),
            (
                "!has(self.steps) || self.steps.all(s, s >= 1 && s <= 100)",
                "spec.canary.steps: every step is a traffic percent from 1 to 100",
            ),
            (
                "!has(self.steps) || size(self.steps) < 2 || "
                "self.steps.all(s, self.steps.exists_one(t, t == s)) && self.steps.isSorted()",
                "spec.canary.steps must increase strictly, e.g. [10, 25, 50]",
            ),
        )
    )

    model_ref: ModelRef | None = Field(
        default=None,
        description="The version under test. Leave it out to roll out every new target of spec.modelRef "
        "(an alias that moved, or an edited version) as a canary with this analysis instead of a rolling "
        "update.",
    )
    traffic_percent: int | None = Field(
        # 0 would leave the canary without replicas or requests: its analysis could never conclude.
        default=None,
        ge=1,
        le=100,
        description="A fixed share of traffic for the canary (default 10).",
    )
    steps: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="Traffic percents to step through, one per passed analysis, before promotion.",
    )
    analysis: Analysis = Field(default_factory=Analysis, description="Promotion and rollback criteria.")


class Auth(ApiModel):
    """Bearer-token authentication of inference requests."""

    secret_name: DnsLabel = Field(description="Secret holding accepted tokens, one per line.")
    key: str = Field(
        default="tokens",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key in the Secret.",
    )


class ParentReference(ApiModel):
    """A Gateway API parent (a Gateway) the HTTPRoute attaches to."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the Gateway."
    )
    namespace: DnsLabel | None = Field(
        default=None, description="Namespace of the Gateway (default: this one)."
    )
    section_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Listener of the Gateway.",
    )


class TrafficRouting(ApiModel):
    """How traffic is split between stable and canary."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.mode) || self.mode != 'gatewayAPI' || (has(self.parentRefs) && size(self.parentRefs) > 0)",
                "spec.trafficRouting.parentRefs is required with mode gatewayAPI",
            ),
            (
                "self.mode == 'gatewayAPI' || (!has(self.parentRefs) && !has(self.hostnames))",
                "spec.trafficRouting.parentRefs and spec.trafficRouting.hostnames apply only with mode "
                "gatewayAPI: set mode gatewayAPI or drop them",
            ),
        )
    )

    mode: Literal["replicas", "gatewayAPI"] = Field(
        default="replicas",
        description="replicas: one Service over both Deployments, split by their replica ratio; "
        "gatewayAPI: an HTTPRoute with weighted backends (exact percentages).",
    )
    parent_refs: list[ParentReference] | None = Field(
        default=None,
        max_length=32,
        description="Gateways (gatewayAPI).",
        # The HTTPRoute's own CRD refuses two references to the same parent and listener.
        json_schema_extra=rules(
            (
                "self.all(a, size(self.filter(b, b.name == a.name && "
                "(has(b.__namespace__) ? b.__namespace__ : '') == (has(a.__namespace__) ? a.__namespace__ : '') && "
                "(has(b.sectionName) ? b.sectionName : '') == (has(a.sectionName) ? a.sectionName : ''))) == 1)",
                "spec.trafficRouting.parentRefs: each Gateway (and listener) at most once",
            )
        ),
    )
    hostnames: list[Annotated[str, Field(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN)]] | None = (
        Field(default=None, max_length=16, description="Hostnames of the HTTPRoute (gatewayAPI).")
    )


class InferenceServiceSpec(ApiModel):
    """The desired serving state."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.minReplicas <= self.maxReplicas",
                "spec.minReplicas must not exceed spec.maxReplicas",
            ),
            (
                "!has(self.canary) || !has(self.canary.modelRef) || !has(self.modelRef) || "
                "self.canary.modelRef != self.modelRef",
                "spec.canary.modelRef must differ from spec.modelRef",
            ),
            (
                "self.quantization != 'int8' || self.resources.gpus == 0",
                "spec.quantization: int8 is dynamic quantization for CPU serving; set "
                "spec.resources.gpus to 0 or spec.quantization to none",
            ),
            (
                "self.quantization != 'int8' || self.precision == 'fp32'",
                "spec.precision: int8 quantization computes in int8 and fp32 on the CPU; with "
                "spec.quantization int8 leave spec.precision fp32",
            ),
            (
                "self.precision == 'fp32' || self.resources.gpus > 0",
                "spec.precision: fp16 and bf16 take effect on a GPU only (on a CPU the model would run in "
                "fp32); set spec.resources.gpus or use fp32",
            ),
            (
                "!has(self.predictor) || (self.precision == 'fp32' && self.quantization == 'none')",
                "spec.precision and spec.quantization configure modelops-worker serve; a custom "
                "spec.predictor chooses its own: leave them fp32 and none",
            ),
            {
                "rule": "has(self.modelRef) || has(self.predictor)",
                "message": "spec.modelRef is required (a custom spec.predictor may leave it out)",
                "fieldPath": ".modelRef",
                "reason": "FieldValueRequired",
            },
            (
                "!has(self.canary) || has(self.modelRef)",
                "spec.canary needs spec.modelRef: canaries compare two ModelVersions (of any runtime, "
                "custom predictors included)",
            ),
            *LLM_SPEC_RULES,
        )
    )

    model_ref: ModelRef | None = Field(
        default=None,
        description="The ModelVersion to serve. Required unless spec.predictor is set (a custom predictor "
        "may carry its model in its image).",
    )
    predictor: Predictor | None = Field(
        default=None,
        description="A custom predictor container instead of the runtime chosen by the version's format "
        "(docs/inferenceservice.md).",
    )
    precision: Literal["fp32", "fp16", "bf16"] = Field(
        default="fp32",
        description="Compute precision of modelops-worker serve on a GPU (fp16/bf16 halve memory and usually "
        "latency; fp16 and bf16 need spec.resources.gpus; the model would run in fp32 on a CPU).",
    )
    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest serving pods.")
    max_replicas: int = Field(default=1, ge=1, le=1000, description="Most serving pods.")
    autoscaling: Autoscaling = Field(
        default_factory=Autoscaling, description="Autoscaling metric and target."
    )
    resources: ServingResources = Field(default_factory=ServingResources, description="Compute per pod.")
    batching: Batching = Field(default_factory=Batching, description="Adaptive batching.")
    canary: Canary | None = Field(default=None, description="A canary rollout with automatic analysis.")
    auth: Auth | None = Field(default=None, description="Require bearer tokens.")
    traffic_routing: TrafficRouting = Field(
        default_factory=TrafficRouting, description="How traffic is split."
    )
    alerts: ServingAlerts = Field(
        default_factory=ServingAlerts, description="Alert rules and their thresholds."
    )
    quantization: Literal["none", "int8"] = Field(
        default="none", description="int8 applies dynamic quantization to Linear layers for CPU serving."
    )
    llm: LLMServing | None = Field(
        default=None,
        description="How a large language model (a ModelVersion of format huggingface, gguf or lora) is "
        "served over OpenAI's API: engine, context, limits, parallelism (docs/llm.md). Defaults apply "
        "when left out.",
    )


class ServedVersion(ApiModel):
    """A version being served."""

    model_version: str | None = Field(default=None, description="Name of the ModelVersion.")
    version: int | None = Field(default=None, description="Version number.")
    sha256: str | None = Field(default=None, description="Digest the pods verified.")
    ready_replicas: int = Field(default=0, description="Ready pods serving it.")
    runtime: str | None = Field(
        default=None,
        description="The runtime serving it: modelops-worker (by format), an LLM engine (vllm, llamacpp, "
        "transformers) or custom.",
    )
    base_model_version: str | None = Field(
        default=None, description="For a lora version: the base ModelVersion served with the adapter."
    )


class AnalysisStatus(ApiModel):
    """The canary's latest analysis."""

    result: Literal["Passed", "Failed", "Inconclusive"] | None = Field(
        default=None, description="Verdict of the latest analysis."
    )
    message: str = Field(default="", description="Why, for humans.")
    reason: str | None = Field(
        default=None,
        description="AnalysisNoData when the canary's metrics could not be read (the canary does not "
        "advance meanwhile).",
    )
    success_rate: float | None = Field(default=None, description="Fraction of non-5xx responses.")
    p99_latency_ms: float | None = Field(default=None, description="p99 latency.")
    ttft_p99_ms: float | None = Field(default=None, description="p99 time to first token (LLMs).")
    requests: int | None = Field(default=None, description="Requests in the interval.")
    failures: int = Field(default=0, description="Failed analyses so far.")
    step: int = Field(default=0, description="Index of the current traffic step.")
    last_check_time: Timestamp | None = Field(default=None, description="When analysed last.")


class CanaryStatus(ServedVersion):
    """The canary and its analysis."""

    analysis: AnalysisStatus | None = Field(default=None, description="Latest analysis.")


class Traffic(ApiModel):
    """The current traffic split."""

    stable: int = Field(default=100, ge=0, le=100, description="Percent to the stable version.")
    canary: int = Field(default=0, ge=0, le=100, description="Percent to the canary.")


class AnalysisRecord(ApiModel):
    """One analysis interval of a canary: its numbers and verdict."""

    last_check_time: Timestamp | None = Field(default=None, description="When it was analysed.")
    result: Literal["Passed", "Failed", "Inconclusive"] | None = Field(default=None, description="Verdict.")
    reason: str | None = Field(default=None, description="CamelCase reason of the verdict, when given.")
    message: str = Field(default="", description="Why, for humans.")
    requests: int | None = Field(default=None, description="Canary requests in the interval.")
    success_rate: float | None = Field(default=None, description="Fraction of non-5xx responses.")
    p99_latency_ms: float | None = Field(default=None, description="p99 latency.")
    ttft_p99_ms: float | None = Field(default=None, description="p99 time to first token (LLMs).")
    traffic_percent: int | None = Field(default=None, description="The canary's traffic step then.")


class RolloutRecord(ApiModel):
    """One rollout in the history."""

    model_version: str = Field(description="The ModelVersion rolled out.")
    version: int | None = Field(default=None, description="Its version number.")
    start_time: Timestamp = Field(description="When the rollout began.")
    end_time: Timestamp | None = Field(default=None, description="When it ended.")
    outcome: Literal["InProgress", "Deployed", "Promoted", "RolledBack", "Superseded"] = Field(
        description="InProgress (a canary under analysis), Deployed (a rolling update or the first "
        "deployment), Promoted, RolledBack or Superseded (replaced before it ended)."
    )
    reason: str = Field(default="", description="Why, for humans.")
    trigger: Literal["modelRef", "alias", "canary", "predictor"] | None = Field(
        default=None,
        description="What started it: an edit of spec.modelRef, an alias that moved, spec.canary, or an "
        "edit of a custom spec.predictor without a modelRef.",
    )
    replaced: str | None = Field(
        default=None, description="The ModelVersion the stable Deployment served before."
    )
    canary_digest: str | None = Field(
        default=None,
        description="Digest of spec.canary when the canary started: a rolled-back canary stays rolled "
        "back until spec.canary changes.",
    )
    analyses: list[AnalysisRecord] = Field(
        default_factory=list,
        max_length=30,
        description="A canary's analysis intervals with their numbers and verdicts, oldest first (the last 30).",
    )


class InferenceServiceStatus(ApiModel):
    """The observed serving state."""

    phase: Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"] | None = Field(
        default=None, description="A one-word summary for humans; automation should read conditions."
    )
    observed_generation: int | None = Field(default=None, description="The generation this status is for.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (only when pods really serve the intended version), Reconciling, Stalled, "
        "CanaryProgressing.",
        json_schema_extra=CONDITIONS_FIELD,
    )
    url: str | None = Field(
        default=None,
        description="In-cluster URL: of the V2 model endpoint, or for an LLM the OpenAI base URL (…/v1).",
    )
    replicas: int = Field(default=0, description="Serving pods.")
    ready_replicas: int = Field(default=0, description="Ready serving pods.")
    stable: ServedVersion | None = Field(default=None, description="The stable version.")
    canary: CanaryStatus | None = Field(default=None, description="The canary, while one runs.")
    traffic: Traffic | None = Field(default=None, description="Current split.")
    traffic_summary: str | None = Field(default=None, description="The split as stable/canary, e.g. 90/10.")
    rollout_history: list[RolloutRecord] = Field(
        default_factory=list, description="Rollouts, oldest first (the last 20)."
    )
    alerting: AlertingStatus | None = Field(default=None, description="Where the alert rules live.")


class InferenceService(ApiModel):
    """An InferenceService object as stored by the API server."""

    model_config = ConfigDict(extra="ignore")

    spec: InferenceServiceSpec
    status: InferenceServiceStatus | None = None
