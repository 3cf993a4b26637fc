"""vLLM on GPU clusters: the container that runs vLLM's official OpenAI server, and its metrics' names.

The operator does not wrap vLLM: it runs the upstream image (`vllm/vllm-openai`, pinned in
`modelops.api.inferenceservice_llm.VLLM_IMAGE`) with the flags a platform team would pass by hand, and
keeps for itself what it adds everywhere: the verified artifact mounted read-only from its claim,
restricted pods, probes, auth from the InferenceService's Secret, canaries, HPA and alerts.

Flags, as vLLM documents them (docs.vllm.ai "Engine Arguments" and "OpenAI-Compatible Server";
vllm-project/vllm docs/configuration/engine_args.md, docs/serving/openai_compatible_server.md):

- `--model <dir>` the model directory on the claim; `--served-model-name <names...>` what clients send
  as `model` (the InferenceService's name first); `--host 0.0.0.0 --port 8080` (the port every serving
  pod of this operator listens on);
- `--tensor-parallel-size <gpus>` shards the model over the pod's GPUs (`spec.resources.gpus`);
- `--gpu-memory-utilization`, `--dtype`, `--max-model-len` (`spec.llm.contextLength`),
  `--max-num-seqs` (`spec.llm.parallel`), `--chat-template`;
- a LoRA version: `--enable-lora --lora-modules <name>=<adapter dir>` on the base's `--model`, and
  `--max-lora-rank` when given;
- the API key: vLLM reads `VLLM_API_KEY` ("You can pass in the argument --api-key or environment
  variable VLLM_API_KEY"), taken here from `spec.auth`'s Secret key, so it never shows in the pod's args.
  vLLM compares the whole value: that key must hold exactly one token.

The image's entrypoint changed across releases (`python3 -m vllm.entrypoints.openai.api_server`, later
`vllm serve`); the command is set explicitly to the module form, which takes `--model` in both.
Probes use vLLM's `/health` (200 once the engine is up); `/dev/shm` is a memory-backed emptyDir, as
vLLM's Kubernetes guide mounts it for the workers' shared memory (NCCL with tensor parallelism).

Metrics: vLLM exposes `vllm:*` series (docs.vllm.ai "Production Metrics"; vllm-project/vllm
docs/design/metrics.md) and, through prometheus-fastapi-instrumentator, `http_requests_total{handler,
method,status}` with status grouped as 2xx/4xx/5xx and `http_request_duration_seconds`. `METRIC_MAP` is
the one place where they are mapped onto the contract's names (`modelops.api.llmconfig`): the recording
rules of an InferenceService served by vLLM (`recording_rules`), the canary analysis and the HPA all read
through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.inferenceservice_llm import VLLM_IMAGE, LLMServing, VLLMOptions
from modelops.api.llmconfig import (
    METRIC_LLM_E2E,
    METRIC_LLM_GENERATION_TOKENS,
    METRIC_LLM_ITL,
    METRIC_LLM_PROMPT_TOKENS,
    METRIC_LLM_RUNNING,
    METRIC_LLM_TTFT,
    METRIC_LLM_WAITING,
)
from modelops.api.serveconfig import METRIC_LATENCY, METRIC_REQUESTS

PORT = 8080
PATH_HEALTH = "/health"
PATH_METRICS = "/metrics"
COMMAND = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
ENV_API_KEY = "VLLM_API_KEY"
SHM_MOUNT = "/dev/shm"
# vLLM's Kubernetes guide gives /dev/shm a memory emptyDir of this size.
SHM_SIZE = "2Gi"
# torch.compile, Triton and vLLM's own caches go under /tmp (the root filesystem is read-only).
TMP_SIZE = "8Gi"

# The contract's name -> vLLM's series, newest name first (vLLM 0.10 renamed the inter-token latency;
# `vllm:time_per_output_token_seconds` is what earlier releases export).
METRIC_MAP: Mapping[str, tuple[str, ...]] = {
    METRIC_LLM_TTFT: ("vllm:time_to_first_token_seconds",),
    METRIC_LLM_ITL: ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    METRIC_LLM_E2E: ("vllm:e2e_request_latency_seconds",),
    METRIC_LLM_RUNNING: ("vllm:num_requests_running",),
    METRIC_LLM_WAITING: ("vllm:num_requests_waiting",),
    METRIC_LLM_PROMPT_TOKENS: ("vllm:prompt_tokens_total",),
    METRIC_LLM_GENERATION_TOKENS: ("vllm:generation_tokens_total",),
    # Requests by status class, and their latency: the HTTP middleware's series, API calls only.
    METRIC_REQUESTS: ("http_requests_total",),
    METRIC_LATENCY: ("http_request_duration_seconds",),
}
HISTOGRAMS = frozenset({METRIC_LLM_TTFT, METRIC_LLM_ITL, METRIC_LLM_E2E, METRIC_LATENCY})
# The HTTP middleware labels the response class as `status` ("2xx", "5xx"); the contract's label is
# `code`, and "5xx" matches the 5.. that analysis and alerts count as the server's failures.
HTTP_STATUS_LABEL = "status"
HTTP_HANDLER_LABEL = "handler"
# Only OpenAI API calls count as requests (not /health probes or /metrics scrapes).
API_HANDLER_PREFIX = "/v1/"


def series(contract: str) -> str:
    """vLLM's current name for a contract metric."""
    return METRIC_MAP[contract][0]


