"""TrainingJob: train a model with PyTorch on one or many (GPU) nodes, resumably.

The spec says *what* to train (a built-in recipe, or your own image with the same wiring), *where*
(resources, GPUs, scheduling), *how* (distributed, precision, checkpoints, run policy) and *what comes
out* (a ModelVersion). Fields that define the training itself are immutable: a change would make the
checkpoints on disk meaningless, so the API server refuses it and names the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from modelops.api import storage
from modelops.api.alerting import AlertingStatus, TrainingAlerts
from modelops.api.backup import BackupPolicy, BackupStatus, RestoreSource
from modelops.api.common import (
    CONDITIONS_FIELD,
    DNS_SUBDOMAIN_PATTERN,
    ENV_FIELD_PATH_PATTERN,
    FREE_FORM_OBJECT,
    IMAGE_PATTERN,
    LABEL_VALUE_PATTERN,
    PRINTABLE_PATTERN,
    RELATIVE_PATH_PATTERN,
    ApiModel,
    Condition,
    DnsLabel,
    PositiveQuantity,
    Quantity,
    SecretReference,
    Timestamp,
    Toleration,
    immutable,
    inside_claim,
    rules,
)
from modelops.api.finetune import FineTuneLineage, FineTuneSpec

BUILTIN_DATASETS = ("digits", "wine", "breast_cancer", "iris")
# A dataset is one object, or a prefix ending in '/' (its shards).
DATASET_URI_PATTERN = f"({storage.OBJECT_URI_PATTERN})|(^({storage.PREFIX_URI_PATTERN[2:-2]})/$)"


class ModelSpec(ApiModel):
    """A built-in model architecture the worker image knows how to build and train."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.architecture != 'transformer' || self.hiddenSize % self.heads == 0",
                "spec.model.hiddenSize must be a multiple of spec.model.heads for the transformer",
            )
        )
    )

    architecture: Literal["mlp", "cnn", "transformer"] = Field(
        description="mlp: a multi-layer perceptron for tabular data; cnn: a small convolutional network for "
        "image-like data (e.g. digits, 8x8); transformer: a small transformer encoder classifier that treats "
        "features as tokens and shows the large-model path (AMP, DDP, gradient accumulation)."
    )
    hidden_size: int = Field(default=128, ge=4, le=8192, description="Width of the hidden layers.")
    layers: int = Field(default=2, ge=1, le=48, description="Number of hidden (or encoder) layers.")
    heads: int = Field(default=4, ge=1, le=64, description="Attention heads (transformer only).")
    dropout: float = Field(default=0.1, ge=0, le=0.9, description="Dropout probability between layers.")


class DatasetFile(ApiModel):
    """A tabular dataset file on a PersistentVolumeClaim (claimName and path), or at a storage URI."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.uri) != (has(self.claimName) || has(self.path))",
                "spec.dataset.file: set either uri, or claimName and path (not both)",
            ),
            {
                "rule": "has(self.uri) || has(self.path)",
                "message": "spec.dataset.file.path is required with claimName: the file inside the claim, e.g. "
                "data/train.csv (or give spec.dataset.file.uri instead)",
                "fieldPath": ".path",
                "reason": "FieldValueRequired",
            },
            {
                "rule": "has(self.uri) || has(self.claimName)",
                "message": "spec.dataset.file.claimName is required with path: the claim holding the file (or "
                "give spec.dataset.file.uri instead)",
                "fieldPath": ".claimName",
                "reason": "FieldValueRequired",
            },
            storage.credentials_rule("spec.dataset.file", "spec.dataset.file.uri"),
        )
    )

    claim_name: DnsLabel | None = Field(
        default=None, description="The PersistentVolumeClaim holding the file, in this namespace."
    )
    uri: str | None = Field(
        default=None,
        max_length=4096,
        pattern=DATASET_URI_PATTERN,
        json_schema_extra=storage.uri_rules("spec.dataset.file.uri", "s3://datasets/digits/train.csv"),
        description="The file at a storage URI (s3://bucket/key, gs://, az://, https://, or pvc://claim/path), "
        "or a prefix ending in '/' whose shards of the format are read in key order as one dataset. "
        "Downloaded into the pod (the sha256 checked while streaming) and cached, so a pod started again "
        "does not download it again (docs/storage.md).",
    )
    credentials_secret: SecretReference | None = Field(
        default=None, description=storage.CREDENTIALS_SECRET_DESCRIPTION
    )
    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        pattern=RELATIVE_PATH_PATTERN,
        description="Path of the file inside the claim, relative (e.g. data/train.csv).",
        json_schema_extra=inside_claim("spec.dataset.file.path"),
    )
    format: Literal["csv", "parquet", "npz"] = Field(
        default="csv", description="File format: csv, parquet, or npz (arrays X and y)."
    )
    label_column: str = Field(
        default="label",
        min_length=1,
        max_length=1024,
        pattern=PRINTABLE_PATTERN,
        description="Column holding the class label (csv/parquet); every other column is a feature.",
    )


class DatasetSpec(ApiModel):
    """The data to train on: a real dataset shipped with scikit-learn, or your own file."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.builtin) != has(self.file)",
                "spec.dataset: set exactly one of spec.dataset.builtin or spec.dataset.file",
            )
        )
    )

    builtin: Literal["digits", "wine", "breast_cancer", "iris"] | None = Field(
        default=None,
        description="A dataset bundled with scikit-learn, available offline: digits (1797 8x8 images, 10 "
        "classes), wine (178 rows, 3 classes), breast_cancer (569 rows, 2 classes), iris (150 rows, 3 classes).",
    )
    file: DatasetFile | None = Field(
        default=None,
        description="A CSV, Parquet or NPZ file (or prefix of shards) on a PVC or in object storage.",
    )


