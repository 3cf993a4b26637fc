"""The serving container of an LLM version: which engine serves it, and how that engine is started.

A ModelVersion of format huggingface, gguf or lora is served over OpenAI's API by an existing engine
(`modelops.api.inferenceservice_llm` has the table): vLLM's own image on GPUs (`builders.vllm`), or the
worker image's `modelops-worker serve-llm` (llama.cpp or transformers) on CPUs, configured by one JSON
environment variable, `MODELOPS_LLM_SERVE_CONFIG` (`modelops.api.llmconfig.LLMServeConfig`).

A lora version is served on top of its base version: the base's claim is mounted read-only next to the
adapter's, and both digests are handed to the engine (the CPU engines refuse bytes that differ; vLLM is
given the verified directories).

Pure functions of the spec and the resolved version; `builders.inferenceservice` calls them for LLM
versions and keeps everything else (Deployments, Services, HPA, routes) the same for every runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.inferenceservice_llm import LLMServing
from modelops.api.llmconfig import (
    ENV_LLM_SERVE_CONFIG,
    LLM_SERVE_PORT,
    PATH_LLM_LIVE,
    PATH_LLM_READY,
    REASON_ADAPTER_INCOMPATIBLE,
    REASON_ENGINE_UNAVAILABLE,
    REASON_MANIFEST_INVALID,
    LLMServeConfig,
)
from modelops.api.modelversion import LLM_FORMATS
from modelops.builders import vllm

if TYPE_CHECKING:
    from modelops.builders.inferenceservice import Served

VLLM, LLAMACPP, TRANSFORMERS = "vllm", "llamacpp", "transformers"
ENGINES = (VLLM, LLAMACPP, TRANSFORMERS)
CPU_ENGINES = (LLAMACPP, TRANSFORMERS)
FORMAT_LORA = "lora"
# Where a lora version's base artifact is mounted (the adapter is under the usual model mount).
BASE_MOUNT = "/var/run/modelops/base"
SERVE_COMMAND = ["modelops-worker", "serve-llm"]
# Reasons an LLM serving pod gives for not starting that no restart cures (its termination message).
PERMANENT_REASONS = {
    REASON_MANIFEST_INVALID: "The model directory's modelops-manifest.json disagrees with its files; "
    "re-register the directory as a new ModelVersion.",
    REASON_ADAPTER_INCOMPATIBLE: "The LoRA adapter does not fit its base model: register it on the base "
    "it was trained from (spec.baseModelVersion).",
    REASON_ENGINE_UNAVAILABLE: "The worker image lacks this engine: use an image with the LLM extras, or "
    "another spec.llm.engine.",
}


def is_llm(served: Served | None) -> bool:
    return served is not None and served.format in LLM_FORMATS


def base_format(served: Served) -> str:
    """The format of the weights the engine loads: a lora version's base's, else its own."""
    if served.format == FORMAT_LORA and served.base is not None:
        return served.base.format
    return served.format


def engine(spec: InferenceServiceSpec, served: Served) -> str | None:
    """The engine that serves `served` under `spec`, or None when none can (a reason: `why_no_engine`)."""
    llm = spec.llm or LLMServing()
    fmt = base_format(served)
    if fmt not in ("gguf", "huggingface"):
        return None
    gpus = spec.resources.gpus > 0
    wanted = llm.engine
    if wanted == "auto":
        if fmt == "gguf":
            return None if gpus else LLAMACPP
        return VLLM if gpus and not llm.embeddings else TRANSFORMERS
    if wanted == VLLM:
        return VLLM if fmt == "huggingface" else None
    if wanted == LLAMACPP:
        return LLAMACPP if fmt == "gguf" else None
    return TRANSFORMERS if fmt == "huggingface" else None


def why_no_engine(spec: InferenceServiceSpec, served: Served) -> str:
    """Why `engine` found none, naming the field to change."""
    llm = spec.llm or LLMServing()
    fmt = base_format(served)
    what = f"ModelVersion {served.model_version} (format {served.format}"
    what += f" on a {fmt} base)" if served.format == FORMAT_LORA else ")"
    if fmt == "gguf" and spec.resources.gpus > 0:
        return (
            f"{what} is served by llama.cpp on CPUs: set spec.resources.gpus to 0, or register the model "
            "as format huggingface for vLLM on GPUs"
        )
    if fmt == "gguf":
        return f"{what} is served by the llamacpp engine: set spec.llm.engine to llamacpp or auto"
    return (
        f"{what} is served by vllm (GPUs) or transformers (CPUs), not {llm.engine}: set spec.llm.engine "
        "to auto, vllm or transformers"
    )


def served_path(model_mount: str, served: Served) -> tuple[str, str | None]:
    """(weights path, adapter path or None) inside the container."""
    if served.format == FORMAT_LORA and served.base is not None:
        return f"{BASE_MOUNT}/{served.base.path}", f"{model_mount}/{served.path}"
    return f"{model_mount}/{served.path}", None


def serve_config(
    name: str, spec: InferenceServiceSpec, served: Served, *, model_mount: str, auth_file: str | None
) -> LLMServeConfig:
    """The CPU engines' configuration (`MODELOPS_LLM_SERVE_CONFIG`)."""
    llm = spec.llm or LLMServing()
    weights, adapter = served_path(model_mount, served)
    digest = served.base.sha256 if adapter is not None and served.base is not None else served.sha256
    chosen = engine(spec, served)
    return LLMServeConfig(
        model_name=name,
        aliases=[n for n in llm.served_model_names if n != name],
        model_version=str(served.version if served.version is not None else served.model_version),
        model_version_name=served.model_version,
        artifact_path=weights,
        digest=digest,
        format="gguf" if base_format(served) == "gguf" else "huggingface",
        adapter_path=adapter,
        adapter_digest=served.sha256 if adapter is not None else None,
        engine=chosen if chosen in CPU_ENGINES else "auto",
        context_length=llm.context_length,
        max_prompt_tokens=llm.max_prompt_tokens,
        max_tokens_limit=llm.max_tokens,
        default_max_tokens=llm.default_max_tokens,
        parallel=llm.parallel,
        max_waiting=llm.max_waiting,
        threads=llm.threads,
        chat_template=llm.chat_template,
        embeddings=llm.embeddings,
        auth_tokens_file=auth_file,
        port=LLM_SERVE_PORT,
    )


