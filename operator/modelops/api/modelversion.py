"""ModelVersion: one registered, verified version of a model — the registry lives in the cluster.

What a version *is* (its model, source, version number and format) can never change once its artifact
has been verified: the API server refuses the edit with a message naming the field, so what is served
is exactly what was trained and checked. Aliases are asked for in the spec and granted in the status:
the operator never rewrites a user's spec, so GitOps tools see no drift.

Large language models are versions like any other, in three formats (docs/llm.md):

- `huggingface`: a model directory (config.json, the tokenizer files, `*.safetensors` weights), served
  by an LLM engine (vLLM on GPUs, llama.cpp or transformers on CPUs) over the OpenAI API. Its sha256 is
  the directory digest the worker defines once (`modelops.api.llmconfig`): sha256 over the sorted list
  of per-file sha256s, with the manifest stored next to it.
- `gguf`: one GGUF file (llama.cpp's format, quantised weights and tokenizer in one file).
- `lora`: a LoRA adapter directory (peft's adapter_config.json + adapter_model.safetensors) on top of a
  base version named by `spec.baseModelVersion`; it is Ready only while its base version is Ready, and
  served by the engine serving the base, with the adapter loaded beside it.

Lineage records the base model of a fine-tune (`status.lineage.baseModel`), whether the result is
merged weights or an adapter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from modelops.api import storage
from modelops.api.backup import BackupPolicy, BackupStatus, RestoreSource
from modelops.api.common import (
    CONDITIONS_FIELD,
    FREE_FORM_OBJECT,
    SHA256_PATTERN,
    ApiModel,
    Condition,
    DnsLabel,
    SecretReference,
    Timestamp,
    immutable,
    rules,
)
from modelops.api.signature import ModelSignature

# One grammar for every URI the API accepts (docs/storage.md): pvc://, s3://, gs://, az://, https://; a
# directory artifact (huggingface, lora) may end in '/'.
URI_PATTERN = storage.ARTIFACT_URI_PATTERN
_URI_RULES = storage.uri_rules("spec.source.uri", "pvc://models/digits/model.pt")
# The formats served by an LLM engine over the OpenAI API (the others by modelops-worker serve, OIP v2).
LLM_FORMATS = ("huggingface", "gguf", "lora")
# The formats whose artifact is a directory (digest: the directory digest of docs/llm.md).
DIRECTORY_FORMATS = ("huggingface", "lora")
# The formats a LoRA adapter may be registered on (peft adapters apply to Hugging Face weights).
ADAPTER_BASE_FORMATS = ("huggingface",)
_LLM_FORMATS_CEL = "['huggingface', 'gguf', 'lora']"
Format = Literal["torchscript", "state_dict", "onnx", "safetensors", "huggingface", "gguf", "lora"]

# A metric name as the training result reports it (accuracy, val_loss, top-5/accuracy): printable, no
# whitespace at all, so that a gate cannot silently name a metric nobody reports.
METRIC_NAME_PATTERN = r"^[^ \x00-\x1f\x7f]+$"


class TrainingJobReference(ApiModel):
    """A TrainingJob in the same namespace."""

    name: DnsLabel = Field(description="Name of the TrainingJob whose artifact this version registers.")


class Source(ApiModel):
    """Where the artifact comes from: a TrainingJob, or a URI."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.trainingJob) != has(self.uri)",
                "spec.source: set exactly one of spec.source.trainingJob or spec.source.uri",
            ),
            storage.credentials_rule("spec.source", "spec.source.uri"),
        )
    )

    training_job: TrainingJobReference | None = Field(
        default=None, description="The TrainingJob that produced the artifact."
    )
    uri: str | None = Field(
        default=None,
        max_length=4096,
        pattern=URI_PATTERN,
        json_schema_extra=_URI_RULES,
        description="pvc://<claim>/<path> for a file on a PersistentVolumeClaim in this namespace; "
        "s3://<bucket>/<key> (S3 or an S3-compatible store), gs://<bucket>/<key>, az://<container>/<path> "
        "or https://<host>/<path>, fetched by the verification pod and verified exactly like a file on a "
        "claim (docs/storage.md).",
    )
    credentials_secret: SecretReference | None = Field(
        default=None, description=storage.CREDENTIALS_SECRET_DESCRIPTION
    )


class BaseModelVersionReference(ApiModel):
    """The base ModelVersion (same namespace) a LoRA adapter applies to."""

    name: DnsLabel = Field(
        description="Name of the base ModelVersion (format huggingface). The adapter is Ready only while "
        "the base is Ready, and is served by the engine serving the base."
    )