class EarlyStopping(ApiModel):
    """Stop when the validation metric has not improved for `patience` epochs."""

    metric: Literal["val_loss", "val_accuracy"] = Field(
        default="val_loss", description="The validation metric to watch."
    )
    patience: int = Field(default=3, ge=1, le=1000, description="Epochs without improvement before stopping.")
    min_delta: float = Field(default=0.0, ge=0, description="The smallest change that counts as improvement.")


class Hyperparameters(ApiModel):
    """Optimisation settings of the built-in recipe."""

    epochs: int = Field(default=10, ge=1, le=100000, description="Passes over the training data.")
    batch_size: int = Field(default=64, ge=1, le=65536, description="Samples per step and process.")
    learning_rate: float = Field(default=1e-3, gt=0, le=10, description="The optimizer's learning rate.")
    optimizer: Literal["adam", "adamw", "sgd"] = Field(default="adamw", description="adam, adamw or sgd.")
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="L2 penalty / decoupled weight decay.")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="Momentum (sgd only).")
    seed: int = Field(default=42, ge=0, le=2**31 - 1, description="Seed for data split, init and shuffling.")
    validation_split: float = Field(
        default=0.2, gt=0, le=0.5, description="Fraction of rows held out for validation metrics."
    )
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, le=1024, description="Micro-batches accumulated before each optimizer step."
    )
    early_stopping: EarlyStopping | None = Field(default=None, description="Optional early stopping.")


class Resources(ApiModel):
    """Compute for each training node (one pod per node)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            ("!has(self.gpuType) || self.gpus > 0", "spec.resources.gpuType needs spec.resources.gpus > 0")
        )
    )

    cpu: Quantity = Field(default="1", description="CPU request and limit per node, e.g. 2 or 500m.")
    memory: Quantity = Field(default="2Gi", description="Memory request and limit per node, e.g. 8Gi.")
    gpus: int = Field(default=0, ge=0, le=16, description="GPUs per node, requested as nvidia.com/gpu.")
    gpu_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description="GPU product to run on (the node label nvidia.com/gpu.product set by GPU feature "
        "discovery, e.g. NVIDIA-A100-SXM4-80GB).",
    )
    shm_size: Quantity = Field(
        default="1Gi", description="Size of the memory-backed /dev/shm that DataLoader workers share."
    )


class Scheduling(ApiModel):
    """Where the training pods may run."""

    node_selector: dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]] = Field(
        default_factory=dict, max_length=64, description="Node labels the pods require."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=64, description="Taints the pods tolerate."
    )
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="A core/v1 Affinity for the pods, passed through unchanged.",
        json_schema_extra=FREE_FORM_OBJECT,
    )
    priority_class_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="PriorityClass of the pods.",
    )


class Distributed(ApiModel):
    """Data-parallel training across nodes with torchrun (DDP)."""

    nodes: int = Field(
        default=1, ge=1, le=256, description="Number of nodes (pods); rank 0 is the rendezvous."
    )
    procs_per_node: int | str = Field(
        default="auto",
        description="Processes per node: a number, or auto (one per GPU, or one on CPU).",
        json_schema_extra={
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": "^auto$",
            "minimum": 1,
            "maximum": 64,
        },
    )
    backend: Literal["auto", "nccl", "gloo"] = Field(
        default="auto", description="Collective backend: auto picks nccl with GPUs and gloo without."
    )


class CheckpointStorage(ApiModel):
    """Where checkpoints live: a claim the operator creates, or an existing one."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.existingClaim) || !has(self.storageClassName)",
                "spec.checkpoint.storage: storageClassName applies only to a claim the operator creates; "
                "drop it when existingClaim is set",
            )
        )
    )

    size: PositiveQuantity = Field(default="1Gi", description="Size of the claim the operator creates.")
    storage_class_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="StorageClass of the created claim.",
    )
    existing_claim: DnsLabel | None = Field(default=None, description="Use this existing claim instead.")
    retain_on_delete: bool = Field(
        default=True, description="Keep the created claim when the TrainingJob is deleted."
    )