def cpu_container(
    name: str,
    spec: InferenceServiceSpec,
    served: Served,
    *,
    image: str,
    model_mount: str,
    auth_file: str | None,
) -> dict[str, Any]:
    """`modelops-worker serve-llm`: OpenAI's API on port http, the worker's probes and /metrics."""
    config = serve_config(name, spec, served, model_mount=model_mount, auth_file=auth_file)
    return {
        "command": list(SERVE_COMMAND),
        "image": image,
        "env": [
            {"name": ENV_LLM_SERVE_CONFIG, "value": config.model_dump_json(by_alias=True, exclude_none=True)},
            {"name": "TMPDIR", "value": "/tmp"},
            {"name": "HF_HOME", "value": "/tmp/hf"},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
        ],
        "ports": [{"name": "http", "containerPort": LLM_SERVE_PORT, "protocol": "TCP"}],
        # Loading weights takes longer than a classifier: ten minutes before liveness counts.
        "startupProbe": {
            "httpGet": {"path": PATH_LLM_LIVE, "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 300,
        },
        "livenessProbe": {
            "httpGet": {"path": PATH_LLM_LIVE, "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "readinessProbe": {
            "httpGet": {"path": PATH_LLM_READY, "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 2,
            "timeoutSeconds": 2,
        },
    }


def vllm_container(
    name: str, spec: InferenceServiceSpec, served: Served, *, model_mount: str
) -> dict[str, Any]:
    """vLLM's OpenAI server (its own image), flags from spec.llm, API key from spec.auth's Secret."""
    weights, adapter = served_path(model_mount, served)
    return {
        "image": vllm.image(spec),
        "command": list(vllm.COMMAND),
        "args": vllm.args(name, spec, weights, adapter_path=adapter),
        "env": vllm.env(spec),
        "ports": [{"name": "http", "containerPort": vllm.PORT, "protocol": "TCP"}],
        **vllm.probes(),
    }


def container(
    name: str,
    spec: InferenceServiceSpec,
    served: Served,
    *,
    image: str,
    model_mount: str,
    auth_file: str | None,
) -> dict[str, Any]:
    """The engine's container (without name, resources, security context and mounts, which the caller adds)."""
    if engine(spec, served) == VLLM:
        return vllm_container(name, spec, served, model_mount=model_mount)
    return cpu_container(name, spec, served, image=image, model_mount=model_mount, auth_file=auth_file)


def extra_volumes(
    spec: InferenceServiceSpec, served: Served
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) an LLM pod has beyond the model and /tmp: the lora base, vLLM's /dev/shm."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if served.format == FORMAT_LORA and served.base is not None and served.base.claim:
        volumes.append(
            {
                "name": "base-model",
                "persistentVolumeClaim": {"claimName": served.base.claim, "readOnly": True},
            }
        )
        mounts.append({"name": "base-model", "mountPath": BASE_MOUNT, "readOnly": True})
    if engine(spec, served) == VLLM:
        volumes += vllm.volumes()
        mounts += vllm.volume_mounts()
    return volumes, mounts


def tmp_size(spec: InferenceServiceSpec, served: Served) -> str:
    """The /tmp emptyDir's size: vLLM compiles kernels there."""
    return vllm.TMP_SIZE if engine(spec, served) == VLLM else "1Gi"
