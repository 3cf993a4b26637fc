"""The run configuration: what the operator tells a training pod, and what the pod tells it back.

The operator and the worker are separate processes (often separate images), so the contract between
them is written down once, here, as pydantic models both sides import: the operator serialises a
`TrainRunConfig` into the `MODELOPS_RUN_CONFIG` environment variable of every training pod, and parses
the pod's termination message into a `TrainResult`. The models reuse the TrainingJob spec's own field
models so the two cannot drift. No torch here: the operator imports this module.

Environment of a training container (`modelops-worker train`):

- `MODELOPS_RUN_CONFIG` (required): JSON of `TrainRunConfig` (camelCase keys).
- `MODELOPS_CHECKPOINT_DIR` (required): a directory on the checkpoint PVC, shared by all restarts.
- `MODELOPS_OUTPUT_DIR` (default: `$MODELOPS_CHECKPOINT_DIR/output`): where the artifact and its model
  card go; `TrainResult.artifact.path` is relative to it.
- `MODELOPS_DATA_DIR` (default `/data`): where the dataset claim is mounted; a file dataset is read from
  `$MODELOPS_DATA_DIR/<spec.dataset.file.path>`.
- `MODELOPS_METRICS_PORT` (default 9400): Prometheus endpoint of local rank 0 of each pod.
- `MODELOPS_TERMINATION_LOG` (default `/dev/termination-log`): where the result JSON is written.
- `PET_NNODES`, `PET_NODE_RANK`, `PET_NPROC_PER_NODE`, `PET_MASTER_ADDR`, `PET_MASTER_PORT`: read by
  torchrun as its flags when the run is distributed (`nodes > 1` or more than one process per node).

The result (`TrainResult`, the termination message) is read leniently, because a custom image writes it
by hand: unknown keys are ignored, extra metrics are kept when well named and numeric (bounded), and
`hyperparameters` reports what the run used (docs/trainingjob.md, "Bring your own training code").

Exit codes: `EXIT_SUCCEEDED` (0); `EXIT_BAD_CONFIG` (64) and `EXIT_BAD_DATA` (65) are permanent and must
not be retried; anything else (crash, OOM kill 137, SIGTERM 143) is retryable and the next attempt
resumes from the newest checkpoint that verifies.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from modelops.api.common import ApiModel, DnsLabel
from modelops.api.trainingjob import (
    DatasetSpec,
    DataValidation,
    Hyperparameters,
    ModelSpec,
    TrainingJobSpec,
)

ENV_RUN_CONFIG = "MODELOPS_RUN_CONFIG"
ENV_CHECKPOINT_DIR = "MODELOPS_CHECKPOINT_DIR"
ENV_OUTPUT_DIR = "MODELOPS_OUTPUT_DIR"
ENV_DATA_DIR = "MODELOPS_DATA_DIR"
ENV_METRICS_PORT = "MODELOPS_METRICS_PORT"
ENV_TERMINATION_LOG = "MODELOPS_TERMINATION_LOG"

DEFAULT_DATA_DIR = "/data"
DEFAULT_METRICS_PORT = 9400
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
# Kubernetes truncates a termination message beyond 4096 bytes; the worker keeps its result below.
TERMINATION_MESSAGE_LIMIT = 4096

EXIT_SUCCEEDED = 0
EXIT_BAD_CONFIG = 64  # EX_USAGE: the run configuration or the environment is wrong; retrying cannot help.
EXIT_BAD_DATA = 65  # EX_DATAERR: the dataset is missing or fails validation; retrying cannot help.
EXIT_SIGTERM = 143  # 128 + SIGTERM: stopped (eviction, preemption, deletion); retryable.
PERMANENT_EXIT_CODES = frozenset({EXIT_BAD_CONFIG, EXIT_BAD_DATA})

REASON_SUCCEEDED = "Succeeded"
REASON_INVALID_CONFIG = "InvalidRunConfig"
REASON_DATA_VALIDATION_FAILED = "DataValidationFailed"
REASON_DATASET_NOT_FOUND = "DatasetNotFound"
REASON_TERMINATED = "Terminated"
REASON_TRAINING_ERROR = "TrainingError"
REASON_VERIFICATION_FAILED = "VerificationFailed"


def is_retryable(exit_code: int) -> bool:
    """Whether a training container that exited with this code should be restarted."""
    return exit_code != EXIT_SUCCEEDED and exit_code not in PERMANENT_EXIT_CODES


class JobRef(ApiModel):
    """The TrainingJob this run belongs to; recorded in checkpoints and the model card."""

    name: DnsLabel = Field(description="metadata.name of the TrainingJob.")
    namespace: DnsLabel = Field(description="metadata.namespace of the TrainingJob.")
    uid: str = Field(default="", description="metadata.uid of the TrainingJob.")


class CheckpointPolicy(ApiModel):
    """When to write checkpoints and how many to keep (storage is the operator's business)."""

    interval_steps: int | None = Field(default=None, ge=1, description="Every N optimizer steps.")
    interval_seconds: int = Field(default=60, ge=1, description="At least this often, and each epoch.")
    keep: int = Field(default=3, ge=1, le=100, description="How many recent checkpoints to keep.")


class OutputPolicy(ApiModel):
    """What the worker exports on success."""

    format: Literal["torchscript", "state_dict"] = Field(default="torchscript")
    model_name: DnsLabel = Field(description="Registered model name (the job's name when unset in the spec).")


class DistributedPolicy(ApiModel):
    """Layout of a data-parallel run. The worker starts torchrun when world size would exceed one."""

    nodes: int = Field(default=1, ge=1, le=256, description="Pods; torchrun --nnodes.")
    procs_per_node: int | Literal["auto"] = Field(
        default="auto", description="torchrun --nproc-per-node; auto: one per visible GPU, else one."
    )
    backend: Literal["auto", "nccl", "gloo"] = Field(
        default="auto", description="auto: nccl on GPU, else gloo."
    )


class TrainRunConfig(ApiModel):
    """Everything a `modelops-worker train` process needs to know, as JSON in `MODELOPS_RUN_CONFIG`."""

    version: Literal[1] = Field(default=1, description="Version of this contract.")
    job: JobRef
    model: ModelSpec
    dataset: DatasetSpec
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when a GPU is visible, else CPU."
    )
    checkpoint: CheckpointPolicy = Field(default_factory=CheckpointPolicy)
    data_validation: DataValidation = Field(default_factory=DataValidation)
    output: OutputPolicy
    distributed: DistributedPolicy = Field(default_factory=DistributedPolicy)

    @classmethod
    def from_spec(cls, name: str, namespace: str, uid: str, spec: TrainingJobSpec) -> TrainRunConfig:
        """The run configuration of a TrainingJob with a built-in recipe (spec.model and spec.dataset)."""
        if spec.model is None or spec.dataset is None:
            raise ValueError(
                "spec.model and spec.dataset: a run configuration exists only for built-in recipes; "
                "a custom spec.image gets the environment alone"
            )
        procs = spec.distributed.procs_per_node
        return cls(
            job=JobRef(name=name, namespace=namespace, uid=uid),
            model=spec.model,
            dataset=spec.dataset,
            hyperparameters=spec.hyperparameters,
            precision=spec.precision,
            device="cuda" if spec.resources.gpus > 0 else "cpu",
            checkpoint=CheckpointPolicy(
                interval_steps=spec.checkpoint.interval_steps,
                interval_seconds=spec.checkpoint.interval_seconds,
                keep=spec.checkpoint.keep,
            ),
            data_validation=spec.data_validation,
            output=OutputPolicy(
                format="state_dict" if spec.output.format == "state_dict" else "torchscript",
                model_name=spec.output.model_name or name,
            ),
            distributed=DistributedPolicy(
                nodes=spec.distributed.nodes,
                procs_per_node=procs if isinstance(procs, int) else "auto",
                backend=spec.distributed.backend,
            ),
        )