class Checkpoint(ApiModel):
    """Checkpointing: written atomically with a sha256 manifest; a bad one is never loaded."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.restoreFrom) || !has(self.restoreFrom.volumeSnapshot) || "
                "!has(self.storage.existingClaim)",
                "spec.checkpoint.restoreFrom.volumeSnapshot needs a claim the operator creates: drop "
                "spec.checkpoint.storage.existingClaim",
            )
        )
    )

    interval_steps: int | None = Field(default=None, ge=1, description="Checkpoint every N optimizer steps.")
    interval_seconds: int = Field(
        default=60,
        ge=5,
        le=86400,
        description="Checkpoint at least this often (seconds); always at the end and on SIGTERM.",
    )
    keep: int = Field(default=3, ge=1, le=100, description="How many recent checkpoints to keep.")
    storage: CheckpointStorage = Field(
        default_factory=CheckpointStorage,
        description="The claim checkpoints are written to.",
        json_schema_extra=immutable("spec.checkpoint.storage", "checkpoints already live on that claim"),
    )
    restore_from: RestoreSource | None = Field(
        default=None,
        description="Start from a backup: a copy backup is verified against its sha256 manifest and copied "
        "into an empty checkpoint claim before training; a VolumeSnapshot becomes the new claim's "
        "dataSource. Each checkpoint's own manifest is verified before it is loaded.",
        json_schema_extra=immutable("spec.checkpoint.restoreFrom", "the claim was already restored"),
    )


class RunPolicy(ApiModel):
    """Lifecycle of the job's pods (the fields of a batch/v1 Job and Kubeflow's RunPolicy)."""

    backoff_limit: int = Field(
        default=3, ge=0, le=1000, description="Retryable failures (all pods restarted) before Failed."
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Fail the job when it has run this long."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the pods this long after the job finished."
    )
    suspend: bool = Field(
        default=False, description="A suspended job has no pods; resuming continues from the checkpoint."
    )
    clean_pod_policy: Literal["None", "Running", "All"] = Field(
        default="None",
        description="Which pods to delete when the job finishes: None keeps them (logs stay readable), "
        "Running deletes those still running, All deletes every pod.",
    )


class DataValidation(ApiModel):
    """Checks of the data before the first step; failures end the job with reason DataValidationFailed."""

    enabled: bool = Field(default=True, description="Run the checks. NaN/inf and label checks always run.")
    min_rows: int = Field(default=10, ge=1, description="Fewest rows accepted.")
    max_duplicate_ratio: float = Field(
        default=0.5, ge=0, le=1, description="Largest fraction of duplicated rows accepted."
    )
    max_class_imbalance: float = Field(
        default=100.0, ge=1, description="Largest ratio of the biggest class to the smallest accepted."
    )


class Output(ApiModel):
    """What a successful job produces."""

    model_name: DnsLabel | None = Field(
        default=None,
        description="Registered model name of the ModelVersion; defaults to the job's name.",
        json_schema_extra=rules(
            (
                "size(self) <= 57",
                "spec.output.modelName: at most 57 characters, because the ModelVersion it creates is "
                "named <modelName>-<version> and must fit in 63",
            )
        ),
    )
    create_model_version: bool = Field(default=True, description="Create a ModelVersion on success.")
    format: Literal["torchscript", "state_dict", "huggingface"] | None = Field(
        default=None,
        description="Format of the exported artifact: torchscript (default) or state_dict for a built-in "
        "recipe; huggingface (a Hugging Face model directory with *.safetensors, the default) for a fine-tune.",
    )


# Kubernetes' own name rules: a Secret or ConfigMap name is a DNS subdomain, a key a config key.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONFIG_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# Volumes and mount paths of the operator's own wiring; a user's volume may not take them over.
RESERVED_VOLUMES = ("dshm", "checkpoints", "data", "restore-source")
RESERVED_MOUNT_PATHS = ("/dev/shm", "/var/run/modelops/checkpoints", "/data")
MAX_USER_VOLUMES = 16


class KeySelector(ApiModel):
    """A key of a Secret or ConfigMap in the job's namespace (core/v1 SecretKeySelector)."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the object."
    )
    key: str = Field(min_length=1, max_length=253, pattern=CONFIG_KEY_PATTERN, description="The key to read.")
    optional: bool | None = Field(default=None, description="Start even when the object or key is missing.")


