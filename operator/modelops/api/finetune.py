"""TrainingJob `spec.fineTune`: fine-tune a causal language model (full, LoRA or QLoRA) on text or chat data.

The shape follows what Hugging Face users write (`LoraConfig(r, lora_alpha, lora_dropout,
target_modules)`, `max_seq_length`, `bf16`/`fp16`) and what Kubeflow Trainer's LLM runtimes take (a
base model and a dataset from storage, a PEFT config, the number of nodes): the base model is a
registered ModelVersion (format huggingface) or a Hugging Face model directory on a claim; the data is a
JSONL file of `{"text": ...}` or `{"messages": [{"role", "content"}, ...]}` lines on a claim. Epochs,
batch size, learning rate, seed, validation split and gradient accumulation come from
`spec.hyperparameters`, precision from `spec.precision`, nodes from `spec.distributed`, checkpoints and
retries from `spec.checkpoint` and `spec.runPolicy`, as for every TrainingJob.

These models are shared by the API (the CRD) and the worker (the run configuration): no torch here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from modelops.api.common import RELATIVE_PATH_PATTERN, ApiModel, DnsLabel, inside_claim, rules

# Where the pods see the base model's claim (read-only); the data claim is mounted at /data as for
# every TrainingJob dataset.
BASE_MODEL_MOUNT = "/var/run/modelops/base-model"
BASE_MODEL_VOLUME = "base-model"
# The exported model, relative to MODELOPS_OUTPUT_DIR: a Hugging Face directory (merged weights, or
# the adapter alone with `output.mergeAdapter: false`).
FINETUNE_OUTPUT_DIR = "model"

TARGET_MODULE_PATTERN = r"^[A-Za-z0-9_.*-]{1,128}$"


class BaseModelSource(ApiModel):
    """The model to start from: a registered ModelVersion, or a Hugging Face directory on a claim."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.modelVersion) != has(self.claimName)",
                "spec.fineTune.baseModel: set exactly one of modelVersion (a registered ModelVersion) or "
                "claimName with path (a Hugging Face model directory on a claim)",
            ),
            (
                "has(self.claimName) == has(self.path)",
                "spec.fineTune.baseModel: claimName and path go together (the directory inside the claim)",
            ),
        )
    )

    model_version: DnsLabel | None = Field(
        default=None,
        description="A ModelVersion in this namespace (format huggingface, Ready); its verified directory "
        "is mounted read-only and recorded as the result's base model in lineage.",
    )
    claim_name: DnsLabel | None = Field(
        default=None, description="A PersistentVolumeClaim holding a Hugging Face model directory."
    )
    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        pattern=RELATIVE_PATH_PATTERN,
        description="The directory inside the claim (config.json, tokenizer files, *.safetensors), e.g. "
        "models/tiny-llama.",
        json_schema_extra=inside_claim("spec.fineTune.baseModel.path"),
    )


class FineTuneData(ApiModel):
    """The training data: a JSONL file on a claim, checked line by line before the first step."""

    claim_name: DnsLabel = Field(description="The PersistentVolumeClaim holding the file, in this namespace.")
    path: str = Field(
        min_length=1,
        max_length=4096,
        pattern=RELATIVE_PATH_PATTERN,
        description="Path of the JSONL file inside the claim, e.g. data/train.jsonl.",
        json_schema_extra=inside_claim("spec.fineTune.data.path"),
    )
    format: Literal["auto", "text", "chat", "completion"] = Field(
        default="auto",
        description='text: every line is {"text": "..."}; chat: every line is {"messages": [{"role": '
        '"system"|"user"|"assistant"|"tool", "content": "..."}, ...]} (OpenAI\'s fine-tuning format; '
        "content may be a list of text parts), rendered with the base model's chat template; completion: "
        'every line is {"prompt": "...", "completion": "..."} (trained as their concatenation); auto: '
        "decided by the first line, and every line must then be of that kind.",
    )
    over_length: Literal["truncate", "refuse"] = Field(
        default="truncate",
        description="An example longer than maxSequenceLength tokens: truncate keeps its first "
        "maxSequenceLength tokens (and says how many were cut); refuse fails the job before training "
        "with the line numbers of those too long.",
    )
    max_invalid_lines: int = Field(
        default=0,
        ge=0,
        description="Lines that may fail the checks and be left out (each named in the log); 0: any "
        "bad line fails the job with DataValidationFailed.",
    )


class LoRA(ApiModel):
    """LoRA adapter settings (peft `LoraConfig`)."""

    r: int = Field(default=8, ge=1, le=1024, description="Rank of the update matrices.")
    alpha: int = Field(default=16, ge=1, le=4096, description="Scaling (lora_alpha); the update is alpha/r.")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: list[Annotated[str, Field(pattern=TARGET_MODULE_PATTERN)]] = Field(
        default_factory=list,
        max_length=64,
        description="Module names to adapt (e.g. q_proj, v_proj); empty: peft's default for the "
        "architecture, or every linear layer when it has none.",
    )


class FineTuneLineage(ApiModel):
    """The base model a fine-tune started from, as its status and its ModelVersion's lineage name it."""

    model_version: str | None = Field(default=None, description="The base ModelVersion, when one was named.")
    sha256: str | None = Field(default=None, description="Digest of the base artifact the run loaded.")
    uri: str | None = Field(default=None, description="Where the base directory was (pvc://<claim>/<path>).")
    method: Literal["full", "lora", "qlora"] | None = Field(
        default=None, description="How it was fine-tuned."
    )


class FineTuneSpec(ApiModel):
    """A causal-LM fine-tune, run by `modelops-worker train` with transformers and peft."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "(self.method == 'lora' && self.mergeAdapter) || self.method == 'full' || "
                "has(self.baseModel.modelVersion)",
                "spec.fineTune: an adapter exported alone (mergeAdapter: false, or method qlora, whose 4-bit "
                "base is not merged) is registered as format lora on its base ModelVersion: set "
                "spec.fineTune.baseModel.modelVersion, or use method lora with mergeAdapter: true",
            ),
            (
                "self.method != 'full' || !has(self.lora)",
                "spec.fineTune.lora applies only to method lora or qlora; drop it or change the method",
            ),
        )
    )

    base_model: BaseModelSource = Field(description="The model to start from.")
    data: FineTuneData = Field(description="The JSONL training data.")
    method: Literal["full", "lora", "qlora"] = Field(
        default="lora",
        description="full: every weight is trained; lora: a LoRA adapter (peft) on a frozen base; qlora: "
        "LoRA on a 4-bit base (bitsandbytes, GPUs only).",
    )
    lora: LoRA | None = Field(default=None, description="LoRA settings (lora, qlora); defaults when unset.")
    max_sequence_length: int = Field(
        default=512,
        ge=8,
        le=131072,
        description="Longest example in tokens (after the chat template); see data.overLength. At most the "
        "base model's context length.",
    )
    merge_adapter: bool = Field(
        default=True,
        description="lora: export the base with the adapter merged in (format huggingface, a plain Hugging "
        "Face model any runtime loads); false exports the adapter alone (format lora, registered on its "
        "base ModelVersion). qlora always exports the adapter alone (a 4-bit base is not merged).",
    )
    logging_steps: int = Field(default=1, ge=1, le=100000, description="Log loss every N optimizer steps.")