# Metrics beyond the known ones (a custom image's own: bleu, perplexity, map50 ...): names as
# Prometheus would accept them, finite numbers, at most this many; anything else is left out (and
# named in `ResultMetrics.ignored`), never the reason a whole result is dropped.
MAX_EXTRA_METRICS = 32
METRIC_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$"
MAX_HYPERPARAMETERS = 64
MAX_HYPERPARAMETER_TEXT = 256


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class ResultMetrics(ApiModel):
    """Final validation metrics (macro-averaged; auc for binary tasks only), plus a custom run's own.

    Extra keys are kept when their name matches `METRIC_NAME_PATTERN` and their value is a finite
    number, up to `MAX_EXTRA_METRICS` (in the order written); the others are listed in `ignored`.
    """

    model_config = ConfigDict(extra="allow")

    loss: float | None = None
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    auc: float | None = None
    _ignored: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_valid_extras(cls, data: Any, handler: Any) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        known = {name for name in cls.model_fields} | {f.alias for f in cls.model_fields.values() if f.alias}
        kept: dict[str, Any] = {}
        ignored: list[str] = []
        extras = 0
        for key, value in data.items():
            if key in known:
                kept[key] = value
            elif (
                isinstance(key, str)
                and re.match(METRIC_NAME_PATTERN, key)
                and _finite_number(value)
                and extras < MAX_EXTRA_METRICS
            ):
                kept[key] = float(value)
                extras += 1
            else:
                ignored.append(str(key)[:64])
        model = handler(kept)
        model._ignored = ignored[:MAX_EXTRA_METRICS]
        return model

    @property
    def ignored(self) -> list[str]:
        """Names of extra metrics left out (bad name, not a finite number, or beyond the limit)."""
        return list(self._ignored)

    @property
    def extra(self) -> dict[str, float]:
        """The custom metrics that were kept."""
        return {k: float(v) for k, v in (self.model_extra or {}).items()}


