"""A corpus of manifests a new user or an attacker might apply, and the field each refusal must name.

Shared by the kubectl test (`test_invalid_corpus.py`, the real kubectl against the local API server)
and usable on its own with `modelops_local.schema` for quick probing. Every entry is one mistake on an
otherwise valid object; the field path is the one a user must be pointed at (it appears in the error's
path or, for a rule over several fields, in its message).
"""

from __future__ import annotations

import copy
from typing import Any

from modelops.api.common import NAME_LIMITS

Obj = dict[str, Any]


def _obj(kind: str, name: str, spec: Obj, **meta: Any) -> Obj:
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default", **meta},
        "spec": spec,
    }


def _set(base: Obj, path: str, value: Any) -> Obj:
    """`base` with the dotted `path` (under spec) set to `value`; None deletes the key."""
    out = copy.deepcopy(base)
    node = out
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return out


TJ_SPEC: Obj = {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}}
TJ_IMAGE_SPEC: Obj = {"image": "ghcr.io/example/train:1.0", "command": ["python", "train.py"]}
MV_SPEC: Obj = {"model": "digits", "source": {"uri": "pvc://models/digits/model.pt"}}
ISVC_SPEC: Obj = {"modelRef": {"model": "digits", "version": 1}}
V2: Obj = {"model": "digits", "version": 2}
BACKUP: Obj = {"schedule": "0 * * * *", "destination": {"claimName": "backups"}}


def tj(path: str = "", value: Any = None, *, base: Obj = TJ_SPEC, name: str = "train", **meta: Any) -> Obj:
    spec = _set(base, path, value) if path else copy.deepcopy(base)
    return _obj("TrainingJob", name, spec, **meta)


def timg(path: str = "", value: Any = None, **meta: Any) -> Obj:
    return tj(path, value, base=TJ_IMAGE_SPEC, **meta)


def mv(path: str = "", value: Any = None, *, name: str = "digits-1", **meta: Any) -> Obj:
    spec = _set(MV_SPEC, path, value) if path else copy.deepcopy(MV_SPEC)
    return _obj("ModelVersion", name, spec, **meta)


def isvc(path: str = "", value: Any = None, *, name: str = "serve", **meta: Any) -> Obj:
    spec = _set(ISVC_SPEC, path, value) if path else copy.deepcopy(ISVC_SPEC)
    return _obj("InferenceService", name, spec, **meta)


def canary(**fields: Any) -> Obj:
    return isvc("canary", {"modelRef": V2, **fields})


def analysis(**fields: Any) -> Obj:
    return canary(analysis=fields)


TJ_LONGEST = NAME_LIMITS["TrainingJob"].longest
MV_LONGEST = NAME_LIMITS["ModelVersion"].longest
ISVC_LONGEST = NAME_LIMITS["InferenceService"].longest

