"""The API of modelops: typed models of the three custom resources, and what a CRD needs beyond them.

`KINDS` is the one list every other part reads (the CRD generator, the operator's handlers, the chart
tests), so adding a field or a printer column happens here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from modelops import API_VERSION, GROUP, VERSION
from modelops.api.common import NAME_LIMITS
from modelops.api.inferenceservice import InferenceService, InferenceServiceSpec, InferenceServiceStatus
from modelops.api.modelversion import ROOT_RULES as MODELVERSION_ROOT_RULES
from modelops.api.modelversion import ModelVersion, ModelVersionSpec, ModelVersionStatus
from modelops.api.trainingjob import ROOT_RULES as TRAININGJOB_ROOT_RULES
from modelops.api.trainingjob import TrainingJob, TrainingJobSpec, TrainingJobStatus
from modelops.api.tuningjob import ROOT_RULES as TUNINGJOB_ROOT_RULES
from modelops.api.tuningjob import TuningJob, TuningJobSpec, TuningJobStatus


@dataclass(frozen=True)
class KindInfo:
    """Everything about one kind that is not a field of its spec or status."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    model: type[BaseModel]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    description: str
    printer_columns: tuple[dict[str, Any], ...]
    root_rules: tuple[dict[str, str], ...] = field(default=())
    categories: tuple[str, ...] = ("modelops",)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _col(
    name: str, path: str, type_: str = "string", priority: int = 0, description: str = ""
) -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        col["priority"] = priority
    if description:
        col["description"] = description
    return col


_AGE = _col("Age", ".metadata.creationTimestamp", "date")
_READY = _col("Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition")

TRAININGJOB = KindInfo(
    kind="TrainingJob",
    plural="trainingjobs",
    singular="trainingjob",
    short_names=("tj",),
    model=TrainingJob,
    spec_model=TrainingJobSpec,
    status_model=TrainingJobStatus,
    description="A PyTorch training run on one or many (GPU) nodes: resumable from checkpoints, with live "
    "progress, final metrics, and a ModelVersion on success.",
    printer_columns=(
        _col("Phase", ".status.phase"),
        _col("Progress", ".status.progress.percent", "integer", description="Percent done"),
        _col("Accuracy", ".status.metrics.accuracy", "number", description="Validation accuracy"),
        _col("Loss", ".status.progress.loss", "number", description="Latest training loss"),
        _col("Restarts", ".status.restarts", "integer"),
        _col(
            "Checkpoint",
            ".status.checkpoint.step",
            "integer",
            priority=1,
            description="Latest checkpoint step",
        ),
        _col("ETA", ".status.progress.etaSeconds", "integer", priority=1, description="Seconds to go"),
        _col("Model", ".status.modelVersion", priority=1, description="ModelVersion created"),
        _col(
            "Tokens/s",
            ".status.progress.tokensPerSecond",
            "number",
            priority=1,
            description="Fine-tune throughput (tokens/s)",
        ),
        _col(
            "Perplexity",
            ".status.progress.perplexity",
            "number",
            priority=1,
            description="Fine-tune perplexity (exp of the loss)",
        ),
        _AGE,
    ),
    root_rules=(*NAME_LIMITS["TrainingJob"].rules(), *TRAININGJOB_ROOT_RULES),
)

MODELVERSION = KindInfo(
    kind="ModelVersion",
    plural="modelversions",
    singular="modelversion",
    short_names=("mv",),
    model=ModelVersion,
    spec_model=ModelVersionSpec,
    status_model=ModelVersionStatus,
    description="A version of a registered model: a verified artifact (sha256), its lineage and metrics, "
    "and the aliases it holds.",
    printer_columns=(
        _col("Model", ".spec.model"),
        _col("Version", ".status.version", "integer"),
        _col("Phase", ".status.phase"),
        _col("Accuracy", ".status.metrics.accuracy", "number"),
        _col("Aliases", ".status.aliases"),
        _col("SHA256", ".status.artifact.sha256", priority=1),
        _col("Format", ".spec.format", priority=1),
        _AGE,
    ),
    root_rules=(*NAME_LIMITS["ModelVersion"].rules(), *MODELVERSION_ROOT_RULES),
)

INFERENCESERVICE = KindInfo(
    kind="InferenceService",
    plural="inferenceservices",
    singular="inferenceservice",
    # Not "isvc": KServe owns that short name, and both may be installed side by side.
    short_names=("misvc",),
    model=InferenceService,
    spec_model=InferenceServiceSpec,
    status_model=InferenceServiceStatus,
    description="Serves a ModelVersion over the Open Inference Protocol (v2) with adaptive batching, or an "
    "LLM over OpenAI's API (vLLM, llama.cpp, transformers), with autoscaling and analysed canary rollouts.",
    printer_columns=(
        _col("Model", ".spec.modelRef.model"),
        _col("Version", ".status.stable.version", "integer"),
        _col("Canary", ".status.canary.version", "integer"),
        _col("Traffic", ".status.trafficSummary", description="stable/canary percent"),
        _READY,
        _col("URL", ".status.url"),
        _col("Runtime", ".status.stable.runtime", priority=1),
        _AGE,
    ),
    root_rules=NAME_LIMITS["InferenceService"].rules(),
)

TUNINGJOB = KindInfo(
    kind="TuningJob",
    plural="tuningjobs",
    singular="tuningjob",
    short_names=("tune",),
    model=TuningJob,
    spec_model=TuningJobSpec,
    status_model=TuningJobStatus,
    description="A hyperparameter search: trials are TrainingJobs proposed by Optuna, stopped early by a "
    "pruner, ranked by an objective metric; the best may be registered as a ModelVersion.",
    printer_columns=(
        _col("Phase", ".status.phase"),
        _col("Done", ".status.trialsSucceeded", "integer", description="Trials finished and scored"),
        _col("Running", ".status.trialsRunning", "integer", description="Trials running"),
        _col("Pruned", ".status.trialsPruned", "integer", description="Trials stopped early"),
        _col("Failed", ".status.trialsFailed", "integer", description="Trials failed"),
        _col("Best", ".status.bestValue", "number", description="Best objective value"),
        _col("Best-Trial", ".status.bestTrial.name", priority=1, description="Best trial"),
        _col("Model", ".status.modelVersion", priority=1, description="ModelVersion registered"),
        _AGE,
    ),
    root_rules=tuple(TUNINGJOB_ROOT_RULES),
)

KINDS: tuple[KindInfo, ...] = (TRAININGJOB, MODELVERSION, INFERENCESERVICE, TUNINGJOB)

__all__ = [
    "API_VERSION",
    "GROUP",
    "INFERENCESERVICE",
    "KINDS",
    "MODELVERSION",
    "TRAININGJOB",
    "TUNINGJOB",
    "VERSION",
    "KindInfo",
]