class ObjectFieldSelector(ApiModel):
    """A field of the pod (core/v1 ObjectFieldSelector), e.g. metadata.name or status.podIP."""

    field_path: str = Field(
        min_length=1,
        max_length=256,
        pattern=ENV_FIELD_PATH_PATTERN,
        description="Path of the field: metadata.name, metadata.namespace, metadata.uid, "
        "metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, "
        "status.hostIP(s) or status.podIP(s).",
    )
    api_version: Literal["v1"] | None = Field(default=None, description="Schema version of fieldPath (v1).")


class ResourceFieldSelector(ApiModel):
    """A resource limit or request of the container (core/v1 ResourceFieldSelector)."""

    resource: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-[-a-zA-Z0-9]+)$",
        description="limits or requests of cpu, memory, ephemeral-storage or hugepages-<size>, e.g. limits.memory.",
    )
    container_name: str | None = Field(default=None, description="Defaults to the training container.")
    divisor: Quantity | None = Field(default=None, description="Output unit, e.g. 1Mi (default 1).")


class EnvVarSource(ApiModel):
    """Where a variable's value comes from (core/v1 EnvVarSource); exactly one source."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) + "
                "(has(self.fieldRef) ? 1 : 0) + (has(self.resourceFieldRef) ? 1 : 0) == 1",
                "spec.env[].valueFrom: set exactly one of secretKeyRef, configMapKeyRef, fieldRef, "
                "resourceFieldRef",
            )
        )
    )

    secret_key_ref: KeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeySelector | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: ObjectFieldSelector | None = Field(default=None, description="A field of the pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(
        default=None, description="A resource of the container."
    )


class EnvVar(ApiModel):
    """An environment variable of the training container: a value, or a value from somewhere else."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.value) || !has(self.valueFrom)",
                "spec.env[]: set value or valueFrom, not both",
            )
        )
    )

    name: str = Field(min_length=1, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", description="Variable name.")
    value: str | None = Field(default=None, description="Variable value.")
    value_from: EnvVarSource | None = Field(
        default=None,
        description="Read the value from a Secret or ConfigMap key, or a field of the pod (as in a Pod).",
    )

    def to_pod(self) -> dict[str, Any]:
        """The core/v1 EnvVar of the pod."""
        if self.value_from is not None:
            return {"name": self.name, "valueFrom": self.value_from.to_wire()}
        return {"name": self.name, "value": self.value or ""}


class LocalObjectReference(ApiModel):
    """An object in the job's namespace, by name (core/v1 LocalObjectReference)."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Its name.")


_VOLUME_SOURCES = (
    "configMap",
    "secret",
    "persistentVolumeClaim",
    "emptyDir",
    "projected",
    "csi",
    "ephemeral",
)


# A path segment `..` (or `.`) anywhere in a path: the kubelet refuses `..`, and `.` or an empty segment
# would alias another path (`/./data` is `/data`). CEL's RE2 has no lookahead, hence a rule, not a pattern.
_DOT_SEGMENT = r"(^|/)\.\.?(/|$)|//"
_FILE_MODE = "between 0 and 511 (0777 in octal; e.g. 420 for 0644, 256 for 0400)"


def _no_dot_segments(field: str) -> dict[str, Any]:
    return rules(
        (
            f"!self.matches('{_DOT_SEGMENT.replace(chr(92), chr(92) * 2)}')",
            f"{field}: no '.' or '..' segments and no '//' in the path",
        )
    )


class KeyToPath(ApiModel):
    """One key of a ConfigMap or Secret as a file (core/v1 KeyToPath)."""

    key: str = Field(min_length=1, max_length=253, pattern=CONFIG_KEY_PATTERN, description="The key.")
    path: str = Field(
        min_length=1,
        max_length=1024,
        pattern=RELATIVE_PATH_PATTERN,
        description="Relative path of the file in the volume.",
        json_schema_extra=_no_dot_segments("spec.volumes[].items[].path"),
    )
    mode: int | None = Field(default=None, ge=0, le=0o777, description="File mode, " + _FILE_MODE + ".")


class ConfigMapVolume(ApiModel):
    """A ConfigMap's keys as files (core/v1 ConfigMapVolumeSource)."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="The ConfigMap."
    )
    items: list[KeyToPath] | None = Field(default=None, max_length=256, description="Only these keys.")
    default_mode: int | None = Field(
        default=None, ge=0, le=0o777, description="Mode of the files, " + _FILE_MODE + "."
    )
    optional: bool | None = Field(default=None, description="Start even when the ConfigMap is missing.")


class SecretVolume(ApiModel):
    """A Secret's keys as files (core/v1 SecretVolumeSource)."""

    secret_name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="The Secret."
    )
    items: list[KeyToPath] | None = Field(default=None, max_length=256, description="Only these keys.")
    default_mode: int | None = Field(
        default=None, ge=0, le=0o777, description="Mode of the files, " + _FILE_MODE + "."
    )
    optional: bool | None = Field(default=None, description="Start even when the Secret is missing.")