# (id, object, the field path the error must name)
INVALID: list[tuple[str, Obj, str]] = [
    # ---------------------------------------------------------------- TrainingJob: the recipe
    ("tj model missing architecture", tj("model", {}), "spec.model.architecture"),
    ("tj architecture resnet", tj("model.architecture", "resnet"), "spec.model.architecture"),
    ("tj architecture empty", tj("model.architecture", ""), "spec.model.architecture"),
    ("tj hiddenSize string", tj("model.hiddenSize", "128"), "spec.model.hiddenSize"),
    ("tj hiddenSize 0", tj("model.hiddenSize", 0), "spec.model.hiddenSize"),
    ("tj hiddenSize fractional", tj("model.hiddenSize", 64.5), "spec.model.hiddenSize"),
    ("tj layers negative", tj("model.layers", -1), "spec.model.layers"),
    ("tj heads 0", tj("model.heads", 0), "spec.model.heads"),
    ("tj dropout 1", tj("model.dropout", 1.0), "spec.model.dropout"),
    ("tj dropout negative", tj("model.dropout", -0.1), "spec.model.dropout"),
    (
        "tj transformer heads do not divide",
        tj("model", {"architecture": "transformer", "hiddenSize": 100, "heads": 3}),
        "spec.model.hiddenSize",
    ),
    ("tj model as a string", tj("model", "mlp"), "spec.model"),
    # ---------------------------------------------------------------- TrainingJob: the data
    ("tj dataset empty", tj("dataset", {}), "spec.dataset"),
    ("tj dataset builtin mnist", tj("dataset.builtin", "mnist"), "spec.dataset.builtin"),
    ("tj dataset builtin empty", tj("dataset.builtin", ""), "spec.dataset.builtin"),
    (
        "tj dataset builtin and file",
        tj("dataset.file", {"claimName": "data", "path": "train.csv"}),
        "spec.dataset",
    ),
    (
        "tj dataset file claim empty",
        tj("dataset", {"file": {"claimName": "", "path": "train.csv"}}),
        "spec.dataset.file.claimName",
    ),
    (
        "tj dataset file claim uppercase",
        tj("dataset", {"file": {"claimName": "Data", "path": "train.csv"}}),
        "spec.dataset.file.claimName",
    ),
    (
        "tj dataset file path missing",
        tj("dataset", {"file": {"claimName": "data"}}),
        "spec.dataset.file.path",
    ),
    (
        "tj dataset file path empty",
        tj("dataset", {"file": {"claimName": "data", "path": ""}}),
        "spec.dataset.file.path",
    ),
    (
        "tj dataset file path absolute",
        tj("dataset", {"file": {"claimName": "data", "path": "/etc/shadow"}}),
        "spec.dataset.file.path",
    ),
    (
        "tj dataset file path traversal",
        tj("dataset", {"file": {"claimName": "data", "path": "../../etc/shadow"}}),
        "spec.dataset.file.path",
    ),
    (
        "tj dataset file path traversal inside",
        tj("dataset", {"file": {"claimName": "data", "path": "data/../../secret.csv"}}),
        "spec.dataset.file.path",
    ),
    (
        "tj dataset file path dotdot alone",
        tj("dataset", {"file": {"claimName": "data", "path": ".."}}),
        "spec.dataset.file.path",
    ),
    (
        "tj dataset file path leading space",
        tj("dataset", {"file": {"claimName": "data", "path": " train.csv"}}),
        "spec.dataset.file.path",
    ),
    (
        "tj dataset file path trailing newline",
        tj("dataset", {"file": {"claimName": "data", "path": "train.csv\n"}}),
        "spec.dataset.file.path",
    ),
    (
        "tj dataset file path NUL",
        tj("dataset", {"file": {"claimName": "data", "path": "train\u0000.csv"}}),
        "spec.dataset.file.path",
    ),
    (
        "tj dataset file path a directory",
        tj("dataset", {"file": {"claimName": "data", "path": "data/"}}),
        "spec.dataset.file.path",
    ),
    (
        "tj dataset file format xlsx",
        tj("dataset", {"file": {"claimName": "data", "path": "t.xlsx", "format": "xlsx"}}),
        "spec.dataset.file.format",
    ),
    (
        "tj dataset labelColumn empty",
        tj("dataset", {"file": {"claimName": "data", "path": "t.csv", "labelColumn": ""}}),
        "spec.dataset.file.labelColumn",
    ),
    (
        "tj dataset labelColumn control character",
        tj("dataset", {"file": {"claimName": "data", "path": "t.csv", "labelColumn": "la\u0007bel"}}),
        "spec.dataset.file.labelColumn",
    ),
    (
        "tj dataset labelColumn oversize",
        tj("dataset", {"file": {"claimName": "data", "path": "t.csv", "labelColumn": "l" * 5000}}),
        "spec.dataset.file.labelColumn",
    ),
    ("tj dataset missing with model", tj("dataset", None), "spec.dataset"),
    # ---------------------------------------------------------------- TrainingJob: hyperparameters
    ("tj epochs string", tj("hyperparameters.epochs", "ten"), "spec.hyperparameters.epochs"),
    ("tj epochs 0", tj("hyperparameters.epochs", 0), "spec.hyperparameters.epochs"),
    ("tj epochs fractional", tj("hyperparameters.epochs", 2.5), "spec.hyperparameters.epochs"),
    ("tj batchSize negative", tj("hyperparameters.batchSize", -32), "spec.hyperparameters.batchSize"),
    ("tj learningRate 0", tj("hyperparameters.learningRate", 0), "spec.hyperparameters.learningRate"),
    (
        "tj learningRate string",
        tj("hyperparameters.learningRate", "1e-3"),
        "spec.hyperparameters.learningRate",
    ),
    ("tj optimizer lion", tj("hyperparameters.optimizer", "lion"), "spec.hyperparameters.optimizer"),
    ("tj optimizer Adam capital", tj("hyperparameters.optimizer", "Adam"), "spec.hyperparameters.optimizer"),
    ("tj momentum 1", tj("hyperparameters.momentum", 1), "spec.hyperparameters.momentum"),
    ("tj weightDecay 2", tj("hyperparameters.weightDecay", 2), "spec.hyperparameters.weightDecay"),
    ("tj seed negative", tj("hyperparameters.seed", -1), "spec.hyperparameters.seed"),
    ("tj seed over int32", tj("hyperparameters.seed", 2**31), "spec.hyperparameters.seed"),
    (
        "tj validationSplit 0",
        tj("hyperparameters.validationSplit", 0),
        "spec.hyperparameters.validationSplit",
    ),
    (
        "tj validationSplit 0.9",
        tj("hyperparameters.validationSplit", 0.9),
        "spec.hyperparameters.validationSplit",
    ),
    (
        "tj gradientAccumulationSteps 0",
        tj("hyperparameters.gradientAccumulationSteps", 0),
        "spec.hyperparameters.gradientAccumulationSteps",
    ),
    (
        "tj earlyStopping patience 0",
        tj("hyperparameters.earlyStopping", {"patience": 0}),
        "spec.hyperparameters.earlyStopping.patience",
    ),
    (
        "tj earlyStopping metric",
        tj("hyperparameters.earlyStopping", {"metric": "accuracy"}),
        "spec.hyperparameters.earlyStopping.metric",
    ),
    (
        "tj earlyStopping minDelta negative",
        tj("hyperparameters.earlyStopping", {"minDelta": -1}),
        "spec.hyperparameters.earlyStopping.minDelta",
    ),
    ("tj hyperparameters typo", tj("hyperparameters.epoch", 3), "spec.hyperparameters.epoch"),
    # ---------------------------------------------------------------- TrainingJob: custom image
    ("tj model and image", tj("image", "ghcr.io/example/train:1"), "spec.model"),
    ("tj command without image", tj("command", ["python"]), "spec.command"),
    ("tj args without image", tj("args", ["--epochs", "3"]), "spec.args"),
    ("tj neither model nor image", tj("model", None, base={}), "spec.model"),
    ("tj image empty", timg("image", ""), "spec.image"),
    ("tj image whitespace", timg("image", " ghcr.io/example/train:1"), "spec.image"),
    ("tj image with a space", timg("image", "ghcr.io/example/train: 1"), "spec.image"),
    ("tj image newline", timg("image", "ghcr.io/example/train:1\n"), "spec.image"),
    ("tj image uppercase repository", timg("image", "GHCR.io/Example/Train:1"), "spec.image"),
    ("tj command a string", timg("command", "python train.py"), "spec.command"),
    ("tj command item a number", timg("command", ["python", 3]), "spec.command[1]"),
    ("tj env not a list", timg("env", {"A": "1"}), "spec.env"),
    ("tj env name empty", timg("env", [{"name": "", "value": "1"}]), "spec.env[0].name"),
    ("tj env name with a space", timg("env", [{"name": "MY VAR", "value": "1"}]), "spec.env[0].name"),
    ("tj env name with =", timg("env", [{"name": "A=B", "value": "1"}]), "spec.env[0].name"),
    (
        "tj env duplicate names",
        timg("env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.env[1]",
    ),
    ("tj env value a number", timg("env", [{"name": "A", "value": 1}]), "spec.env[0].value"),
    # ---------------------------------------------------------------- TrainingJob: resources
    ("tj cpu negative", tj("resources", {"cpu": "-1"}), "spec.resources.cpu"),
    ("tj cpu word", tj("resources", {"cpu": "two"}), "spec.resources.cpu"),
    ("tj cpu empty", tj("resources", {"cpu": ""}), "spec.resources.cpu"),
    ("tj cpu fractional number", tj("resources", {"cpu": 0.5}), "spec.resources.cpu"),
    ("tj memory negative", tj("resources", {"memory": "-2Gi"}), "spec.resources.memory"),
    ("tj memory unit lowercase gi", tj("resources", {"memory": "2gi"}), "spec.resources.memory"),
    ("tj memory with a space", tj("resources", {"memory": "2 Gi"}), "spec.resources.memory"),
    ("tj shmSize negative", tj("resources", {"shmSize": "-1Gi"}), "spec.resources.shmSize"),
    ("tj gpus negative", tj("resources", {"gpus": -1}), "spec.resources.gpus"),
    ("tj gpus fractional", tj("resources", {"gpus": 0.5}), "spec.resources.gpus"),
    ("tj gpus string", tj("resources", {"gpus": "1"}), "spec.resources.gpus"),
    ("tj gpus 99", tj("resources", {"gpus": 99}), "spec.resources.gpus"),
    ("tj gpuType without gpus", tj("resources", {"gpuType": "NVIDIA-A100"}), "spec.resources.gpuType"),
    ("tj gpuType empty", tj("resources", {"gpus": 1, "gpuType": ""}), "spec.resources.gpuType"),
    (
        "tj gpuType not a label value",
        tj("resources", {"gpus": 1, "gpuType": "NVIDIA A100 80GB"}),
        "spec.resources.gpuType",
    ),
    (
        "tj gpuType longer than a label value",
        tj("resources", {"gpus": 1, "gpuType": "A" * 64}),
        "spec.resources.gpuType",
    ),
    ("tj fp16 on CPU", tj("precision", "fp16"), "spec.precision"),
    ("tj precision fp8", tj("precision", "fp8"), "spec.precision"),
    # ---------------------------------------------------------------- TrainingJob: scheduling
    (
        "tj nodeSelector value not a string",
        tj("scheduling", {"nodeSelector": {"zone": 1}}),
        "spec.scheduling.nodeSelector.zone",
    ),
    (
        "tj nodeSelector value not a label value",
        tj("scheduling", {"nodeSelector": {"zone": "eu west"}}),
        "spec.scheduling.nodeSelector",
    ),
    (
        "tj nodeSelector oversize map",
        tj("scheduling", {"nodeSelector": {f"k{i}": "v" for i in range(200)}}),
        "spec.scheduling.nodeSelector",
    ),
    (
        "tj toleration operator In",
        tj("scheduling", {"tolerations": [{"key": "gpu", "operator": "In"}]}),
        "spec.scheduling.tolerations[0].operator",
    ),
    (
        "tj toleration effect unknown",
        tj("scheduling", {"tolerations": [{"key": "gpu", "effect": "NoRun"}]}),
        "spec.scheduling.tolerations[0].effect",
    ),
    (
        "tj toleration Exists with a value",
        tj("scheduling", {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}]}),
        "spec.scheduling.tolerations[0]",
    ),
    (
        "tj toleration no key with Equal",
        tj("scheduling", {"tolerations": [{"value": "x"}]}),
        "spec.scheduling.tolerations[0]",
    ),
    (
        "tj toleration seconds without NoExecute",
        tj("scheduling", {"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]}),
        "spec.scheduling.tolerations[0]",
    ),
    (
        "tj toleration seconds negative",
        tj("scheduling", {"tolerations": [{"key": "k", "effect": "NoExecute", "tolerationSeconds": -5}]}),
        "spec.scheduling.tolerations[0].tolerationSeconds",
    ),
    (
        "tj toleration key not a qualified name",
        tj("scheduling", {"tolerations": [{"key": "bad key", "operator": "Exists"}]}),
        "spec.scheduling.tolerations[0].key",
    ),
    (
        "tj priorityClassName uppercase",
        tj("scheduling", {"priorityClassName": "High_Priority"}),
        "spec.scheduling.priorityClassName",
    ),
    (
        "tj priorityClassName empty",
        tj("scheduling", {"priorityClassName": ""}),
        "spec.scheduling.priorityClassName",
    ),
    ("tj affinity a list", tj("scheduling", {"affinity": ["zone"]}), "spec.scheduling.affinity"),
    # ---------------------------------------------------------------- TrainingJob: distributed
    ("tj nodes 0", tj("distributed", {"nodes": 0}), "spec.distributed.nodes"),
    ("tj nodes 1000", tj("distributed", {"nodes": 1000}), "spec.distributed.nodes"),
    ("tj procsPerNode 0", tj("distributed", {"procsPerNode": 0}), "spec.distributed.procsPerNode"),
    ("tj procsPerNode many", tj("distributed", {"procsPerNode": "many"}), "spec.distributed.procsPerNode"),
    ("tj procsPerNode '2'", tj("distributed", {"procsPerNode": "2"}), "spec.distributed.procsPerNode"),
    ("tj backend mpi", tj("distributed", {"backend": "mpi"}), "spec.distributed.backend"),
    ("tj nccl on CPU", tj("distributed", {"backend": "nccl"}), "spec.distributed.backend"),
    (
        "tj more NCCL processes than GPUs",
        tj("distributed", {"procsPerNode": 4})
        | {"spec": {**TJ_SPEC, "distributed": {"procsPerNode": 4}, "resources": {"gpus": 2}}},
        "spec.distributed.procsPerNode",
    ),
    (
        "tj backup destination without copy",
        tj("backup", {**BACKUP, "methods": ["volumeSnapshot"]}),
        "spec.backup.destination",
    ),
    # ---------------------------------------------------------------- TrainingJob: checkpoints
    (
        "tj checkpoint interval 1s",
        tj("checkpoint", {"intervalSeconds": 1}),
        "spec.checkpoint.intervalSeconds",
    ),
    (
        "tj checkpoint interval 0 steps",
        tj("checkpoint", {"intervalSteps": 0}),
        "spec.checkpoint.intervalSteps",
    ),
    ("tj checkpoint keep 0", tj("checkpoint", {"keep": 0}), "spec.checkpoint.keep"),
    ("tj checkpoint size 0", tj("checkpoint", {"storage": {"size": "0"}}), "spec.checkpoint.storage.size"),
    (
        "tj checkpoint existingClaim uppercase",
        tj("checkpoint", {"storage": {"existingClaim": "Ckpt"}}),
        "spec.checkpoint.storage.existingClaim",
    ),
    (
        "tj checkpoint storageClassName invalid",
        tj("checkpoint", {"storage": {"storageClassName": "Fast SSD"}}),
        "spec.checkpoint.storage.storageClassName",
    ),
    (
        "tj checkpoint existingClaim and storageClassName",
        tj("checkpoint", {"storage": {"existingClaim": "ckpt", "storageClassName": "fast"}}),
        "spec.checkpoint.storage",
    ),
    (
        "tj restoreFrom both",
        tj(
            "checkpoint",
            {"restoreFrom": {"backup": {"claimName": "b", "path": "x"}, "volumeSnapshot": {"name": "s"}}},
        ),
        "restoreFrom",
    ),
    ("tj restoreFrom neither", tj("checkpoint", {"restoreFrom": {}}), "restoreFrom"),
    (
        "tj restoreFrom backup path traversal",
        tj("checkpoint", {"restoreFrom": {"backup": {"claimName": "b", "path": "../other-team"}}}),
        "spec.checkpoint.restoreFrom.backup.path",
    ),
    (
        "tj restoreFrom snapshot with existing claim",
        tj(
            "checkpoint",
            {"restoreFrom": {"volumeSnapshot": {"name": "s"}}, "storage": {"existingClaim": "c"}},
        ),
        "spec.checkpoint.restoreFrom.volumeSnapshot",
    ),
    # ---------------------------------------------------------------- TrainingJob: backup
    ("tj backup schedule empty", tj("backup", {**BACKUP, "schedule": ""}), "spec.backup.schedule"),
    ("tj backup schedule bad", tj("backup", {**BACKUP, "schedule": "every hour"}), "spec.backup.schedule"),
    ("tj backup no destination", tj("backup", {"schedule": "@daily"}), "spec.backup.destination"),
    ("tj backup method rsync", tj("backup", {**BACKUP, "methods": ["rsync"]}), "spec.backup.methods[0]"),
    ("tj backup methods empty", tj("backup", {**BACKUP, "methods": []}), "spec.backup.methods"),
    (
        "tj backup methods duplicate",
        tj("backup", {**BACKUP, "methods": ["copy", "copy"]}),
        "spec.backup.methods[1]",
    ),
    (
        "tj backup snapshot class without snapshots",
        tj("backup", {**BACKUP, "volumeSnapshotClassName": "csi"}),
        "spec.backup.volumeSnapshotClassName",
    ),
    (
        "tj backup destination path absolute",
        tj("backup", {**BACKUP, "destination": {"claimName": "b", "path": "/root"}}),
        "spec.backup.destination.path",
    ),
    (
        "tj backup destination path traversal",
        tj("backup", {**BACKUP, "destination": {"claimName": "b", "path": "x/../../y"}}),
        "spec.backup.destination.path",
    ),
    (
        "tj backup keepLast 0",
        tj("backup", {**BACKUP, "retention": {"keepLast": 0}}),
        "spec.backup.retention.keepLast",
    ),
    (
        "tj backup maxAge week word",
        tj("backup", {**BACKUP, "retention": {"maxAge": "1 week"}}),
        "spec.backup.retention.maxAge",
    ),
    (
        "tj backup maxAge zero",
        tj("backup", {**BACKUP, "retention": {"maxAge": "0d"}}),
        "spec.backup.retention.maxAge",
    ),
    # ---------------------------------------------------------------- TrainingJob: alerts, policies, output
    ("tj alerts stalledAfter 15", tj("alerts", {"stalledAfter": "15"}), "spec.alerts.stalledAfter"),
    (
        "tj alerts stalledAfter units reversed",
        tj("alerts", {"stalledAfter": "30m1h"}),
        "spec.alerts.stalledAfter",
    ),
    ("tj alerts maxRestarts 0", tj("alerts", {"maxRestarts": 0}), "spec.alerts.maxRestarts"),
    ("tj alerts gpuIdlePercent 101", tj("alerts", {"gpuIdlePercent": 101}), "spec.alerts.gpuIdlePercent"),
    ("tj alerts gpuMemoryPercent 0", tj("alerts", {"gpuMemoryPercent": 0}), "spec.alerts.gpuMemoryPercent"),
    ("tj alerts pendingFor negative", tj("alerts", {"pendingFor": "-5m"}), "spec.alerts.pendingFor"),
    (
        "tj runPolicy backoffLimit negative",
        tj("runPolicy", {"backoffLimit": -1}),
        "spec.runPolicy.backoffLimit",
    ),
    (
        "tj runPolicy activeDeadlineSeconds 0",
        tj("runPolicy", {"activeDeadlineSeconds": 0}),
        "spec.runPolicy.activeDeadlineSeconds",
    ),
    (
        "tj runPolicy ttl negative",
        tj("runPolicy", {"ttlSecondsAfterFinished": -1}),
        "spec.runPolicy.ttlSecondsAfterFinished",
    ),
    ("tj runPolicy suspend yes", tj("runPolicy", {"suspend": "yes"}), "spec.runPolicy.suspend"),
    ("tj dataValidation minRows 0", tj("dataValidation", {"minRows": 0}), "spec.dataValidation.minRows"),
    (
        "tj dataValidation duplicate ratio 2",
        tj("dataValidation", {"maxDuplicateRatio": 2}),
        "spec.dataValidation.maxDuplicateRatio",
    ),
    (
        "tj dataValidation imbalance 0.5",
        tj("dataValidation", {"maxClassImbalance": 0.5}),
        "spec.dataValidation.maxClassImbalance",
    ),
    ("tj output modelName uppercase", tj("output", {"modelName": "Digits"}), "spec.output.modelName"),
    ("tj output modelName too long", tj("output", {"modelName": "m" * 58}), "spec.output.modelName"),
    ("tj output format onnx", tj("output", {"format": "pickle"}), "spec.output.format"),
    # ---------------------------------------------------------------- TrainingJob: names and metadata
    ("tj name too long", tj(name="t" * (TJ_LONGEST + 1)), "metadata.name"),
    ("tj name starts with a digit", tj(name="9train"), "metadata.name"),
    ("tj name with a dot", tj(name="train.v1"), "metadata.name"),
    ("tj name uppercase", tj(name="Train"), "metadata.name"),
    ("tj name unicode", tj(name="tr\u00e4in"), "metadata.name"),
    ("tj name control character", tj(name="train\u0007"), "metadata.name"),
    ("tj label key invalid", tj(labels={"bad key": "x"}), "metadata.labels"),
    ("tj label value too long", tj(labels={"team": "x" * 64}), "metadata.labels"),
    ("tj annotation key invalid", tj(annotations={"-bad": "x"}), "metadata.annotations"),
    ("tj spec typo", tj("epochs", 3), "spec.epochs"),
    # ---------------------------------------------------------------- ModelVersion
    ("mv model missing", mv("model", None), "spec.model"),
    ("mv model empty", mv("model", ""), "spec.model"),
    ("mv model underscore", mv("model", "digits_model"), "spec.model"),
    ("mv model unicode", mv("model", "d\u00efgits"), "spec.model"),
    ("mv model too long", mv("model", "m" * 64), "spec.model"),
    ("mv version 0", mv("version", 0), "spec.version"),
    ("mv version beyond int32", mv("version", 2**31), "spec.version"),
    ("mv version beyond int64", mv("version", 2**64), "spec.version"),
    ("mv version string", mv("version", "1"), "spec.version"),
    ("mv version fractional", mv("version", 1.5), "spec.version"),
    ("mv source missing", mv("source", None), "spec.source"),
    ("mv source empty", mv("source", {}), "spec.source"),
    (
        "mv source both",
        mv("source", {"uri": "pvc://models/m.pt", "trainingJob": {"name": "train"}}),
        "spec.source",
    ),
    (
        "mv source trainingJob empty name",
        mv("source", {"trainingJob": {"name": ""}}),
        "spec.source.trainingJob.name",
    ),
    (
        "mv source trainingJob name with a dot",
        mv("source", {"trainingJob": {"name": "train.v1"}}),
        "spec.source.trainingJob.name",
    ),
    ("mv uri empty", mv("source", {"uri": ""}), "spec.source.uri"),
    ("mv uri http", mv("source", {"uri": "http://example.com/m.pt"}), "spec.source.uri"),
    ("mv uri file", mv("source", {"uri": "file:///models/m.pt"}), "spec.source.uri"),
    ("mv uri no scheme", mv("source", {"uri": "models/m.pt"}), "spec.source.uri"),
    ("mv uri PVC uppercase scheme", mv("source", {"uri": "PVC://models/m.pt"}), "spec.source.uri"),
    ("mv uri empty claim", mv("source", {"uri": "pvc:///m.pt"}), "spec.source.uri"),
    ("mv uri claim only", mv("source", {"uri": "pvc://models"}), "spec.source.uri"),
    ("mv uri claim uppercase", mv("source", {"uri": "pvc://Models/m.pt"}), "spec.source.uri"),
    ("mv uri absolute path", mv("source", {"uri": "pvc://models//etc/passwd"}), "spec.source.uri"),
    ("mv uri traversal", mv("source", {"uri": "pvc://models/../../etc/passwd"}), "spec.source.uri"),
    ("mv uri traversal inside", mv("source", {"uri": "pvc://models/a/../../b.pt"}), "spec.source.uri"),
    ("mv uri traversal at the end", mv("source", {"uri": "pvc://models/a/.."}), "spec.source.uri"),
    ("mv uri s3 traversal", mv("source", {"uri": "s3://bucket/../other/m.pt"}), "spec.source.uri"),
    ("mv uri leading space", mv("source", {"uri": " pvc://models/m.pt"}), "spec.source.uri"),
    ("mv uri trailing newline", mv("source", {"uri": "pvc://models/m.pt\n"}), "spec.source.uri"),
    ("mv uri tab inside", mv("source", {"uri": "pvc://models/m\t.pt"}), "spec.source.uri"),
    ("mv uri s3 no key", mv("source", {"uri": "s3://bucket"}), "spec.source.uri"),
    ("mv uri s3 bucket short", mv("source", {"uri": "s3://ab/m.pt"}), "spec.source.uri"),
    ("mv uri s3 bucket underscore", mv("source", {"uri": "s3://my_bucket/m.pt"}), "spec.source.uri"),
    ("mv uri s3 bucket double dot", mv("source", {"uri": "s3://my..bucket/m.pt"}), "spec.source.uri"),
    ("mv uri oversize", mv("source", {"uri": "pvc://models/" + "a" * 5000}), "spec.source.uri"),
    (
        "mv credentials for pvc",
        mv("source", {"uri": "pvc://models/m.pt", "credentialsSecret": {"name": "aws"}}),
        "spec.source.credentialsSecret",
    ),
    (
        "mv credentials secret name invalid",
        mv("source", {"uri": "s3://bucket/m.pt", "credentialsSecret": {"name": "AWS_Creds"}}),
        "spec.source.credentialsSecret.name",
    ),
    ("mv format pickle", mv("format", "pickle"), "spec.format"),
    ("mv format empty", mv("format", ""), "spec.format"),
    ("mv framework tensorflow", mv("framework", "tensorflow"), "spec.framework"),
    ("mv sha256 short", mv("sha256", "abc"), "spec.sha256"),
    ("mv sha256 uppercase", mv("sha256", "A" * 64), "spec.sha256"),
    ("mv sha256 prefixed", mv("sha256", "sha256:" + "a" * 64), "spec.sha256"),
    ("mv description oversize", mv("description", "d" * 5000), "spec.description"),
    ("mv tags value not a string", mv("tags", {"team": 7}), "spec.tags.team"),
    ("mv tags oversize map", mv("tags", {f"t{i}": "v" for i in range(100)}), "spec.tags"),
    ("mv tags value oversize", mv("tags", {"notes": "n" * 5000}), "spec.tags.notes"),
    ("mv tags key oversize", mv("tags", {"k" * 300: "v"}), "spec.tags"),
    (
        "mv aliases duplicate",
        mv("promotion", {"aliases": ["champion", "champion"]}),
        "spec.promotion.aliases[1]",
    ),
    ("mv aliases uppercase", mv("promotion", {"aliases": ["Champion"]}), "spec.promotion.aliases[0]"),
    ("mv aliases empty string", mv("promotion", {"aliases": [""]}), "spec.promotion.aliases[0]"),
    (
        "mv aliases too many",
        mv("promotion", {"aliases": [f"a{i}" for i in range(17)]}),
        "spec.promotion.aliases",
    ),
    ("mv aliases a string", mv("promotion", {"aliases": "champion"}), "spec.promotion.aliases"),
    (
        "mv gate op =>",
        mv("promotion", {"gates": [{"metric": "accuracy", "op": "=>", "value": 0.9}]}),
        "spec.promotion.gates[0].op",
    ),
    (
        "mv gate value string",
        mv("promotion", {"gates": [{"metric": "accuracy", "value": "0.9"}]}),
        "spec.promotion.gates[0].value",
    ),
    (
        "mv gate metric empty",
        mv("promotion", {"gates": [{"metric": "", "value": 0.9}]}),
        "spec.promotion.gates[0].metric",
    ),
    (
        "mv gate metric with a space",
        mv("promotion", {"gates": [{"metric": "val accuracy", "value": 0.9}]}),
        "spec.promotion.gates[0].metric",
    ),
    (
        "mv gates too many",
        mv("promotion", {"gates": [{"metric": f"m{i}", "value": 1} for i in range(33)]}),
        "spec.promotion.gates",
    ),
    (
        "mv gates duplicate",
        mv(
            "promotion",
            {"gates": [{"metric": "accuracy", "value": 0.9}, {"metric": "accuracy", "value": 0.8}]},
        ),
        "spec.promotion.gates[1]",
    ),
    ("mv compareMetric empty", mv("promotion", {"compareMetric": ""}), "spec.promotion.compareMetric"),
    (
        "mv compareMetric with a newline",
        mv("promotion", {"compareMetric": "accuracy\n"}),
        "spec.promotion.compareMetric",
    ),
    (
        "mv mustBeatCurrent string",
        mv("promotion", {"mustBeatCurrent": "true"}),
        "spec.promotion.mustBeatCurrent",
    ),
    (
        "mv backup schedule 61 minutes",
        mv("backup", {**BACKUP, "schedule": "61 * * * *"}),
        "spec.backup.schedule",
    ),
    (
        "mv backup destination size 0",
        mv("backup", {**BACKUP, "destination": {"claimName": "b", "size": "0"}}),
        "spec.backup.destination.size",
    ),
    (
        "mv backup snapshot class invalid",
        mv("backup", {**BACKUP, "methods": ["volumeSnapshot"], "volumeSnapshotClassName": "CSI Class"}),
        "spec.backup.volumeSnapshotClassName",
    ),
    (
        "mv restoreFrom snapshot name invalid",
        mv("restoreFrom", {"volumeSnapshot": {"name": "Snap_1"}}),
        "spec.restoreFrom.volumeSnapshot.name",
    ),
    (
        "mv restoreFrom backup path absolute",
        mv("restoreFrom", {"backup": {"claimName": "b", "path": "/etc"}}),
        "spec.restoreFrom.backup.path",
    ),
    ("mv name too long", mv(name="v" * (MV_LONGEST + 1)), "metadata.name"),
    ("mv name with a dot", mv(name="digits.1"), "metadata.name"),
    ("mv name unicode", mv(name="d\u00efgits-1"), "metadata.name"),
    ("mv name trailing dash", mv(name="digits-"), "metadata.name"),
    ("mv label value with a space", mv(labels={"team": "ml ops"}), "metadata.labels"),
    ("mv spec typo", mv("aliases", ["champion"]), "spec.aliases"),
    # ---------------------------------------------------------------- InferenceService: what to serve
    ("isvc modelRef missing", isvc("modelRef", None), "spec.modelRef"),
    ("isvc modelRef neither", isvc("modelRef", {"model": "digits"}), "spec.modelRef"),
    (
        "isvc modelRef both",
        isvc("modelRef", {"model": "digits", "version": 1, "alias": "champion"}),
        "spec.modelRef",
    ),
    ("isvc modelRef model empty", isvc("modelRef", {"model": "", "version": 1}), "spec.modelRef.model"),
    (
        "isvc modelRef model dot",
        isvc("modelRef", {"model": "digits.v1", "version": 1}),
        "spec.modelRef.model",
    ),
    ("isvc modelRef version 0", isvc("modelRef", {"model": "digits", "version": 0}), "spec.modelRef.version"),
    (
        "isvc modelRef version -1",
        isvc("modelRef", {"model": "digits", "version": -1}),
        "spec.modelRef.version",
    ),
    (
        "isvc modelRef version string",
        isvc("modelRef", {"model": "digits", "version": "v1"}),
        "spec.modelRef.version",
    ),
    (
        "isvc modelRef version beyond int64",
        isvc("modelRef", {"model": "digits", "version": 2**70}),
        "spec.modelRef.version",
    ),
    (
        "isvc routing parent twice",
        isvc("trafficRouting", {"mode": "gatewayAPI", "parentRefs": [{"name": "gw"}, {"name": "gw"}]}),
        "spec.trafficRouting.parentRefs",
    ),
    ("isvc modelRef alias empty", isvc("modelRef", {"model": "digits", "alias": ""}), "spec.modelRef.alias"),
    (
        "isvc modelRef alias uppercase",
        isvc("modelRef", {"model": "digits", "alias": "Champion"}),
        "spec.modelRef.alias",
    ),
    # ---------------------------------------------------------------- InferenceService: replicas, resources
    ("isvc minReplicas 0", isvc("minReplicas", 0), "spec.minReplicas"),
    ("isvc minReplicas negative", isvc("minReplicas", -1), "spec.minReplicas"),
    ("isvc maxReplicas negative", isvc("maxReplicas", -3), "spec.maxReplicas"),
    ("isvc maxReplicas huge", isvc("maxReplicas", 100000), "spec.maxReplicas"),
    ("isvc minReplicas above maxReplicas", isvc("minReplicas", 3), "spec.minReplicas"),
    ("isvc replicas as string", isvc("maxReplicas", "2"), "spec.maxReplicas"),
    ("isvc cpu negative", isvc("resources", {"cpu": "-500m"}), "spec.resources.cpu"),
    ("isvc memory negative number", isvc("resources", {"memory": -1}), "spec.resources.memory"),
    ("isvc memory bogus unit", isvc("resources", {"memory": "1GB"}), "spec.resources.memory"),
    ("isvc gpus negative", isvc("resources", {"gpus": -1}), "spec.resources.gpus"),
    ("isvc gpus fractional", isvc("resources", {"gpus": 0.5}), "spec.resources.gpus"),
    ("isvc gpuType without gpus", isvc("resources", {"gpuType": "NVIDIA-A100"}), "resources.gpuType"),
    (
        "isvc gpuType with a slash",
        isvc("resources", {"gpus": 1, "gpuType": "nvidia/a100"}),
        "spec.resources.gpuType",
    ),
    ("isvc int8 on GPU", isvc("quantization", "int8") | {}, "spec.quantization"),
    ("isvc quantization int4", isvc("quantization", "int4"), "spec.quantization"),
    # ---------------------------------------------------------------- InferenceService: autoscaling, batching
    ("isvc autoscaling metric gpu", isvc("autoscaling", {"metric": "gpu"}), "spec.autoscaling.metric"),
    ("isvc autoscaling target 0", isvc("autoscaling", {"target": 0}), "spec.autoscaling.target"),
    ("isvc autoscaling target negative", isvc("autoscaling", {"target": -80}), "spec.autoscaling.target"),
    (
        "isvc autoscaling window negative",
        isvc("autoscaling", {"scaleDownStabilizationSeconds": -1}),
        "spec.autoscaling.scaleDownStabilizationSeconds",
    ),
    ("isvc batching maxBatchSize 0", isvc("batching", {"maxBatchSize": 0}), "spec.batching.maxBatchSize"),
    (
        "isvc batching maxLatencyMs negative",
        isvc("batching", {"maxLatencyMs": -1}),
        "spec.batching.maxLatencyMs",
    ),
    ("isvc batching maxQueueSize 0", isvc("batching", {"maxQueueSize": 0}), "spec.batching.maxQueueSize"),
    ("isvc batching enabled string", isvc("batching", {"enabled": "true"}), "spec.batching.enabled"),
    # ---------------------------------------------------------------- InferenceService: canary
    (
        "isvc canary same as stable",
        isvc("canary", {"modelRef": ISVC_SPEC["modelRef"]}),
        "spec.canary.modelRef",
    ),
    (
        "isvc canary modelRef both",
        isvc("canary", {"modelRef": {"model": "digits", "version": 2, "alias": "x"}}),
        "spec.canary.modelRef",
    ),
    ("isvc canary weight 0", canary(trafficPercent=0), "spec.canary.trafficPercent"),
    ("isvc canary weight 101", canary(trafficPercent=101), "spec.canary.trafficPercent"),
    ("isvc canary weight negative", canary(trafficPercent=-10), "spec.canary.trafficPercent"),
    ("isvc canary weight and steps", canary(trafficPercent=10, steps=[10, 50]), "spec.canary"),
    ("isvc canary steps empty", canary(steps=[]), "spec.canary.steps"),
    ("isvc canary step 0", canary(steps=[0, 50]), "spec.canary.steps"),
    ("isvc canary step 150", canary(steps=[50, 150]), "spec.canary.steps"),
    ("isvc canary steps decreasing", canary(steps=[50, 10]), "spec.canary.steps"),
    ("isvc canary steps duplicate", canary(steps=[10, 10, 50]), "spec.canary.steps"),
    ("isvc canary steps too many", canary(steps=list(range(1, 30))), "spec.canary.steps"),
    ("isvc canary steps fractional", canary(steps=[10.5, 50]), "spec.canary.steps[0]"),
    ("isvc analysis interval 0", analysis(intervalSeconds=0), "spec.canary.analysis.intervalSeconds"),
    ("isvc analysis interval 2h", analysis(intervalSeconds=7200), "spec.canary.analysis.intervalSeconds"),
    ("isvc analysis success rate 1.5", analysis(minSuccessRate=1.5), "spec.canary.analysis.minSuccessRate"),
    (
        "isvc analysis success rate 99 percent",
        analysis(minSuccessRate=99),
        "spec.canary.analysis.minSuccessRate",
    ),
    (
        "isvc analysis success rate negative",
        analysis(minSuccessRate=-0.1),
        "spec.canary.analysis.minSuccessRate",
    ),
    ("isvc analysis p99 0", analysis(maxP99LatencyMs=0), "spec.canary.analysis.maxP99LatencyMs"),
    ("isvc analysis p99 a day", analysis(maxP99LatencyMs=86_400_000), "spec.canary.analysis.maxP99LatencyMs"),
    ("isvc analysis failureLimit 0", analysis(failureLimit=0), "spec.canary.analysis.failureLimit"),
    ("isvc analysis minRequests negative", analysis(minRequests=-1), "spec.canary.analysis.minRequests"),
    # ---------------------------------------------------------------- InferenceService: auth, routing, alerts
    ("isvc auth no secret", isvc("auth", {}), "spec.auth.secretName"),
    ("isvc auth secret uppercase", isvc("auth", {"secretName": "Tokens"}), "spec.auth.secretName"),
    ("isvc auth key empty", isvc("auth", {"secretName": "tokens", "key": ""}), "spec.auth.key"),
    (
        "isvc auth key with a slash",
        isvc("auth", {"secretName": "tokens", "key": "../tokens"}),
        "spec.auth.key",
    ),
    ("isvc routing mode istio", isvc("trafficRouting", {"mode": "istio"}), "spec.trafficRouting.mode"),
    (
        "isvc routing gateway without parents",
        isvc("trafficRouting", {"mode": "gatewayAPI"}),
        "spec.trafficRouting.parentRefs",
    ),
    (
        "isvc routing gateway parents empty",
        isvc("trafficRouting", {"mode": "gatewayAPI", "parentRefs": []}),
        "spec.trafficRouting.parentRefs",
    ),
    (
        "isvc routing parents with replicas mode",
        isvc("trafficRouting", {"mode": "replicas", "parentRefs": [{"name": "gw"}]}),
        "spec.trafficRouting.parentRefs",
    ),
    (
        "isvc routing parent name empty",
        isvc("trafficRouting", {"mode": "gatewayAPI", "parentRefs": [{"name": ""}]}),
        "spec.trafficRouting.parentRefs[0].name",
    ),
    (
        "isvc routing parent name invalid",
        isvc("trafficRouting", {"mode": "gatewayAPI", "parentRefs": [{"name": "My Gateway"}]}),
        "spec.trafficRouting.parentRefs[0].name",
    ),
    (
        "isvc routing parent namespace invalid",
        isvc(
            "trafficRouting", {"mode": "gatewayAPI", "parentRefs": [{"name": "gw", "namespace": "Infra_NS"}]}
        ),
        "spec.trafficRouting.parentRefs[0].namespace",
    ),
    (
        "isvc routing hostname with a scheme",
        isvc(
            "trafficRouting",
            {
                "mode": "gatewayAPI",
                "parentRefs": [{"name": "gw"}],
                "hostnames": ["https://serve.example.com"],
            },
        ),
        "spec.trafficRouting.hostnames[0]",
    ),
    (
        "isvc routing hostnames too many",
        isvc(
            "trafficRouting",
            {
                "mode": "gatewayAPI",
                "parentRefs": [{"name": "gw"}],
                "hostnames": [f"h{i}.example.com" for i in range(17)],
            },
        ),
        "spec.trafficRouting.hostnames",
    ),
    ("isvc alerts errorRate 0", isvc("alerts", {"errorRatePercent": 0}), "spec.alerts.errorRatePercent"),
    ("isvc alerts errorRate 150", isvc("alerts", {"errorRatePercent": 150}), "spec.alerts.errorRatePercent"),
    ("isvc alerts p99 0", isvc("alerts", {"p99LatencyMs": 0}), "spec.alerts.p99LatencyMs"),
    ("isvc alerts window 0s", isvc("alerts", {"window": "0s"}), "spec.alerts.window"),
    ("isvc alerts window 5 minutes", isvc("alerts", {"window": "5 minutes"}), "spec.alerts.window"),
    ("isvc alerts window units reversed", isvc("alerts", {"window": "30s5m"}), "spec.alerts.window"),
    ("isvc name too long", isvc(name="s" * (ISVC_LONGEST + 1)), "metadata.name"),
    ("isvc name starts with a digit", isvc(name="1serve"), "metadata.name"),
    ("isvc name with an underscore", isvc(name="my_serve"), "metadata.name"),
    ("isvc name emoji", isvc(name="serve-\U0001f680"), "metadata.name"),
    ("isvc annotation value oversize", isvc(annotations={"note": "x" * 300_000}), "metadata.annotations"),
    ("isvc spec typo replicas", isvc("replicas", 2), "spec.replicas"),
]

# The int8 case needs GPUs: the dict merge above cannot express it, so build it here.
INVALID = [
    (what, _set(obj, "spec.resources", {"gpus": 1}) if what == "isvc int8 on GPU" else obj, field)
    for what, obj, field in INVALID
]

VALID: list[tuple[str, Obj]] = [
    ("tj minimal", tj()),
    ("tj name at the limit", tj(name="t" * TJ_LONGEST)),
    ("tj name with digits and dashes", tj(name="t-1-2-x")),
    (
        "tj transformer heads divide",
        tj("model", {"architecture": "transformer", "hiddenSize": 96, "heads": 3}),
    ),
    ("tj every builtin dataset", tj("dataset.builtin", "breast_cancer")),
    (
        "tj dataset file nested path with dots in names",
        tj(
            "dataset",
            {"file": {"claimName": "data", "path": "v1.2/..hidden/train..csv", "format": "parquet"}},
        ),
    ),
    (
        "tj dataset file label column with a space",
        tj("dataset", {"file": {"claimName": "data", "path": "t.csv", "labelColumn": "class label"}}),
    ),
    (
        "tj dataset label column ending in a non-breaking space (not whitespace to RE2)",
        tj("dataset", {"file": {"claimName": "data", "path": "t.csv", "labelColumn": "Klasse\u00a0"}}),
    ),
    (
        "tj hyperparameters at the bounds",
        tj(
            "hyperparameters",
            {"epochs": 1, "learningRate": 10, "momentum": 0, "validationSplit": 0.5, "seed": 2**31 - 1},
        ),
    ),
    ("tj image with digest", timg("image", "ghcr.io/example/train@sha256:" + "a" * 64)),
    ("tj image localhost registry with port", timg("image", "localhost:5000/train:dev")),
    (
        "tj env names of all shapes",
        timg("env", [{"name": "A", "value": ""}, {"name": "my.var-1", "value": "x"}, {"name": "_B"}]),
    ),
    (
        "tj gpus with a type",
        tj("resources", {"gpus": 2, "gpuType": "NVIDIA-A100-SXM4-80GB", "cpu": "500m", "memory": "1.5Gi"}),
    ),
    (
        "tj fp16 with gpus",
        tj("precision", "fp16") | {"spec": {**TJ_SPEC, "precision": "fp16", "resources": {"gpus": 1}}},
    ),
    ("tj zero resources", tj("resources", {"cpu": 0, "memory": "0", "shmSize": "0"})),
    (
        "tj scheduling full",
        tj(
            "scheduling",
            {
                "nodeSelector": {
                    "kubernetes.io/arch": "amd64",
                    "nvidia.com/gpu.present": "true",
                    "empty": "",
                },
                "tolerations": [
                    {"operator": "Exists"},
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "k", "value": "v", "effect": "NoExecute", "tolerationSeconds": 0},
                ],
                "priorityClassName": "system-cluster-critical",
                "affinity": {"nodeAffinity": {}},
            },
        ),
    ),
    ("tj distributed procs auto", tj("distributed", {"nodes": 4, "procsPerNode": "auto", "backend": "gloo"})),
    ("tj distributed procs 64", tj("distributed", {"nodes": 1, "procsPerNode": 64})),
    (
        "tj one NCCL process per GPU, or gloo with more",
        tj("distributed", {"procsPerNode": 4})
        | {
            "spec": {
                **TJ_SPEC,
                "distributed": {"procsPerNode": 4, "backend": "gloo"},
                "resources": {"gpus": 1},
            }
        },
    ),
    (
        "tj procs equal gpus with nccl",
        tj("distributed", {"procsPerNode": 2})
        | {
            "spec": {
                **TJ_SPEC,
                "distributed": {"procsPerNode": 2, "backend": "nccl"},
                "resources": {"gpus": 2},
            }
        },
    ),
    ("tj snapshots only", tj("backup", {"schedule": "@daily", "methods": ["volumeSnapshot"]})),
    (
        "tj checkpoint storage class with dots",
        tj("checkpoint", {"storage": {"storageClassName": "ebs.csi.aws.com", "size": "10Gi"}}),
    ),
    (
        "tj backup maxAge combined",
        tj(
            "backup",
            {
                **BACKUP,
                "retention": {"maxAge": "1d12h"},
                "destination": {"claimName": "b", "path": "team-a/ckpt"},
            },
        ),
    ),
    (
        "tj alerts durations in order",
        tj("alerts", {"stalledAfter": "1h30m", "pendingFor": "0s", "gpuIdlePercent": 0}),
    ),
    (
        "tj labels and annotations",
        tj(labels={"app.kubernetes.io/name": "train", "empty": ""}, annotations={"note": "ünïcödé ok"}),
    ),
    ("mv minimal", mv()),
    ("mv name all digits at the limit", mv(name="1" * MV_LONGEST)),
    ("mv training job source", mv("source", {"trainingJob": {"name": "train"}})),
    (
        "mv s3 with credentials",
        mv(
            "source",
            {"uri": "s3://my.bucket-1/models/digits v1/m.onnx", "credentialsSecret": {"name": "aws"}},
        ),
    ),
    ("mv pvc path with dots in names", mv("source", {"uri": "pvc://models/v1.0/..m/m..pt"})),
    (
        "mv sha256 and format onnx",
        mv("sha256", "0" * 64)
        | {"spec": {**MV_SPEC, "sha256": "0" * 64, "format": "onnx", "framework": "onnx"}},
    ),
    ("mv tags at the limit", mv("tags", {f"t{i}": "v" * 256 for i in range(64)})),
    (
        "mv tags with label-style keys",
        mv("tags", {"team.example.com/owner": "ml ops", "": "empty key is a tag too"}),
    ),
    (
        "mv aliases and gates",
        mv(
            "promotion",
            {
                "aliases": ["champion", "prod"],
                "gates": [
                    {"metric": "accuracy", "value": 0.9},
                    {"metric": "accuracy", "op": "<", "value": 1.0},
                    {"metric": "val_loss", "op": "<=", "value": 0.5},
                ],
                "compareMetric": "f1",
                "higherIsBetter": True,
            },
        ),
    ),
    (
        "mv gate metric with slash and dash",
        mv("promotion", {"gates": [{"metric": "top-5/accuracy", "value": 0.5}]}),
    ),
    ("mv version largest", mv("version", 2**31 - 1)),
    ("isvc minimal", isvc()),
    ("isvc name at the limit", isvc(name="s" * ISVC_LONGEST)),
    ("isvc alias", isvc("modelRef", {"model": "digits", "alias": "champion"})),
    (
        "isvc min equals max",
        isvc("minReplicas", 3) | {"spec": {**ISVC_SPEC, "minReplicas": 3, "maxReplicas": 3}},
    ),
    (
        "isvc autoscaling cpu above 100 percent",
        isvc("autoscaling", {"metric": "cpu", "target": 150})
        | {"spec": {**ISVC_SPEC, "maxReplicas": 5, "autoscaling": {"metric": "cpu", "target": 150}}},
    ),
    ("isvc canary full traffic", canary(trafficPercent=100)),
    ("isvc canary one step of 100", canary(steps=[100])),
    ("isvc canary steps 1 to 100", canary(steps=[1, 2, 50, 100])),
    (
        "isvc canary without its own modelRef",
        isvc("modelRef", {"model": "digits", "alias": "champion"})
        | {"spec": {"modelRef": {"model": "digits", "alias": "champion"}, "canary": {"steps": [10, 50]}}},
    ),
    (
        "isvc canary of an alias",
        isvc(
            "canary",
            {
                "modelRef": {"model": "digits", "alias": "challenger"},
                "analysis": {
                    "intervalSeconds": 5,
                    "minSuccessRate": 0,
                    "minRequests": 0,
                    "maxP99LatencyMs": 3_600_000,
                    "failureLimit": 100,
                },
            },
        ),
    ),
    (
        "isvc batching off, no wait",
        isvc("batching", {"enabled": False, "maxLatencyMs": 0, "maxBatchSize": 1, "maxQueueSize": 1}),
    ),
    ("isvc gpu with type", isvc("resources", {"gpus": 1, "gpuType": "Tesla-T4"})),
    ("isvc int8 on CPU", isvc("quantization", "int8")),
    ("isvc auth key with dots", isvc("auth", {"secretName": "tokens", "key": "tokens.txt"})),
    (
        "isvc gateway with hostnames",
        isvc(
            "trafficRouting",
            {
                "mode": "gatewayAPI",
                "parentRefs": [{"name": "gw.example", "namespace": "infra", "sectionName": "https"}],
                "hostnames": ["serve.example.com", "*.models.example.com"],
            },
        ),
    ),
    (
        "isvc alerts windows",
        isvc(
            "alerts", {"window": "90s", "pendingFor": "0s", "errorRatePercent": 100, "rollbackAlertFor": "1d"}
        ),
    ),
]