class MetricGate(ApiModel):
    """A threshold a metric must meet before an alias is granted."""

    metric: str = Field(
        min_length=1,
        max_length=63,
        pattern=METRIC_NAME_PATTERN,
        description="Metric name in status.metrics, e.g. accuracy.",
    )
    op: Literal[">=", ">", "<=", "<"] = Field(default=">=", description="Comparison: >=, >, <= or <.")
    value: float = Field(description="The threshold.")


class Promotion(ApiModel):
    """Aliases this version asks for, and the gates it must pass to get them."""

    aliases: list[DnsLabel] = Field(
        default_factory=list,
        max_length=16,
        description="Aliases to hold (e.g. champion). One version holds an alias per model at a time; "
        "granting it moves it from the previous holder.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    gates: list[MetricGate] = Field(
        default_factory=list,
        max_length=32,
        description="All must pass before an alias is granted.",
        # Keyed by (metric, op): a second gate of the same metric and comparison is refused, as two
        # thresholds of which only the stricter could matter.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["metric", "op"]},
    )
    must_beat_current: bool = Field(
        default=False, description="Also require a better compareMetric than the alias's current holder."
    )
    compare_metric: str = Field(
        default="accuracy",
        min_length=1,
        max_length=63,
        pattern=METRIC_NAME_PATTERN,
        description="Metric compared with the current holder.",
    )
    higher_is_better: bool = Field(default=True, description="Direction of compareMetric (false for loss).")