class ResultArtifact(ApiModel):
    """The exported model, relative to `MODELOPS_OUTPUT_DIR`.

    For a directory (format huggingface or lora) `path` names the directory and `sha256` is its
    directory digest (docs/llm.md); `size_bytes` is the sum of its files.
    """

    path: str
    sha256: str
    size_bytes: int
    format: Literal["torchscript", "state_dict", "huggingface", "gguf", "lora"]
    model_card: str | None = Field(default=None, description="Path of the model card JSON, relative.")
    model_card_sha256: str | None = None


class ResultCheckpoint(ApiModel):
    """The newest checkpoint written (or resumed from), relative to `MODELOPS_CHECKPOINT_DIR`."""

    step: int
    path: str
    sha256: str = Field(description="sha256 of the checkpoint's manifest.json.")


class ResultBaseModel(ApiModel):
    """The base model a fine-tune started from; becomes the ModelVersion's `status.lineage.baseModel`.

    With an artifact of format lora, `modelVersion` is also the registered version's
    `spec.baseModelVersion` (the adapter is served on top of it).
    """

    model_config = ConfigDict(extra="ignore")

    model_version: str | None = Field(default=None, description="The base ModelVersion, when registered.")
    sha256: str | None = Field(default=None, description="Digest of the base artifact the run loaded.")
    uri: str | None = Field(
        default=None, description="Where the base came from when not a registered version."
    )
    method: Literal["full", "lora", "qlora"] | None = Field(
        default=None, description="How it was fine-tuned."
    )


def _hyperparameter(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_HYPERPARAMETER_TEXT
    return isinstance(value, bool) or _finite_number(value)


class TrainResult(ApiModel):
    """The termination message of a training container (compact JSON below 4096 bytes).

    Local rank 0 of every pod writes one; only global rank 0's carries `artifact`. A failed run has
    `status: Failed`, a CamelCase `reason` and a `message` saying what to fix. Unknown keys are
    ignored (a custom image may write more than this contract knows), never a reason to drop the result.
    """

    model_config = ConfigDict(extra="ignore")

    status: Literal["Succeeded", "Failed"]
    reason: str
    message: str = ""
    exit_code: int = 0
    metrics: ResultMetrics | None = None
    artifact: ResultArtifact | None = None
    checkpoint: ResultCheckpoint | None = None
    dataset_digest: str | None = None
    epochs: int | None = Field(default=None, description="Epochs completed.")
    steps: int | None = Field(default=None, description="Optimizer steps completed.")
    train_loss: float | None = Field(default=None, description="Training loss of the last step.")
    resumed_from_step: int | None = Field(default=None, description="Step of the checkpoint resumed from.")
    world_size: int | None = None
    rank: int | None = Field(default=None, description="Global rank of the process that wrote this.")
    samples_per_rank: list[int] | None = Field(
        default=None, description="Training samples each rank processed in this attempt (up to 64 ranks)."
    )
    hyperparameters: dict[str, Any] | None = Field(
        default=None,
        description="The hyperparameters the run used (numbers, booleans, short strings; up to 64), "
        "recorded in the ModelVersion's lineage. A custom image reports its own here.",
    )
    base_model: ResultBaseModel | None = Field(
        default=None, description="The base model of a fine-tune (LLM recipes), recorded in lineage."
    )

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _keep_valid_hyperparameters(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return None
        kept = {
            str(k): v
            for k, v in value.items()
            if isinstance(k, str) and re.match(METRIC_NAME_PATTERN, k) and _hyperparameter(v)
        }
        return dict(list(kept.items())[:MAX_HYPERPARAMETERS]) or None
