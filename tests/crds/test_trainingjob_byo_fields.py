"""The bring-your-own fields of a TrainingJob (env valueFrom, volumes, mounts, pull secrets, service
account, Kueue queue): what the API server accepts, and what it refuses naming the field.

Through `modelops_local.schema`, the validation, defaulting and CEL evaluation the local API server applies.
"""

from __future__ import annotations

from typing import Any

import pytest
from refusals import check_refused

from modelops.api import TRAININGJOB
from modelops.api.crdgen import crd
from modelops_local.schema import validate_custom_resource

Obj = dict[str, Any]
SCHEMA: Obj = crd(TRAININGJOB)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

CODE = [{"name": "code", "configMap": {"name": "train-script"}}]
CODE_MOUNT = [{"name": "code", "mountPath": "/code", "readOnly": True}]


def tj(**spec: Any) -> Obj:
    base: Obj = {"image": "ghcr.io/modelops/worker:0.1.0", "command": ["python", "/code/train.py"]}
    base.update(spec)
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "byo", "namespace": "default"},
        "spec": base,
    }


def errors(obj: Obj) -> list[str]:
    return [str(e) for e in validate_custom_resource(SCHEMA, obj).errors]


def test_a_full_bring_your_own_job_is_accepted() -> None:
    obj = tj(
        env=[
            {"name": "PLAIN", "value": "1"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub-token", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        volumes=[*CODE, {"name": "creds", "secret": {"secretName": "s3", "defaultMode": 0o400}}],
        volumeMounts=[*CODE_MOUNT, {"name": "creds", "mountPath": "/etc/creds"}],
        imagePullSecrets=[{"name": "registry"}],
        serviceAccountName="trainer",
        queueName="team-a",
    )
    assert errors(obj) == []


BAD: list[tuple[str, Obj, str, str]] = [
    (
        "value and valueFrom",
        tj(env=[{"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
        "spec.env[0]",
        "not both",
    ),
    (
        "valueFrom with two sources",
        tj(
            env=[
                {
                    "name": "X",
                    "valueFrom": {
                        "secretKeyRef": {"name": "a", "key": "k"},
                        "configMapKeyRef": {"name": "b", "key": "k"},
                    },
                }
            ]
        ),
        "spec.env[0].valueFrom",
        "exactly one",
    ),
    (
        "a secret key without a name",
        tj(env=[{"name": "X", "valueFrom": {"secretKeyRef": {"key": "k"}}}]),
        "spec.env[0].valueFrom.secretKeyRef.name",
        "",
    ),
    (
        "a volume with no source",
        tj(volumes=[{"name": "code"}]),
        "spec.volumes[0]",
        "exactly one source",
    ),
    (
        "a volume taking the operator's name",
        tj(volumes=[{"name": "checkpoints", "emptyDir": {}}]),
        "spec",
        "the operator's own volumes",
    ),
    (
        "a mount of a volume that is not there",
        tj(volumes=CODE, volumeMounts=[{"name": "elsewhere", "mountPath": "/x"}]),
        "spec",
        "must name a volume of spec.volumes",
    ),
    (
        "a mount over the checkpoints",
        tj(volumes=CODE, volumeMounts=[{"name": "code", "mountPath": "/var/run/modelops/checkpoints"}]),
        "spec",
        "the operator's own mounts",
    ),
    (
        "a relative mount path",
        tj(volumes=CODE, volumeMounts=[{"name": "code", "mountPath": "code"}]),
        "spec.volumeMounts[0].mountPath",
        "",
    ),
    ("a service account name with capitals", tj(serviceAccountName="Trainer"), "spec.serviceAccountName", ""),
    ("a pull secret without a name", tj(imagePullSecrets=[{}]), "spec.imagePullSecrets[0].name", ""),
    ("a queue name that cannot be a label value", tj(queueName="Team_A"), "spec.queueName", ""),
]


@pytest.mark.parametrize(("what", "obj", "field", "phrase"), BAD, ids=[b[0] for b in BAD])
def test_bad_bring_your_own_fields_are_refused_naming_the_field(
    what: str, obj: Obj, field: str, phrase: str
) -> None:
    check_refused(what, errors(obj), field, phrase)