def _options(llm: LLMServing) -> VLLMOptions:
    return llm.vllm or VLLMOptions()


def image(spec: InferenceServiceSpec) -> str:
    llm = spec.llm or LLMServing()
    return _options(llm).image or VLLM_IMAGE


def args(
    name: str,
    spec: InferenceServiceSpec,
    model_path: str,
    *,
    adapter_path: str | None = None,
) -> list[str]:
    """vLLM's command-line flags for one InferenceService (`adapter_path`: a lora version's directory)."""
    llm = spec.llm or LLMServing()
    opts = _options(llm)
    names = [name, *(n for n in llm.served_model_names if n != name)]
    out = ["--model", model_path, "--host", "0.0.0.0", "--port", str(PORT)]
    if adapter_path is None:
        out += ["--served-model-name", *names]
    else:
        # The base answers under <name>-base; the adapter under the names clients use.
        out += ["--served-model-name", f"{name}-base"]
        out += ["--enable-lora", "--lora-modules", *(f"{n}={adapter_path}" for n in names)]
        if opts.max_lora_rank is not None:
            out += ["--max-lora-rank", str(opts.max_lora_rank)]
    out += [
        "--tensor-parallel-size",
        str(max(spec.resources.gpus, 1)),
        "--gpu-memory-utilization",
        f"{opts.gpu_memory_utilization:g}",
        "--dtype",
        opts.dtype,
        "--max-num-seqs",
        str(llm.parallel),
    ]
    if llm.context_length is not None:
        out += ["--max-model-len", str(llm.context_length)]
    if llm.chat_template is not None:
        out += ["--chat-template", llm.chat_template]
    return out + list(opts.extra_args)


def env(spec: InferenceServiceSpec) -> list[dict[str, Any]]:
    """Offline, caches under /tmp, no usage reporting; the API key from the auth Secret."""
    out: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp/home"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/cache"},
        {"name": "HF_HOME", "value": "/tmp/hf"},
        # The weights are on the claim, verified: never fetch anything from the Hub.
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
    ]
    if spec.auth is not None:
        ref = {"name": spec.auth.secret_name, "key": spec.auth.key}
        out.append({"name": ENV_API_KEY, "valueFrom": {"secretKeyRef": ref}})
    return out


def probes() -> dict[str, dict[str, Any]]:
    """startup (big models load for minutes), readiness and liveness on vLLM's /health."""
    health = {"httpGet": {"path": PATH_HEALTH, "port": "http"}}
    return {
        # Up to 30 minutes to load weights and capture CUDA graphs before liveness counts.
        "startupProbe": {**health, "periodSeconds": 10, "failureThreshold": 180, "timeoutSeconds": 5},
        "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 3, "timeoutSeconds": 5},
        "livenessProbe": {**health, "periodSeconds": 15, "failureThreshold": 4, "timeoutSeconds": 10},
    }


def volumes() -> list[dict[str, Any]]:
    """The memory-backed /dev/shm vLLM's workers share."""
    return [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}]


def volume_mounts() -> list[dict[str, Any]]:
    return [{"name": "dshm", "mountPath": SHM_MOUNT}]


# -- the metric mapping as Prometheus recording rules -----------------------------------------------


def _selector(namespace: str, pods: str) -> str:
    return f'namespace="{namespace}",pod=~"{pods}"'


def recording_rules(name: str, namespace: str, pods_regex: str) -> list[dict[str, Any]]:
    """The contract's series recorded from vLLM's, for the pods of one InferenceService.

    Every recorded series keeps vLLM's labels (namespace and pod included, so prometheus-adapter can
    serve `modelops_llm_requests_waiting` per pod to the HPA) and gains `model="<name>"`, the label the
    alert rules and dashboards select by. Histograms are recorded bucket by bucket (`_bucket`, `_sum`,
    `_count`), so `histogram_quantile` reads the recorded series as it would vLLM's.
    """
    sel = _selector(namespace, pods_regex)
    rules: list[dict[str, Any]] = []
    for contract, sources in METRIC_MAP.items():
        suffixes = ("_bucket", "_sum", "_count") if contract in HISTOGRAMS else ("",)
        for suffix in suffixes:
            extra = ""
            if contract in (METRIC_REQUESTS, METRIC_LATENCY):
                extra = f',{HTTP_HANDLER_LABEL}=~"{API_HANDLER_PREFIX}.*"'
            # `or` takes the old name only where the new one is absent (one vLLM release or the other).
            expr = " or ".join(f"{src}{suffix}{{{sel}{extra}}}" for src in sources)
            if len(sources) > 1:
                expr = f"({expr})"
            expr = f'label_replace({expr}, "model", "{name}", "", "")'
            if contract == METRIC_REQUESTS:
                expr = f'label_replace({expr}, "code", "$1", "{HTTP_STATUS_LABEL}", "(.+)")'
            rules.append({"record": f"{contract}{suffix}", "expr": expr})
    return rules


def recorded_names(rules: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(r["record"]) for r in rules]