class ModelVersionSpec(ApiModel):
    """A version of a registered model."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.format != 'lora' || has(self.baseModelVersion)",
                "spec.baseModelVersion is required with spec.format lora: name the ModelVersion (format "
                "huggingface) the adapter applies to, e.g. baseModelVersion: {name: qwen-base-1}",
            ),
            (
                "!has(self.baseModelVersion) || self.format == 'lora'",
                "spec.baseModelVersion applies only to spec.format lora (an adapter on a base version); a "
                "merged fine-tune records its base model in status.lineage.baseModel: drop "
                "spec.baseModelVersion or set spec.format lora",
            ),
            (
                f"!has(self.signature) || !(self.format in {_LLM_FORMATS_CEL})",
                "spec.signature describes tensor inputs and outputs; huggingface, gguf and lora versions "
                "are served over the OpenAI API (text in, text out): drop spec.signature",
            ),
            (
                f"self.framework != 'onnx' || !(self.format in {_LLM_FORMATS_CEL})",
                "spec.framework: onnx cannot load a huggingface, gguf or lora artifact; leave "
                "spec.framework out (pytorch)",
            ),
        )
    )

    model: DnsLabel = Field(
        description="The registered model this is a version of.",
        json_schema_extra=immutable("spec.model", "create a new ModelVersion for another model"),
    )
    version: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="Version number; when left out, the operator assigns the next number for the model "
        "(see status.version).",
    )
    source: Source = Field(description="Where the artifact comes from.")
    format: Format = Field(
        default="torchscript",
        description="Artifact format; picks the serving runtime (docs/inferenceservice.md). torchscript, "
        "state_dict (exported by modelops-worker) and onnx are served by modelops-worker serve; "
        "huggingface (a model directory: config, tokenizer, *.safetensors), gguf (one file) and lora (an "
        "adapter directory on spec.baseModelVersion) by an LLM engine over the OpenAI API (docs/llm.md); "
        "safetensors (bare weights) has no runtime and fails verification with NoRuntimeForFormat.",
    )
    base_model_version: BaseModelVersionReference | None = Field(
        default=None,
        description="With format lora: the ModelVersion (format huggingface, same namespace) the adapter "
        "applies to. Required with lora, refused with any other format.",
    )
    signature: ModelSignature | None = Field(
        default=None,
        description="The model's inputs and outputs (name, datatype, shape, -1 for a dynamic dimension). "
        "Verification checks it by a smoke inference of zeros of exactly this signature and fails with "
        "SignatureMismatch when the model disagrees. Optional for onnx (read from the graph) and for "
        "models exported by modelops-worker (read from their model card).",
    )
    framework: Literal["pytorch", "onnx"] = Field(default="pytorch", description="Framework that loads it.")
    description: str = Field(default="", max_length=4096, description="Free text for humans.")
    tags: dict[str, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict,
        max_length=64,
        description="Free-form key/value tags (at most 64; keys up to 253 characters, values up to 1024).",
        json_schema_extra=rules(
            ("self.all(k, size(k) <= 253)", "spec.tags: a key is at most 253 characters"),
        ),
    )
    sha256: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="Expected sha256 of the artifact; verification fails when it differs. For a directory "
        "(huggingface, lora) the directory digest: sha256 over the sorted list of per-file sha256s "
        "(docs/llm.md).",
    )
    promotion: Promotion = Field(default_factory=Promotion, description="Aliases asked for and their gates.")
    backup: BackupPolicy | None = Field(default=None, description="Scheduled backups of the artifact.")
    restore_from: RestoreSource | None = Field(
        default=None,
        description="Restore the artifact: a copy backup is verified against its manifest and copied back to "
        "the artifact's place; a VolumeSnapshot becomes a new claim <name>-restore. Either way the "
        "artifact's sha256 must match before the restore succeeds (see status.backup.restore).",
    )


class Artifact(ApiModel):
    """The verified artifact."""

    uri: str | None = Field(default=None, description="Where the artifact is.")
    sha256: str | None = Field(default=None, description="Digest computed by the verifier.")
    size_bytes: int | None = Field(default=None, description="Size of the artifact.")
    format: str | None = Field(default=None, description="Format that was loaded.")
    verified_at: Timestamp | None = Field(
        default=None,
        description="When verification last passed. From then on source, version and format are immutable.",
    )


class BaseModelLineage(ApiModel):
    """The model a fine-tune started from (or a LoRA adapter applies to)."""

    model_version: str | None = Field(
        default=None, description="The base ModelVersion's name, when the base was a registered version."
    )
    model: str | None = Field(default=None, description="The base's registered model name.")
    version: int | None = Field(default=None, description="The base's version number.")
    sha256: str | None = Field(default=None, description="Digest of the base's artifact.")
    uri: str | None = Field(
        default=None, description="Where the base came from when it was not a registered version."
    )
    method: Literal["full", "lora", "qlora"] | None = Field(
        default=None,
        description="How the version was derived from it: full (all weights trained), lora or qlora (an "
        "adapter; merged into full weights unless the version's format is lora).",
    )


class Lineage(ApiModel):
    """Where the version came from."""

    training_job: str | None = Field(default=None, description="The TrainingJob that produced it.")
    dataset_digest: str | None = Field(default=None, description="sha256 of the training data.")
    hyperparameters: dict[str, Any] | None = Field(
        default=None, description="Hyperparameters used.", json_schema_extra=FREE_FORM_OBJECT
    )
    image: str | None = Field(default=None, description="Worker image that trained it.")
    code_version: str | None = Field(default=None, description="Version of the training code.")
    created: Timestamp | None = Field(default=None, description="When the artifact was produced.")
    base_model: BaseModelLineage | None = Field(
        default=None,
        description="The base model of a fine-tune, or the base version a LoRA adapter applies to.",
    )


class LanguageModelInfo(ApiModel):
    """What LLM verification read from the artifact (huggingface, gguf, lora)."""

    engine: str | None = Field(
        default=None, description="The engine that loaded it and generated tokens, e.g. llamacpp."
    )
    architecture: str | None = Field(default=None, description="Model architecture, e.g. gemma3.")
    context_length: int | None = Field(default=None, description="Context length the model was trained with.")
    chat_template: bool | None = Field(
        default=None, description="Whether the tokenizer carries a chat template (/v1/chat/completions)."
    )
    quantization: str | None = Field(default=None, description="Weight type of a GGUF file, e.g. Q4_K_M.")
    files: int | None = Field(default=None, description="Files of a directory artifact (the manifest's).")
    base_ready: bool | None = Field(
        default=None, description="For a lora adapter: whether its base version is Ready now."
    )


class GateResult(ApiModel):
    """The outcome of one gate."""

    metric: str = Field(description="Metric checked.")
    op: str = Field(description="Comparison.")
    threshold: float | None = Field(default=None, description="The gate's value.")
    value: float | None = Field(default=None, description="The version's metric (absent when missing).")
    passed: bool = Field(description="Whether the gate passed.")


class PromotionEvent(ApiModel):
    """One entry of the alias history."""

    alias: str = Field(description="The alias.")
    action: Literal["Granted", "Revoked", "Denied"] = Field(description="What happened.")
    time: Timestamp = Field(description="When.")
    previous_holder: str | None = Field(default=None, description="ModelVersion that held it before.")
    gates: list[GateResult] = Field(default_factory=list, description="Gate results at that time.")
    message: str = Field(default="", description="Details for humans.")


class Verification(ApiModel):
    """The latest verification run: which request it answers and which pod runs it."""

    request: str = Field(
        default="",
        description="The value of the modelops.dev/reverify annotation this run answers (empty: the first "
        "verification). Set the annotation to a new value to verify again.",
    )
    pod: str | None = Field(default=None, description="The verification pod while it runs.")
    started_at: Timestamp | None = Field(default=None, description="When the run started.")
    finished_at: Timestamp | None = Field(default=None, description="When the run finished.")
    reason: str | None = Field(default=None, description="Outcome of the last finished run, e.g. Verified.")


class ServedByReference(ApiModel):
    """An InferenceService serving this version."""

    namespace: str = Field(description="Namespace of the InferenceService.")
    name: str = Field(description="Name of the InferenceService.")


class ModelVersionStatus(ApiModel):
    """The observed state of the version."""

    phase: Literal["Pending", "Verifying", "Ready", "Failed"] | None = Field(
        default=None, description="A one-word summary for humans; automation should read conditions."
    )
    observed_generation: int | None = Field(default=None, description="The generation this status is for.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling, Stalled (kstatus) and Verified.",
        json_schema_extra=CONDITIONS_FIELD,
    )
    version: int | None = Field(default=None, description="The version number (given or assigned).")
    artifact: Artifact | None = Field(default=None, description="The verified artifact.")
    signature: ModelSignature | None = Field(
        default=None,
        description="The signature verification found (from the ONNX graph, the model card, or "
        "spec.signature checked by a smoke inference); what InferenceServices serve as model metadata.",
    )
    metrics: dict[str, float] = Field(default_factory=dict, description="Evaluation metrics.")
    lineage: Lineage | None = Field(default=None, description="Where the version came from.")
    llm: LanguageModelInfo | None = Field(
        default=None, description="For huggingface, gguf and lora: what verification read from the artifact."
    )
    aliases: list[str] = Field(default_factory=list, description="Aliases this version holds now.")
    promotion_history: list[PromotionEvent] = Field(
        default_factory=list, description="Aliases granted, moved away or denied, oldest first."
    )
    verification: Verification | None = Field(default=None, description="The latest verification run.")
    promotion_generation: int | None = Field(
        default=None,
        description="The generation whose spec.promotion was last evaluated; aliases are granted or denied "
        "once per generation, so an alias moved away is not taken back until the spec changes.",
    )
    served_by: list[ServedByReference] = Field(
        default_factory=list,
        description="InferenceServices serving this version; it cannot be deleted meanwhile.",
    )
    backup: BackupStatus | None = Field(default=None, description="State of the scheduled backups.")


# Verification pins what the version is: after status.artifact.verifiedAt is set, these fields hold.
_VERIFIED = "has(oldSelf.status) && has(oldSelf.status.artifact) && has(oldSelf.status.artifact.verifiedAt)"

ROOT_RULES: list[dict[str, str]] = [
    {
        "rule": f"!({_VERIFIED}) || self.spec.source == oldSelf.spec.source",
        "message": "spec.source is immutable once the artifact is verified: create a new ModelVersion",
        "fieldPath": ".spec.source",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": f"!({_VERIFIED}) || (has(self.spec.version) == has(oldSelf.spec.version) && "
        "(!has(self.spec.version) || self.spec.version == oldSelf.spec.version))",
        "message": "spec.version is immutable once the artifact is verified: create a new ModelVersion",
        "fieldPath": ".spec.version",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": f"!({_VERIFIED}) || self.spec.format == oldSelf.spec.format",
        "message": "spec.format is immutable once the artifact is verified: create a new ModelVersion",
        "fieldPath": ".spec.format",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": f"!({_VERIFIED}) || (has(self.spec.baseModelVersion) == has(oldSelf.spec.baseModelVersion) && "
        "(!has(self.spec.baseModelVersion) || self.spec.baseModelVersion == oldSelf.spec.baseModelVersion))",
        "message": "spec.baseModelVersion is immutable once the adapter is verified: create a new ModelVersion",
        "fieldPath": ".spec.baseModelVersion",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": "!has(self.spec.baseModelVersion) || self.spec.baseModelVersion.name != self.metadata.name",
        "message": "spec.baseModelVersion must name another ModelVersion: an adapter cannot be its own base",
        "fieldPath": ".spec.baseModelVersion.name",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": f"!({_VERIFIED}) || (has(self.spec.signature) == has(oldSelf.spec.signature) && "
        "(!has(self.spec.signature) || self.spec.signature == oldSelf.spec.signature))",
        "message": "spec.signature is immutable once the artifact is verified (verification checked this "
        "one): create a new ModelVersion",
        "fieldPath": ".spec.signature",
        "reason": "FieldValueForbidden",
    },
]


class ModelVersion(ApiModel):
    """A ModelVersion object as stored by the API server."""

    model_config = ConfigDict(extra="ignore")

    spec: ModelVersionSpec
    status: ModelVersionStatus | None = None