class ClaimVolume(ApiModel):
    """A PersistentVolumeClaim of the namespace (core/v1 PersistentVolumeClaimVolumeSource)."""

    claim_name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="The claim."
    )
    read_only: bool | None = Field(default=None, description="Mount it read-only.")


class EmptyDirVolume(ApiModel):
    """Scratch space that lives with the pod (core/v1 EmptyDirVolumeSource)."""

    medium: Literal["", "Memory"] | None = Field(
        default=None, description="'' (the node's disk) or Memory (a tmpfs, counted as the pod's memory)."
    )
    size_limit: Quantity | None = Field(default=None, description="Largest size, e.g. 1Gi.")


class Volume(ApiModel):
    """A volume of the training pods (core/v1 Volume; the sources the restricted Pod Security level allows).

    The common sources (configMap, secret, persistentVolumeClaim, emptyDir) are checked field by field;
    the rarer ones (projected, csi, ephemeral) are passed to the pod unchanged, and the API server checks
    them when the pod is created (a refusal shows as ChildRejected with its message).
    """

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                " + ".join(f"(has(self.{s}) ? 1 : 0)" for s in _VOLUME_SOURCES) + " == 1",
                "spec.volumes[]: set exactly one source: " + ", ".join(_VOLUME_SOURCES),
            )
        )
    )

    name: DnsLabel = Field(description="Name of the volume, referenced by spec.volumeMounts[].name.")
    config_map: ConfigMapVolume | None = Field(default=None, description="A ConfigMap's keys as files.")
    secret: SecretVolume | None = Field(default=None, description="A Secret's keys as files.")
    persistent_volume_claim: ClaimVolume | None = Field(default=None, description="A claim of the namespace.")
    empty_dir: EmptyDirVolume | None = Field(default=None, description="Scratch space.")
    projected: dict[str, Any] | None = Field(
        default=None, description="Several sources in one directory (core/v1 ProjectedVolumeSource).",
        json_schema_extra=FREE_FORM_OBJECT,
    )  # fmt: skip
    csi: dict[str, Any] | None = Field(
        default=None, description="A CSI driver's volume (core/v1 CSIVolumeSource).",
        json_schema_extra=FREE_FORM_OBJECT,
    )  # fmt: skip
    ephemeral: dict[str, Any] | None = Field(
        default=None, description="A claim that lives with the pod (core/v1 EphemeralVolumeSource).",
        json_schema_extra=FREE_FORM_OBJECT,
    )  # fmt: skip


class VolumeMount(ApiModel):
    """Where a volume of spec.volumes appears in the training container (core/v1 VolumeMount)."""

    name: DnsLabel = Field(description="A volume of spec.volumes.")
    mount_path: str = Field(
        min_length=2,
        max_length=1024,
        pattern=r"^/.*[^/]$",
        description="Absolute path in the container.",
        json_schema_extra=_no_dot_segments("spec.volumeMounts[].mountPath"),
    )
    read_only: bool | None = Field(default=None, description="Mount read-only.")
    sub_path: str | None = Field(
        default=None,
        max_length=1024,
        pattern=RELATIVE_PATH_PATTERN,
        description="A path inside the volume (relative).",
        json_schema_extra=_no_dot_segments("spec.volumeMounts[].subPath"),
    )


