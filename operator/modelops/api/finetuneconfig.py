"""The run configuration of a fine-tune: what the operator tells a `modelops-worker train` pod of a
TrainingJob with `spec.fineTune`.

It travels in the same `MODELOPS_RUN_CONFIG` variable as the built-in recipe's `TrainRunConfig`, told
apart by `recipe: causal-lm`, and shares its environment, exit codes and result (`TrainResult`, with an
artifact of format `huggingface` whose path is a directory). The base model arrives resolved: the
operator mounts its claim read-only at `BASE_MODEL_MOUNT` and passes the directory and where it came
from (for lineage). No torch here: the operator imports this module.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from modelops.api.common import ApiModel, DnsLabel
from modelops.api.finetune import BASE_MODEL_MOUNT, FineTuneSpec
from modelops.api.runconfig import CheckpointPolicy, DistributedPolicy, JobRef
from modelops.api.trainingjob import Hyperparameters, TrainingJobSpec

RECIPE = "causal-lm"


class BaseModelRef(ApiModel):
    """Where the base model came from, as the result's lineage names it."""

    model_version: str | None = Field(default=None, description="The ModelVersion, when one was named.")
    uri: str = Field(description="pvc://<claim>/<path> of the directory that was loaded.")
    sha256: str | None = Field(
        default=None, description="Its verified digest, when the ModelVersion has one."
    )


class FineTuneOutput(ApiModel):
    model_name: DnsLabel = Field(description="Registered model name (the job's name when unset in the spec).")


class FineTuneRunConfig(ApiModel):
    """Everything a fine-tuning process needs, as JSON in `MODELOPS_RUN_CONFIG`."""

    version: Literal[1] = 1
    recipe: Literal["causal-lm"] = "causal-lm"
    job: JobRef
    fine_tune: FineTuneSpec
    base_model_dir: str = Field(description="Absolute path of the base model's directory in the pod.")
    base_model: BaseModelRef
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint: CheckpointPolicy = Field(default_factory=CheckpointPolicy)
    output: FineTuneOutput
    distributed: DistributedPolicy = Field(default_factory=DistributedPolicy)

    @classmethod
    def from_spec(
        cls, name: str, namespace: str, uid: str, spec: TrainingJobSpec, base: BaseModelRef, base_path: str
    ) -> FineTuneRunConfig:
        """The run configuration of a fine-tune whose base model is `base`, at `base_path` in its claim."""
        if spec.fine_tune is None:
            raise ValueError("spec.fineTune: a fine-tune run configuration needs spec.fineTune")
        procs = spec.distributed.procs_per_node
        return cls(
            job=JobRef(name=name, namespace=namespace, uid=uid),
            fine_tune=spec.fine_tune,
            base_model_dir=f"{BASE_MODEL_MOUNT}/{base_path}".rstrip("/"),
            base_model=base,
            hyperparameters=spec.hyperparameters,
            precision=spec.precision,
            device="cuda" if spec.resources.gpus > 0 else "cpu",
            checkpoint=CheckpointPolicy(
                interval_steps=spec.checkpoint.interval_steps,
                interval_seconds=spec.checkpoint.interval_seconds,
                keep=spec.checkpoint.keep,
            ),
            output=FineTuneOutput(model_name=spec.output.model_name or name),
            distributed=DistributedPolicy(
                nodes=spec.distributed.nodes,
                procs_per_node=procs if isinstance(procs, int) else "auto",
                backend=spec.distributed.backend,
            ),
        )


def is_fine_tune(raw: str) -> bool:
    """Whether a `MODELOPS_RUN_CONFIG` value is a fine-tune's (its `recipe` says so)."""
    try:
        data: Any = json.loads(raw)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("recipe") == RECIPE