# ---------------------------------------------------------------- fields added after the corpus was written
# Bring-your-own training (volumes, mounts, env valueFrom, pull secrets, service account, queue), custom
# predictors and precision, and the ModelVersion signature.

_CM_VOL: Obj = {"name": "code", "configMap": {"name": "train-code"}}
_MOUNT: Obj = {"name": "code", "mountPath": "/code"}


def byo(**fields: Any) -> Obj:
    """A custom-image TrainingJob with these extra spec fields."""
    return tj(base={**TJ_IMAGE_SPEC, **fields})


def vol(**source: Any) -> Obj:
    return byo(volumes=[{"name": "v", **source}])


def mount(**fields: Any) -> Obj:
    return byo(volumes=[_CM_VOL], volumeMounts=[{**_MOUNT, **fields}])


def env_from(value_from: Obj, **more: Any) -> Obj:
    return byo(env=[{"name": "TOKEN", "valueFrom": value_from, **more}])


_PRED: Obj = {"image": "ghcr.io/example/predictor:1.0"}


def pred(**fields: Any) -> Obj:
    return _obj("InferenceService", "serve", {"predictor": {**_PRED, **fields}})


def sig(inputs: list[Obj], outputs: list[Obj] | None = None) -> Obj:
    return mv("signature", {"inputs": inputs, **({"outputs": outputs} if outputs is not None else {})})