class TrainingJobSpec(ApiModel):
    """The desired training run."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "(has(self.model) ? 1 : 0) + (has(self.fineTune) ? 1 : 0) + (has(self.image) ? 1 : 0) == 1",
                "spec: set exactly one of spec.model (a built-in recipe), spec.fineTune (a causal-LM "
                "fine-tune) or spec.image (your own training code)",
            ),
            ("!has(self.model) || has(self.dataset)", "spec.dataset is required with spec.model"),
            (
                "!has(self.fineTune) || !has(self.dataset)",
                "spec.dataset applies to spec.model; a fine-tune reads spec.fineTune.data",
            ),
            (
                "!has(self.fineTune) || self.fineTune.method != 'qlora' || "
                "(has(self.resources) && self.resources.gpus > 0)",
                "spec.fineTune.method: qlora (a 4-bit base with bitsandbytes) needs GPUs "
                "(spec.resources.gpus > 0); use lora or full on CPU",
            ),
            (
                "!has(self.fineTune) || !has(self.output) || !has(self.output.format) || "
                "self.output.format == 'huggingface'",
                "spec.output.format: a fine-tune exports huggingface (a Hugging Face directory); drop "
                "spec.output.format or set it to huggingface",
            ),
            (
                "has(self.fineTune) || !has(self.output) || !has(self.output.format) || "
                "self.output.format != 'huggingface'",
                "spec.output.format: huggingface is the format of spec.fineTune; a built-in recipe exports "
                "torchscript or state_dict",
            ),
            (
                "has(self.image) || (!has(self.command) && !has(self.args))",
                "spec.command and spec.args apply only to a custom spec.image",
            ),
            (
                "!has(self.volumes) || self.volumes.all(v, !(v.name in "
                + str(list(RESERVED_VOLUMES)).replace("'", '"')
                + "))",
                "spec.volumes[].name: "
                + ", ".join(RESERVED_VOLUMES)
                + " are the operator's own volumes; choose another name",
            ),
            (
                "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
                "self.volumes.exists(v, v.name == m.name))",
                "spec.volumeMounts[].name must name a volume of spec.volumes",
            ),
            (
                "!has(self.volumeMounts) || self.volumeMounts.all(m, !(m.mountPath in "
                + str(list(RESERVED_MOUNT_PATHS)).replace("'", '"')
                + "))",
                "spec.volumeMounts[].mountPath: "
                + ", ".join(RESERVED_MOUNT_PATHS)
                + " are the operator's own mounts; choose another path",
            ),
            (
                "self.precision != 'fp16' || (has(self.resources) && self.resources.gpus > 0)",
                "spec.precision: fp16 needs GPUs (spec.resources.gpus > 0); use bf16 or fp32 on CPU",
            ),
            (
                "!has(self.distributed) || self.distributed.backend != 'nccl' || "
                "(has(self.resources) && self.resources.gpus > 0)",
                "spec.distributed.backend: nccl needs GPUs (spec.resources.gpus > 0); use gloo or auto on CPU",
            ),
        )
    )

    model: ModelSpec | None = Field(
        default=None,
        description="A built-in recipe the worker image trains. Exactly one of model or image.",
        json_schema_extra=immutable("spec.model", "create a new TrainingJob to train another model"),
    )
    dataset: DatasetSpec | None = Field(
        default=None,
        description="The data the built-in recipe trains on.",
        json_schema_extra=immutable("spec.dataset", "create a new TrainingJob to train on other data"),
    )
    fine_tune: FineTuneSpec | None = Field(
        default=None,
        description="Fine-tune a causal language model (transformers + peft): full, LoRA or QLoRA, from a "
        "registered ModelVersion or a Hugging Face directory, on JSONL text or chat data (docs/llm.md). "
        "Exactly one of model, fineTune or image.",
        json_schema_extra=immutable("spec.fineTune", "create a new TrainingJob to fine-tune differently"),
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters,
        description="Optimisation settings of the built-in recipe.",
        json_schema_extra=immutable("spec.hyperparameters", "create a new TrainingJob to change them"),
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        pattern=IMAGE_PATTERN,
        description="A custom training image instead of a recipe. It gets the same wiring: torchrun "
        "variables, MODELOPS_CHECKPOINT_DIR, MODELOPS_OUTPUT_DIR and the result file.",
        json_schema_extra=immutable("spec.image", "create a new TrainingJob to run other code"),
    )
    command: list[str] | None = Field(
        default=None,
        description="Entrypoint of the custom image.",
        json_schema_extra=immutable("spec.command", "create a new TrainingJob to run other code"),
    )
    args: list[str] | None = Field(
        default=None,
        description="Arguments of the custom image.",
        json_schema_extra=immutable("spec.args", "create a new TrainingJob to run other code"),
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=128,
        description="Extra environment variables (value, or valueFrom a Secret/ConfigMap key or pod field).",
        # Keyed by name: a second entry of the same name is refused, not silently the winner.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    volumes: list[Volume] = Field(
        default_factory=list,
        max_length=MAX_USER_VOLUMES,
        description="Extra volumes of the pods (code from a ConfigMap, credentials from a Secret, a data "
        "claim...). The names " + ", ".join(RESERVED_VOLUMES) + " are the operator's.",
        # Keyed by name: two volumes of one name would make the pod invalid.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list,
        max_length=MAX_USER_VOLUMES,
        description="Where the extra volumes appear in the training container.",
        # Keyed by path: two volumes cannot appear at one place (the kubelet refuses the pod).
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["mountPath"]},
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        max_length=8,
        description="Secrets (type kubernetes.io/dockerconfigjson) to pull a private spec.image with.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    service_account_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="ServiceAccount of the pods (e.g. for workload identity to object storage). Unset: the "
        "namespace's default, with no API token mounted.",
    )
    automount_service_account_token: bool | None = Field(
        default=None,
        description="Mount the ServiceAccount's API token into the pods. Default: true when "
        "serviceAccountName is set, false otherwise (training code rarely needs the Kubernetes API).",
    )
    queue_name: DnsLabel | None = Field(
        default=None,
        description="Kueue LocalQueue to submit the job to: every pod gets Kueue's queue-name and pod-group "
        "labels, so Kueue admits all ranks together (a gang) or none. Needs Kueue's pod integration "
        "(see docs/trainingjob.md).",
        json_schema_extra=immutable("spec.queueName", "create a new TrainingJob to use another queue"),
    )
    resources: Resources = Field(
        default_factory=Resources,
        description="Compute per node.",
        json_schema_extra=immutable("spec.resources", "create a new TrainingJob with other resources"),
    )
    scheduling: Scheduling = Field(default_factory=Scheduling, description="Where the pods may run.")
    distributed: Distributed = Field(
        default_factory=Distributed,
        description="Nodes and processes per node for DDP.",
        json_schema_extra=immutable("spec.distributed", "the checkpoints were written for this layout"),
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32",
        description="Numeric precision: fp32; bf16 (autocast, also on CPU); fp16 (AMP with a gradient "
        "scaler, GPUs only).",
        json_schema_extra=immutable("spec.precision", "create a new TrainingJob to change it"),
    )
    checkpoint: Checkpoint = Field(default_factory=Checkpoint, description="Checkpoint interval and storage.")
    backup: BackupPolicy | None = Field(
        default=None, description="Scheduled backups of the checkpoint claim."
    )
    alerts: TrainingAlerts = Field(
        default_factory=TrainingAlerts, description="Alert rules and their thresholds."
    )
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Retries, deadlines, suspension.")
    data_validation: DataValidation = Field(
        default_factory=DataValidation, description="Checks of the data before the first step."
    )
    output: Output = Field(
        default_factory=Output,
        description="The ModelVersion a successful job creates.",
        json_schema_extra=immutable("spec.output", "create a new TrainingJob to change it"),
    )


class Progress(ApiModel):
    """Live progress, read by the operator from the worker's metrics endpoint."""

    epoch: int | None = Field(default=None, description="Current epoch (1-based).")
    total_epochs: int | None = Field(default=None, description="Epochs planned.")
    step: int | None = Field(default=None, description="Optimizer steps done.")
    total_steps: int | None = Field(default=None, description="Optimizer steps planned.")
    percent: int | None = Field(default=None, ge=0, le=100, description="Percent done.")
    loss: float | None = Field(default=None, description="Latest training loss.")
    samples_per_second: float | None = Field(default=None, description="Recent training throughput.")
    eta_seconds: int | None = Field(default=None, description="Estimated seconds to completion.")
    tokens_per_second: float | None = Field(
        default=None, description="A fine-tune's recent throughput in tokens (padding excluded) per second."
    )
    perplexity: float | None = Field(default=None, description="A fine-tune's exp(loss) of the latest step.")
    last_progress_time: Timestamp | None = Field(default=None, description="When a step last completed.")


