"""Decisions for InferenceServices that serve LLMs: engine, lora base, signals the analysis reads.

The InferenceService kind serves LLM versions with everything it has (canaries, HPA, alerts, auth);
what differs is decided here, as pure functions the other `inferenceservice_*` modules call:

- `with_base`: a lora version is served with its base version, which must be Ready and on a claim;
- `engine_problem`: no engine serves this version under this spec (gguf on GPUs, vllm for gguf ...):
  Stalled with NoRuntimeForFormat, naming the field to change;
- `autoscaling_problem`: `spec.autoscaling.metric: waiting` reads an LLM engine's queue, so it needs
  an LLM version;
- `metric_names`: the series the canary analysis reads per engine: our CPU engines export the contract's
  names; vLLM's pods are read through `builders.vllm.METRIC_MAP` (the one mapping).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.llmconfig import METRIC_LLM_TTFT, REASON_NO_RUNTIME_FOR_FORMAT
from modelops.api.serveconfig import METRIC_LATENCY, METRIC_REQUESTS
from modelops.builders import llm, vllm
from modelops.builders.inferenceservice import Served

REASON_BASE_NOT_READY = "BaseModelVersionNotReady"
REASON_AUTOSCALING_METRIC = "AutoscalingMetricUnavailable"
REASON_LLM_SETTINGS = "LLMSettingsNotApplicable"


@dataclasses.dataclass(frozen=True)
class LLMProblem:
    """Why an LLM version cannot be served (the resolver turns it into its own Problem)."""

    reason: str
    message: str


def base_name(mv: Mapping[str, Any]) -> str | None:
    spec = mv.get("spec") or {}
    if spec.get("format") != llm.FORMAT_LORA:
        return None
    return str((spec.get("baseModelVersion") or {}).get("name") or "") or None


def with_base(
    served: Served, mv: Mapping[str, Any], mvs: Sequence[Mapping[str, Any]], read: Any
) -> Served | LLMProblem:
    """A lora version with its base attached (`read` turns a ModelVersion into a Served or a problem)."""
    name = base_name(mv)
    if name is None:
        return served
    base = next((m for m in mvs if (m.get("metadata") or {}).get("name") == name), None)
    phase = ((base or {}).get("status") or {}).get("phase")
    if base is None or phase != "Ready":
        return LLMProblem(
            REASON_BASE_NOT_READY,
            f"ModelVersion {served.model_version} is a LoRA adapter on ModelVersion {name}, which is "
            f"{'missing' if base is None else phase or 'Pending'}, not Ready; it is served once its base is.",
        )
    found = read(base)
    if not isinstance(found, Served):
        return LLMProblem(str(found.reason), f"the base of {served.model_version}: {found.message}")
    return dataclasses.replace(served, base=found)


def engine_problem(spec: InferenceServiceSpec, served: Served, field: str) -> LLMProblem | None:
    """None when an engine serves the LLM version under this spec, else why not."""
    if not llm.is_llm(served) or llm.engine(spec, served) is not None:
        return None
    return LLMProblem(REASON_NO_RUNTIME_FOR_FORMAT, f"{field}: {llm.why_no_engine(spec, served)}.")


def autoscaling_problem(spec: InferenceServiceSpec, served: Served | None) -> LLMProblem | None:
    """spec.autoscaling.metric waiting needs an LLM engine's queue gauge; spec.llm needs an LLM."""
    if served is None or llm.is_llm(served):
        return None
    if spec.llm is not None:
        return LLMProblem(
            REASON_LLM_SETTINGS,
            f"spec.llm configures the LLM engines, but ModelVersion {served.model_version} has format "
            f"{served.format}, served by modelops-worker serve: drop spec.llm (or serve an LLM version).",
        )
    if spec.autoscaling.metric != "waiting":
        return None
    return LLMProblem(
        REASON_AUTOSCALING_METRIC,
        f"spec.autoscaling.metric: waiting reads an LLM engine's queue, but ModelVersion "
        f"{served.model_version} (format {served.format}) is not an LLM: use concurrency, rps or cpu.",
    )


@dataclasses.dataclass(frozen=True)
class LLMMetricNames:
    """The series a canary analysis reads from an LLM engine's pods."""

    requests: str
    latency: str
    code_label: str
    ttft: str
    handler_prefix: str | None  # only requests of these handlers count (vLLM's HTTP middleware)


def metric_names(spec: InferenceServiceSpec, served: Served | None) -> LLMMetricNames | None:
    """The names for an LLM version's pods (None: not an LLM, the caller's defaults apply)."""
    if spec.predictor is not None or served is None or not llm.is_llm(served):
        return None
    if llm.engine(spec, served) == llm.VLLM:
        return LLMMetricNames(
            requests=vllm.series(METRIC_REQUESTS),
            latency=vllm.series(METRIC_LATENCY),
            code_label=vllm.HTTP_STATUS_LABEL,
            ttft=vllm.series(METRIC_LLM_TTFT),
            handler_prefix=vllm.API_HANDLER_PREFIX,
        )
    return LLMMetricNames(METRIC_REQUESTS, METRIC_LATENCY, "code", METRIC_LLM_TTFT, None)