_T: Obj = {"name": "x", "datatype": "FP32", "shape": [-1, 4]}

INVALID += [
    # TrainingJob volumes
    ("tj volume name not a DNS label", vol(name="Code_Dir", emptyDir={}), "spec.volumes[0].name"),
    ("tj volume name reserved", vol(name="checkpoints", emptyDir={}), "spec.volumes[].name"),
    ("tj volume name dshm reserved", vol(name="dshm", emptyDir={}), "spec.volumes[].name"),
    (
        "tj volume names duplicated",
        byo(volumes=[{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]),
        "spec.volumes[1]",
    ),
    ("tj volume with no source", vol(), "spec.volumes[0]"),
    ("tj volume with two sources", vol(emptyDir={}, configMap={"name": "c"}), "spec.volumes[0]"),
    ("tj volume hostPath", vol(hostPath={"path": "/etc"}), "spec.volumes[0].hostPath"),
    ("tj emptyDir negative size", vol(emptyDir={"sizeLimit": "-1Gi"}), "spec.volumes[0].emptyDir.sizeLimit"),
    (
        "tj emptyDir size not a quantity",
        vol(emptyDir={"sizeLimit": "lots"}),
        "spec.volumes[0].emptyDir.sizeLimit",
    ),
    ("tj emptyDir medium unknown", vol(emptyDir={"medium": "HugePages"}), "spec.volumes[0].emptyDir.medium"),
    ("tj emptyDir typo", vol(emptyDir={"sizelimit": "1Gi"}), "spec.volumes[0].emptyDir.sizelimit"),
    ("tj configMap name not DNS", vol(configMap={"name": "Train_Code"}), "spec.volumes[0].configMap.name"),
    ("tj configMap without name", vol(configMap={}), "spec.volumes[0].configMap.name"),
    (
        "tj configMap defaultMode 0777+1",
        vol(configMap={"name": "c", "defaultMode": 512}),
        "spec.volumes[0].configMap.defaultMode",
    ),
    (
        "tj configMap defaultMode negative",
        vol(configMap={"name": "c", "defaultMode": -1}),
        "spec.volumes[0].configMap.defaultMode",
    ),
    (
        "tj configMap item mode too big",
        vol(configMap={"name": "c", "items": [{"key": "a", "path": "a", "mode": 4096}]}),
        "spec.volumes[0].configMap.items[0].mode",
    ),
    (
        "tj configMap item path absolute",
        vol(configMap={"name": "c", "items": [{"key": "a", "path": "/etc/a"}]}),
        "spec.volumes[0].configMap.items[0].path",
    ),
    (
        "tj configMap item path escapes",
        vol(configMap={"name": "c", "items": [{"key": "a", "path": "x/../../a"}]}),
        "spec.volumes[0].configMap.items[0].path",
    ),
    (
        "tj configMap item key with slash",
        vol(configMap={"name": "c", "items": [{"key": "a/b", "path": "a"}]}),
        "spec.volumes[0].configMap.items[0].key",
    ),
    ("tj secret name not DNS", vol(secret={"secretName": "S3 creds"}), "spec.volumes[0].secret.secretName"),
    (
        "tj secret defaultMode 0o1000",
        vol(secret={"secretName": "s", "defaultMode": 0o1000}),
        "spec.volumes[0].secret.defaultMode",
    ),
    ("tj secret name field of a configMap", vol(secret={"name": "s"}), "spec.volumes[0].secret"),
    (
        "tj claim without claimName",
        vol(persistentVolumeClaim={"readOnly": True}),
        "spec.volumes[0].persistentVolumeClaim.claimName",
    ),
    (
        "tj claim name not DNS",
        vol(persistentVolumeClaim={"claimName": "My Data"}),
        "spec.volumes[0].persistentVolumeClaim.claimName",
    ),
    (
        "tj too many volumes",
        byo(volumes=[{"name": f"v{i}", "emptyDir": {}} for i in range(17)]),
        "spec.volumes",
    ),
    # TrainingJob volumeMounts
    ("tj mount path relative", mount(mountPath="code"), "spec.volumeMounts[0].mountPath"),
    ("tj mount path with ..", mount(mountPath="/code/../etc"), "spec.volumeMounts[0].mountPath"),
    ("tj mount path aliasing /data", mount(mountPath="/./data"), "spec.volumeMounts[0].mountPath"),
    ("tj mount path double slash", mount(mountPath="/code//x"), "spec.volumeMounts[0].mountPath"),
    ("tj mount path trailing slash", mount(mountPath="/code/"), "spec.volumeMounts[0].mountPath"),
    (
        "tj mount path is the checkpoints",
        mount(mountPath="/var/run/modelops/checkpoints"),
        "spec.volumeMounts[].mountPath",
    ),
    ("tj mount path is /dev/shm", mount(mountPath="/dev/shm"), "spec.volumeMounts[].mountPath"),
    ("tj mount of no volume", mount(name="missing"), "spec.volumeMounts[].name"),
    ("tj mount without volumes", byo(volumeMounts=[_MOUNT]), "spec.volumeMounts[].name"),
    (
        "tj two mounts at one path",
        byo(volumes=[_CM_VOL], volumeMounts=[_MOUNT, {**_MOUNT, "readOnly": True}]),
        "spec.volumeMounts[1]",
    ),
    ("tj subPath absolute", mount(subPath="/etc"), "spec.volumeMounts[0].subPath"),
    ("tj subPath escapes", mount(subPath="a/../../b"), "spec.volumeMounts[0].subPath"),
    ("tj subPath is ..", mount(subPath=".."), "spec.volumeMounts[0].subPath"),
    # TrainingJob env valueFrom
    (
        "tj env value and valueFrom",
        env_from({"secretKeyRef": {"name": "s", "key": "k"}}, value="x"),
        "spec.env[]",
    ),
    ("tj env valueFrom empty", env_from({}), "spec.env[].valueFrom"),
    (
        "tj env valueFrom two refs",
        env_from({"secretKeyRef": {"name": "s", "key": "k"}, "configMapKeyRef": {"name": "c", "key": "k"}}),
        "spec.env[].valueFrom",
    ),
    (
        "tj env secret name not DNS",
        env_from({"secretKeyRef": {"name": "S_3", "key": "k"}}),
        "spec.env[0].valueFrom.secretKeyRef.name",
    ),
    (
        "tj env secret key with slash",
        env_from({"secretKeyRef": {"name": "s", "key": "a/b"}}),
        "spec.env[0].valueFrom.secretKeyRef.key",
    ),
    (
        "tj env secret key empty",
        env_from({"secretKeyRef": {"name": "s", "key": ""}}),
        "spec.env[0].valueFrom.secretKeyRef.key",
    ),
    (
        "tj env configMap without key",
        env_from({"configMapKeyRef": {"name": "c"}}),
        "spec.env[0].valueFrom.configMapKeyRef.key",
    ),
    (
        "tj env fieldRef empty path",
        env_from({"fieldRef": {"fieldPath": ""}}),
        "spec.env[0].valueFrom.fieldRef.fieldPath",
    ),
    (
        "tj env name duplicated",
        byo(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.env[1]",
    ),
    (
        "tj env fieldRef no pod field",
        env_from({"fieldRef": {"fieldPath": "spec.containers"}}),
        "spec.env[0].valueFrom.fieldRef.fieldPath",
    ),
    (
        "tj env fieldRef all labels",
        env_from({"fieldRef": {"fieldPath": "metadata.labels"}}),
        "spec.env[0].valueFrom.fieldRef.fieldPath",
    ),
    (
        "tj env fieldRef apiVersion v2",
        env_from({"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v2"}}),
        "spec.env[0].valueFrom.fieldRef.apiVersion",
    ),
    (
        "tj env resourceFieldRef gpus",
        env_from({"resourceFieldRef": {"resource": "limits.nvidia.com/gpu"}}),
        "spec.env[0].valueFrom.resourceFieldRef.resource",
    ),
    (
        "tj env resourceFieldRef negative divisor",
        env_from({"resourceFieldRef": {"resource": "limits.cpu", "divisor": "-1"}}),
        "spec.env[0].valueFrom.resourceFieldRef.divisor",
    ),
    # TrainingJob pull secrets, service account, queue
    (
        "tj pull secret name not DNS",
        byo(imagePullSecrets=[{"name": "Reg Creds"}]),
        "spec.imagePullSecrets[0].name",
    ),
    ("tj pull secret empty name", byo(imagePullSecrets=[{"name": ""}]), "spec.imagePullSecrets[0].name"),
    (
        "tj pull secrets duplicated",
        byo(imagePullSecrets=[{"name": "reg"}, {"name": "reg"}]),
        "spec.imagePullSecrets[1]",
    ),
    (
        "tj too many pull secrets",
        byo(imagePullSecrets=[{"name": f"r{i}"} for i in range(9)]),
        "spec.imagePullSecrets",
    ),
    ("tj service account not DNS", byo(serviceAccountName="Trainer_SA"), "spec.serviceAccountName"),
    ("tj service account empty", byo(serviceAccountName=""), "spec.serviceAccountName"),
    ("tj queue name with a dot", byo(queueName="team.a"), "spec.queueName"),
    ("tj queue name uppercase", byo(queueName="TeamA"), "spec.queueName"),
    # InferenceService custom predictor
    ("isvc predictor image with spaces", pred(image="my image:1"), "spec.predictor.image"),
    ("isvc predictor image uppercase repo", pred(image="ghcr.io/Example/P:1"), "spec.predictor.image"),
    ("isvc predictor image empty", pred(image=""), "spec.predictor.image"),
    ("isvc predictor port 0", pred(port=0), "spec.predictor.port"),
    ("isvc predictor port 65536", pred(port=65536), "spec.predictor.port"),
    ("isvc predictor metrics port 70000", pred(metrics={"port": 70000}), "spec.predictor.metrics.port"),
    ("isvc predictor protocol grpc", pred(protocol="grpc"), "spec.predictor.protocol"),
    (
        "isvc predictor probe period 0",
        pred(readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 0}),
        "spec.predictor.readinessProbe.periodSeconds",
    ),
    (
        "isvc predictor probe failureThreshold 0",
        pred(livenessProbe={"tcpSocket": {"port": 8080}, "failureThreshold": 0}),
        "spec.predictor.livenessProbe.failureThreshold",
    ),
    (
        "isvc predictor probe successThreshold 0",
        pred(readinessProbe={"tcpSocket": {"port": 8080}, "successThreshold": 0}),
        "spec.predictor.readinessProbe.successThreshold",
    ),
    (
        "isvc predictor probe timeout 0",
        pred(readinessProbe={"tcpSocket": {"port": 8080}, "timeoutSeconds": 0}),
        "spec.predictor.readinessProbe.timeoutSeconds",
    ),
    (
        "isvc predictor probe negative delay",
        pred(readinessProbe={"tcpSocket": {"port": 8080}, "initialDelaySeconds": -5}),
        "spec.predictor.readinessProbe.initialDelaySeconds",
    ),
    (
        "isvc predictor liveness successThreshold 2",
        pred(livenessProbe={"tcpSocket": {"port": 8080}, "successThreshold": 2}),
        "spec.predictor.livenessProbe.successThreshold",
    ),
    (
        "isvc predictor probe without handler",
        pred(readinessProbe={"periodSeconds": 5}),
        "spec.predictor.readinessProbe",
    ),
    (
        "isvc predictor probe two handlers",
        pred(readinessProbe={"tcpSocket": {"port": 8080}, "httpGet": {"port": 8080}}),
        "spec.predictor.readinessProbe",
    ),
    (
        "isvc predictor probe port 0",
        pred(readinessProbe={"httpGet": {"path": "/", "port": 0}}),
        "spec.predictor.readinessProbe.httpGet.port",
    ),
    (
        "isvc predictor probe unknown port name",
        pred(readinessProbe={"httpGet": {"path": "/", "port": "web"}}),
        "spec.predictor.readinessProbe.httpGet.port",
    ),
    (
        "isvc predictor probe scheme ftp",
        pred(readinessProbe={"httpGet": {"port": 8080, "scheme": "FTP"}}),
        "spec.predictor.readinessProbe.httpGet.scheme",
    ),
    (
        "isvc predictor probe typo",
        pred(readinessProbe={"tcpSocket": {"port": 8080}, "periodSecond": 5}),
        "spec.predictor.readinessProbe.periodSecond",
    ),
    (
        "isvc predictor metric name with dash",
        pred(metrics={"requestsTotal": "http-requests"}),
        "spec.predictor.metrics.requestsTotal",
    ),
    (
        "isvc predictor histogram name with space",
        pred(metrics={"latencyHistogram": "latency seconds"}),
        "spec.predictor.metrics.latencyHistogram",
    ),
    (
        "isvc predictor code label with colon",
        pred(metrics={"codeLabel": "status:code"}),
        "spec.predictor.metrics.codeLabel",
    ),
    (
        "isvc predictor env secret key with slash",
        pred(env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}}]),
        "spec.predictor.env[0].valueFrom.secretKeyRef.key",
    ),
    (
        "isvc predictor env two refs",
        pred(
            env=[
                {
                    "name": "T",
                    "valueFrom": {
                        "secretKeyRef": {"name": "s", "key": "k"},
                        "fieldRef": {"fieldPath": "metadata.name"},
                    },
                }
            ]
        ),
        "valueFrom",
    ),
    (
        "isvc predictor env fieldRef no pod field",
        pred(env=[{"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}]),
        "spec.predictor.env[0].valueFrom.fieldRef.fieldPath",
    ),
    (
        "isvc predictor env duplicated",
        pred(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.predictor.env[1]",
    ),
    (
        "isvc predictor with fp16 on a GPU",
        _set(_set(pred(), "spec.precision", "fp16"), "spec.resources", {"gpus": 1}),
        "spec.precision",
    ),
    ("isvc predictor with int8", _set(pred(), "spec.quantization", "int8"), "spec.quantization"),
    (
        "isvc predictor probe on a metrics port that does not exist",
        pred(readinessProbe={"httpGet": {"path": "/ready", "port": "metrics"}}),
        "spec.predictor",
    ),
    (
        "isvc predictor liveness on the metrics port that is the http port",
        pred(metrics={"port": 8080}, livenessProbe={"tcpSocket": {"port": "metrics"}}),
        "spec.predictor",
    ),
    (
        "isvc predictor readiness with a grace period",
        pred(readinessProbe={"tcpSocket": {"port": 8080}, "terminationGracePeriodSeconds": 5}),
        "spec.predictor.readinessProbe.terminationGracePeriodSeconds",
    ),
    # InferenceService precision
    ("isvc fp16 without GPUs", isvc("precision", "fp16"), "spec.precision"),
    ("isvc bf16 without GPUs", isvc("precision", "bf16"), "spec.precision"),
    (
        "isvc int8 with bf16",
        _set(isvc("precision", "bf16"), "spec.quantization", "int8"),
        "spec.precision",
    ),
    ("isvc precision fp8", isvc("precision", "fp8"), "spec.precision"),
    # ModelVersion signature
    ("mv signature no inputs", sig([]), "spec.signature.inputs"),
    ("mv signature empty tensor name", sig([{**_T, "name": ""}]), "spec.signature.inputs[0].name"),
    (
        "mv signature input names duplicated",
        sig([_T, {**_T, "datatype": "INT64"}]),
        "spec.signature.inputs[1]",
    ),
    (
        "mv signature output names duplicated",
        sig([_T], [{**_T, "name": "y"}, {**_T, "name": "y"}]),
        "spec.signature.outputs[1]",
    ),
    (
        "mv signature datatype lowercase",
        sig([{**_T, "datatype": "fp32"}]),
        "spec.signature.inputs[0].datatype",
    ),
    ("mv signature datatype FLOAT", sig([{**_T, "datatype": "FLOAT"}]), "spec.signature.inputs[0].datatype"),
    ("mv signature shape -2", sig([{**_T, "shape": [-2, 4]}]), "spec.signature.inputs[0].shape[0]"),
    ("mv signature rank 17", sig([{**_T, "shape": [1] * 17}]), "spec.signature.inputs[0].shape"),
    (
        "mv signature shape not integers",
        sig([{**_T, "shape": ["batch", 4]}]),
        "spec.signature.inputs[0].shape[0]",
    ),
    ("mv signature 65 inputs", sig([{**_T, "name": f"x{i}"} for i in range(65)]), "spec.signature.inputs"),
    (
        "mv signature tensor without datatype",
        sig([{"name": "x", "shape": [1]}]),
        "spec.signature.inputs[0].datatype",
    ),
    ("mv signature tensor name with newline", sig([{**_T, "name": "x\ny"}]), "spec.signature.inputs[0].name"),
]

VALID += [
    (
        "tj byo every field",
        byo(
            volumes=[
                {
                    "name": "code",
                    "configMap": {
                        "name": "train.code",
                        "defaultMode": 0o444,
                        "optional": True,
                        "items": [{"key": "train.py", "path": "pkg/train.py", "mode": 0}],
                    },
                },
                {"name": "creds", "secret": {"secretName": "s3", "defaultMode": 0o777}},
                {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                {"name": "disk", "emptyDir": {"medium": "", "sizeLimit": 0}},
                {"name": "more-data", "persistentVolumeClaim": {"claimName": "data.v2", "readOnly": True}},
                {"name": "proj", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
            ],
            volumeMounts=[
                {"name": "code", "mountPath": "/code", "readOnly": True},
                {"name": "code", "mountPath": "/opt/code..v1", "subPath": "pkg/..hidden"},
                {"name": "creds", "mountPath": "/var/run/secrets/s3"},
                {"name": "scratch", "mountPath": "/data2"},
                {"name": "more-data", "mountPath": "/data/extra"},
            ],
            env=[
                {"name": "EMPTY"},
                {
                    "name": "KEY",
                    "valueFrom": {"secretKeyRef": {"name": "s3.creds", "key": "AWS_ACCESS_KEY_ID"}},
                },
                {
                    "name": "CFG",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "cfg", "key": ".hidden-key_1", "optional": True}
                    },
                },
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {
                    "name": "MEM",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                },
            ],
            imagePullSecrets=[{"name": "reg.example.com"}, {"name": "reg-2"}],
            serviceAccountName="trainer.sa",
            automountServiceAccountToken=False,
            queueName="team-a",
        ),
    ),
    (
        "tj byo every pod field",
        byo(
            env=[
                {"name": f"F{i}", "valueFrom": {"fieldRef": {"fieldPath": path, "apiVersion": "v1"}}}
                for i, path in enumerate(
                    [
                        "metadata.namespace",
                        "metadata.uid",
                        "metadata.labels['app.kubernetes.io/name']",
                        "metadata.annotations['a']",
                        "spec.nodeName",
                        "spec.serviceAccountName",
                        "status.hostIP",
                        "status.hostIPs",
                        "status.podIP",
                        "status.podIPs",
                    ]
                )
            ]
            + [
                {"name": f"R{i}", "valueFrom": {"resourceFieldRef": {"resource": r}}}
                for i, r in enumerate(["requests.cpu", "limits.ephemeral-storage", "limits.hugepages-2Mi"])
            ]
        ),
    ),
    ("tj byo sixteen volumes", byo(volumes=[{"name": f"v{i}", "emptyDir": {}} for i in range(16)])),
    ("isvc predictor minimal", pred()),
    (
        "isvc predictor every field",
        pred(
            image="registry.local:5000/team/predictor@sha256:" + "a" * 64,
            command=["python", "-m", "serve"],
            port=1,
            protocol="http",
            env=[
                {"name": "T", "valueFrom": {"secretKeyRef": {"name": "tok.ens", "key": "token.txt"}}},
                {"name": "E"},
            ],
            readinessProbe={
                "httpGet": {
                    "path": "/ready",
                    "port": "http",
                    "scheme": "HTTPS",
                    "httpHeaders": [{"name": "X-Probe", "value": ""}],
                },
                "periodSeconds": 1,
                "failureThreshold": 1,
                "successThreshold": 3,
                "initialDelaySeconds": 0,
                "timeoutSeconds": 1,
            },
            livenessProbe={
                "grpc": {"port": 65535},
                "successThreshold": 1,
                "terminationGracePeriodSeconds": 5,
            },
            metrics={
                "port": 65535,
                "path": "/m",
                "requestsTotal": "ns:http_requests_total",
                "latencyHistogram": "_latency",
                "codeLabel": "_code",
            },
        ),
    ),
    ("isvc predictor exec probe", pred(livenessProbe={"exec": {"command": ["true"]}})),
    (
        "isvc predictor probe on its own metrics port",
        pred(metrics={"port": 9090}, livenessProbe={"httpGet": {"path": "/metrics", "port": "metrics"}}),
    ),
    ("isvc bf16 on a GPU", _set(isvc("precision", "bf16"), "spec.resources", {"gpus": 1})),
    ("isvc fp16 on a GPU", _set(isvc("precision", "fp16"), "spec.resources", {"gpus": 2})),
    (
        "mv signature edge cases",
        sig(
            [
                {"name": "x", "datatype": "BYTES", "shape": []},
                {"name": "input.1:0", "datatype": "BF16", "shape": [-1] * 16},
            ],
            [{"name": "x", "datatype": "BOOL", "shape": [0, 2147483647]}],
        ),
    ),
    ("mv signature 64 inputs", sig([{**_T, "name": f"x{i}"} for i in range(64)])),
]


# ---------------------------------------------------------------- TuningJob
_LR: Obj = {
    "name": "lr",
    "path": "spec.hyperparameters.learningRate",
    "type": "float",
    "low": 1e-4,
    "high": 0.1,
}
_CAT: Obj = {
    "name": "arch",
    "path": "spec.model.architecture",
    "type": "categorical",
    "choices": ["mlp", "cnn"],
}
_TEMPLATE: Obj = {"spec": TJ_SPEC}


def tune(space: list[Obj] | None = None, name: str = "search", **spec: Any) -> Obj:
    base: Obj = {
        "searchSpace": space if space is not None else [_LR],
        "objective": {"metric": "accuracy", "direction": "maximize"},
        "trialTemplate": _TEMPLATE,
    }
    return _obj("TuningJob", name, {**base, **spec})


def space(**changes: Any) -> list[Obj]:
    p = {**_LR, **changes}
    return [{k: v for k, v in p.items() if v is not None}]


def categorical(choices: list[Any]) -> list[Obj]:
    return [{**_CAT, "choices": choices}]


INVALID += [
    ("tune name leaves no room for -trial-<n>", tune(name="s" * 41), "metadata.name"),
    ("tune name starts with a digit", tune(name="1search"), "metadata.name"),
    ("tune low above high", tune(space(low=0.5, high=0.1)), "spec.searchSpace[0]"),
    ("tune low equals high", tune(space(low=0.1, high=0.1)), "spec.searchSpace[0]"),
    ("tune log from zero", tune(space(low=0.0, log=True)), "spec.searchSpace[0]"),
    ("tune log from a negative", tune(space(low=-1.0, log=True)), "spec.searchSpace[0]"),
    ("tune log with a step", tune(space(log=True, step=0.01)), "spec.searchSpace[0]"),
    ("tune step 0", tune(space(step=0)), "spec.searchSpace[0].step"),
    ("tune negative step", tune(space(step=-0.1)), "spec.searchSpace[0].step"),
    (
        "tune int with a fractional step",
        tune(space(type="int", low=1, high=10, step=0.5)),
        "spec.searchSpace[0]",
    ),
    ("tune int with a fractional bound", tune(space(type="int", low=1.5, high=10)), "spec.searchSpace[0]"),
    ("tune range without high", tune(space(high=None)), "spec.searchSpace[0]"),
    ("tune categorical without choices", tune(categorical([])), "spec.searchSpace[0]"),
    ("tune categorical values repeated", tune(categorical(["mlp", "mlp"])), "spec.searchSpace[0].choices[1]"),
    ("tune categorical empty value", tune(categorical([""])), "spec.searchSpace[0].choices[0]"),
    ("tune categorical with bounds", tune([{**_CAT, "low": 1, "high": 2}]), "spec.searchSpace[0]"),
    ("tune choices on a range", tune(space(choices=["a"])), "spec.searchSpace[0]"),
    (
        "tune parameter names repeated",
        tune([_LR, {**_LR, "path": "spec.hyperparameters.weightDecay"}]),
        "spec.searchSpace[1]",
    ),
    ("tune two parameters on one path", tune([_LR, {**_LR, "name": "lr2"}]), "spec.searchSpace[].path"),
    ("tune parameter name with a dash", tune(space(name="learning-rate")), "spec.searchSpace[0].name"),
    ("tune path outside spec", tune(space(path="metadata.name")), "spec.searchSpace[0].path"),
    ("tune path template string", tune(space(path="${trialParameters.lr}")), "spec.searchSpace[0].path"),
    ("tune unknown type", tune(space(type="uniform")), "spec.searchSpace[0].type"),
    ("tune empty search space", tune([]), "spec.searchSpace"),
    ("tune 33 parameters", tune([{**_LR, "name": f"p{i}"} for i in range(33)]), "spec.searchSpace"),
    ("tune parallel above max", tune(parallelTrials=5, maxTrials=3), "spec.parallelTrials"),
    ("tune zero max trials", tune(maxTrials=0), "spec.maxTrials"),
    ("tune zero parallel trials", tune(parallelTrials=0), "spec.parallelTrials"),
    (
        "tune objective metric unknown",
        tune(objective={"metric": "val-acc", "direction": "maximize"}),
        "spec.objective.metric",
    ),
    ("tune objective without direction", tune(objective={"metric": "accuracy"}), "spec.objective.direction"),
    (
        "tune pruning a final-only metric",
        tune(objective={"metric": "f1", "direction": "maximize"}, pruner={"name": "median"}),
        "spec.objective.metric",
    ),
    ("tune grid over a continuous float", tune(algorithm={"name": "grid"}), "spec.algorithm.name"),
    (
        "tune cmaes over categories only",
        tune(categorical(["mlp"]), algorithm={"name": "cmaes"}),
        "spec.algorithm.name",
    ),
    (
        "tune hyperband max below min",
        tune(pruner={"name": "hyperband", "minResource": 4, "maxResource": 3}),
        "spec.pruner",
    ),
    (
        "tune registration name too long",
        tune(registration={"modelName": "m" * 58}),
        "spec.registration.modelName",
    ),
    (
        "tune trial label value invalid",
        tune(trialTemplate={**_TEMPLATE, "metadata": {"labels": {"team": "a b"}}}),
        "spec.trialTemplate.metadata.labels.team",
    ),
    (
        "tune template shares a claim",
        tune(trialTemplate={"spec": {**TJ_SPEC, "checkpoint": {"storage": {"existingClaim": "ckpt"}}}}),
        "spec.trialTemplate.spec.checkpoint.storage.existingClaim",
    ),
    (
        "tune template not a TrainingJob",
        tune(trialTemplate={"spec": {"model": {"architecture": "mlp"}}}),
        "spec.dataset",
    ),
]

VALID += [
    ("tune minimal", tune()),
    ("tune name at the limit", tune(name="s" * 40)),
    ("tune grid with steps", tune(space(step=0.001), algorithm={"name": "grid"})),
    (
        "tune every kind of parameter",
        tune(
            [
                {**_LR, "log": True},
                {
                    "name": "epochs",
                    "path": "spec.hyperparameters.epochs",
                    "type": "int",
                    "low": 1,
                    "high": 20,
                    "step": 2,
                },
                {
                    "name": "wd",
                    "path": "spec.hyperparameters.weightDecay",
                    "type": "float",
                    "low": 0.0,
                    "high": 0.1,
                    "step": 0.01,
                },
                {**_CAT, "choices": ["mlp", "cnn", "transformer"]},
            ],
            algorithm={"name": "tpe", "seed": 0, "startupTrials": 0},
            parallelTrials=3,
            maxTrials=3,
            trialTemplate={**_TEMPLATE, "metadata": {"labels": {"example.com/team": "a.b_c", "empty": ""}}},
            registration={"modelName": "m" * 57},
        ),
    ),
]