class Metrics(ApiModel):
    """Final validation metrics: the built-in ones below, and any a custom image reports (numbers)."""

    model_config = ConfigDict(extra="allow")

    loss: float | None = Field(default=None, description="Validation loss.")
    accuracy: float | None = Field(default=None, description="Validation accuracy (0-1).")
    precision: float | None = Field(default=None, description="Macro-averaged precision.")
    recall: float | None = Field(default=None, description="Macro-averaged recall.")
    f1: float | None = Field(default=None, description="Macro-averaged F1.")
    auc: float | None = Field(default=None, description="ROC AUC (binary tasks).")


class CheckpointStatus(ApiModel):
    """The latest checkpoint that verified."""

    step: int | None = Field(default=None, description="Optimizer step of the checkpoint.")
    path: str | None = Field(default=None, description="Path inside the checkpoint claim.")
    sha256: str | None = Field(default=None, description="Digest from the checkpoint's manifest.")
    time: Timestamp | None = Field(default=None, description="When it was written.")
    skipped_corrupt: int | None = Field(
        default=None,
        description="Checkpoints that failed verification on resume and were set aside (never loaded).",
    )


class Failure(ApiModel):
    """Why the job failed (or last restarted)."""

    reason: str | None = Field(default=None, description="CamelCase reason, e.g. DataValidationFailed.")
    message: str | None = Field(default=None, description="What went wrong and what to do.")
    exit_code: int | None = Field(default=None, description="Exit code of the failed container.")
    pod: str | None = Field(default=None, description="The pod that failed.")


class HistoryPoint(ApiModel):
    """One look at the run's progress (see status.history)."""

    step: int = Field(description="Optimizer steps done.")
    epoch: int | None = Field(default=None, description="Epoch at that step (1-based).")
    loss: float | None = Field(default=None, description="Training loss at that step.")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Validation metrics known then, e.g. val_loss, val_accuracy."
    )
    time: Timestamp = Field(description="When the operator looked.")
    attempt: int | None = Field(
        default=None, description="The restart this point belongs to (absent: the first attempt)."
    )


class TrainingJobStatus(ApiModel):
    """The observed state of the training run."""

    phase: (
        Literal["Pending", "Created", "Running", "Restarting", "Succeeded", "Failed", "Suspended"] | None
    ) = Field(default=None, description="A one-word summary for humans; automation should read conditions.")
    observed_generation: int | None = Field(default=None, description="The generation this status is for.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling, Stalled (kstatus) and Created, Running, Restarting, Succeeded, "
        "Failed, Suspended.",
        json_schema_extra=CONDITIONS_FIELD,
    )
    start_time: Timestamp | None = Field(default=None, description="When the pods first started.")
    completion_time: Timestamp | None = Field(default=None, description="When the job finished.")
    restarts: int = Field(default=0, ge=0, description="Times all pods were recreated after a failure.")
    progress: Progress | None = Field(default=None, description="Live progress.")
    metrics: Metrics | None = Field(
        default=None,
        description="Final validation metrics, including a custom image's own (e.g. bleu): numbers by name.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    hyperparameters: dict[str, Any] | None = Field(
        default=None,
        description="The hyperparameters the run reported it used (its result's hyperparameters).",
        json_schema_extra=FREE_FORM_OBJECT,
    )
    checkpoint: CheckpointStatus | None = Field(default=None, description="Latest valid checkpoint.")
    model_version: str | None = Field(default=None, description="Name of the ModelVersion created.")
    failure: Failure | None = Field(default=None, description="Why the job failed or last restarted.")
    backup: BackupStatus | None = Field(default=None, description="State of the scheduled backups.")
    alerting: AlertingStatus | None = Field(default=None, description="Where the alert rules live.")
    dataset_digest: str | None = Field(
        default=None, description="A fine-tune's sha256 of its training data file, as read."
    )
    base_model: FineTuneLineage | None = Field(
        default=None, description="A fine-tune's base model (recorded in its ModelVersion's lineage)."
    )
    history: list[HistoryPoint] = Field(
        default_factory=list,
        max_length=200,
        description="The training curve: a point per look at the worker's progress, oldest first, at most "
        "200 (older points are thinned to every other one when it overflows; the first point of each "
        "restart is kept).",
    )


def output_format(spec: TrainingJobSpec) -> Literal["torchscript", "state_dict", "huggingface"]:
    """The format the job exports: spec.output.format, else huggingface for a fine-tune, else torchscript."""
    if spec.output.format is not None:
        return spec.output.format
    return "huggingface" if spec.fine_tune is not None else "torchscript"


class TrainingJob(ApiModel):
    """A TrainingJob object as stored by the API server."""

    model_config = ConfigDict(extra="ignore")

    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None


# An optional field's own `self == oldSelf` rule runs only when it is set both before and after, so
# adding or removing it would slip through; these root rules (oldSelf always exists on update) close that.
def _presence_is_immutable(path: str, hint: str) -> dict[str, str]:
    parent = path.rpartition(".")[0]
    return {
        "rule": f"has(self.{parent}) != has(oldSelf.{parent}) || has(self.{path}) == has(oldSelf.{path})"
        if parent != "spec"
        else f"has(self.{path}) == has(oldSelf.{path})",
        "message": f"{path} is immutable (it can be neither added nor removed): {hint}",
        "fieldPath": f".{path}",
        "reason": "FieldValueForbidden",
    }


ROOT_RULES: list[dict[str, str]] = [
    _presence_is_immutable("spec.model", "create a new TrainingJob to train another model"),
    _presence_is_immutable("spec.dataset", "create a new TrainingJob to train on other data"),
    _presence_is_immutable("spec.fineTune", "create a new TrainingJob to fine-tune differently"),
    _presence_is_immutable("spec.image", "create a new TrainingJob to run other code"),
    _presence_is_immutable("spec.command", "create a new TrainingJob to run other code"),
    _presence_is_immutable("spec.args", "create a new TrainingJob to run other code"),
    _presence_is_immutable("spec.checkpoint.restoreFrom", "the checkpoint claim already exists"),
    {
        # NCCL runs one process per GPU: a second process on the same GPU fails at init ("Duplicate GPU
        # detected"), after the pods were scheduled and the GPUs held.
        "rule": "!has(self.spec.resources) || !has(self.spec.distributed) || self.spec.resources.gpus == 0 || "
        "type(self.spec.distributed.procsPerNode) != int || self.spec.distributed.backend == 'gloo' || "
        "self.spec.distributed.procsPerNode <= self.spec.resources.gpus",
        "message": "spec.distributed.procsPerNode: NCCL needs a GPU per process; use at most "
        "spec.resources.gpus processes per node, auto, or backend gloo",
        "fieldPath": ".spec.distributed.procsPerNode",
        "reason": "FieldValueInvalid",
    },
]
