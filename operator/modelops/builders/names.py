"""How long an object's name may be, derived from the names of the children the builders give it.

A name the API server accepts (up to 253 characters) is not one the operator can use: a TrainingJob
`<name>` gets a `<name>-workers` Service (a DNS label, 63 characters), rank pods whose hostname is
`<name>-<rank>`, and label values carrying the name (63). An object whose children cannot be created
would hang, so each CRD refuses such names at `kubectl apply` (`api.common.name_rules`), with the limit
from `api.common.MAX_NAME_LENGTH`.

This module keeps that limit honest: for a candidate name it builds the real manifests of every child
(with the longest settings: 256 ranks, every backup method, alerts on, a canary, a restore) and checks
every name, hostname and label value in them against the Kubernetes rule for its place. A unit test
compares the longest name that passes with the limit the CRD enforces, so a builder change that
lengthens a suffix fails that test instead of a user's apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.modelversion import ModelVersionSpec
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import alerts, backup
from modelops.builders import inferenceservice as isvc
from modelops.builders import modelversion as mv
from modelops.builders import trainingjob as tj

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# The longest suffix Kubernetes appends to a name of this kind when it creates the kind's own
# children, and the rule of the name itself. A Deployment's ReplicaSet is `<name>-<hash>` (up to 10);
# its pods are cut by the API server to fit. A CronJob's Jobs are `<name>-<minutes>` (11): the API
# server refuses CronJob names over 52 for that reason. A Job's name is a label value of its pods.
_NAME_RULES: dict[str, tuple[int, re.Pattern[str]]] = {
    "Service": (63, DNS_1035_LABEL),
    "Job": (63, DNS_LABEL),
    "CronJob": (52, DNS_SUBDOMAIN),
    "Deployment": (253 - 11, DNS_SUBDOMAIN),
}
_SUBDOMAIN = (253, DNS_SUBDOMAIN)

Check = tuple[str, str, int, re.Pattern[str]]  # (what, value, longest, pattern)


def _walk(obj: Any, where: str) -> Iterator[Check]:
    """Every name-like field of a manifest: names, hostnames and label values, also in templates."""
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        kind = obj.get("kind")
        if isinstance(meta, dict) and kind and "name" in meta:
            longest, pattern = _NAME_RULES.get(kind, _SUBDOMAIN)
            yield f"{where}{kind} name", meta["name"], longest, pattern
        for key in ("hostname", "subdomain"):
            if isinstance(obj.get(key), str):
                yield f"{where}pod {key}", obj[key], 63, DNS_LABEL
        for key in ("labels", "matchLabels", "selector"):
            labels = obj.get(key)
            if isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values()):
                for label, value in labels.items():
                    yield f"{where}label {label}", value, 63, LABEL_VALUE
        for value in obj.values():
            yield from _walk(value, where)
    elif isinstance(obj, list):
        for item in obj:
            yield from _walk(item, where)


def problems(manifests: list[dict[str, Any]]) -> list[str]:
    """What in these manifests Kubernetes would refuse because of a name's length or form."""
    out = []
    for what, value, longest, pattern in _walk(manifests, ""):
        if len(value) > longest or not pattern.match(value):
            out.append(f"{what} {value!r} ({len(value)} characters, at most {longest})")
    return out


def _owner(kind: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default", "uid": "u"},
    }


_BACKUP = {
    "schedule": "0 * * * *",
    "methods": ["copy", "volumeSnapshot"],
    "destination": {"claimName": "backups", "size": "1Gi"},
}


def trainingjob_children(name: str) -> list[dict[str, Any]]:
    """Every child of a TrainingJob named `name`, with 256 ranks, backups, alerts and its ModelVersion."""
    spec = TrainingJobSpec.model_validate(
        {
            "model": {"architecture": "mlp"},
            "dataset": {"builtin": "digits"},
            "distributed": {"nodes": 256},
            "backup": _BACKUP,
        }
    )
    owner = backup.Owner("TrainingJob", name, "default", "u")
    assert spec.backup is not None
    pvc = tj.checkpoint_pvc(name, "default", "u", spec)
    children = [
        tj.headless_service(name, "default", "u"),
        *tj.pods(name, "default", "u", spec),
        *([pvc] if pvc else []),
        alerts.prometheus_rule(
            _owner("TrainingJob", name), alerts.training_rule_groups(name, "default", spec)
        ),
        alerts.rules_configmap(
            _owner("TrainingJob", name), alerts.training_rule_groups(name, "default", spec)
        ),
        backup.cronjob(owner, spec.backup, backup.Source(tj.pvc_name(name, spec))),
        backup.volume_snapshot(owner, spec.backup, tj.pvc_name(name, spec), at_compact="20261231235959"),
        backup.claim_from_snapshot(owner, "snap", size="1Gi"),
    ]
    # A successful job registers `<model>-<version>`, the model defaulting to the job's name: it must
    # itself be a valid ModelVersion name (up to version 99999).
    version = f"{name}-99999"
    children.append(
        {"apiVersion": "modelops.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": version}}
    )
    children.extend(modelversion_children(version))
    return children


def modelversion_children(name: str) -> list[dict[str, Any]]:
    """Every child of a ModelVersion named `name`: verification pod, backups, restores."""
    spec = ModelVersionSpec.model_validate(
        {"model": "m", "source": {"uri": "pvc://models/m.pt"}, "backup": _BACKUP}
    )
    owner = backup.Owner("ModelVersion", name, "default", "u")
    assert spec.backup is not None
    return [
        mv.verification_pod(
            name,
            "default",
            "u",
            location=mv.Location("models", "m.pt"),
            sha256=None,
            fmt="torchscript",
            request="r",
        ),
        backup.cronjob(owner, spec.backup, backup.Source("models", "m.pt")),
        backup.volume_snapshot(owner, spec.backup, "models", at_compact="20261231235959"),
        backup.claim_from_snapshot(owner, "snap", size="1Gi"),
        backup.restore_job(
            owner, token="abcdef12", target_claim="models", target_path="m", expect={"m.pt": "0" * 64}
        ),
        # Served by an InferenceService, the version's name is a label value of the serving pods.
        {"kind": "Pod", "metadata": {"name": "p", "labels": {isvc.LABEL_MODELVERSION: name}}},
    ]


def inferenceservice_children(name: str) -> list[dict[str, Any]]:
    """Every child of an InferenceService named `name`, with a canary and Gateway API routing."""
    spec = InferenceServiceSpec.model_validate(
        {
            "modelRef": {"model": "m", "version": 1},
            "maxReplicas": 3,
            "canary": {"modelRef": {"model": "m", "version": 2}},
            "trafficRouting": {"mode": "gatewayAPI", "parentRefs": [{"name": "gw"}]},
        }
    )
    served = isvc.Served("m-1", 1, "0" * 64, "models", "m.pt")
    children = [
        *(isvc.deployment(name, "default", "u", spec, served, track) for track in isvc.TRACKS),
        isvc.service(name, "default", "u"),
        *(isvc.service(name, "default", "u", track=track) for track in isvc.TRACKS),
        isvc.hpa(name, "default", "u", spec),
        isvc.pdb(name, "default", "u"),
        isvc.http_route(name, "default", "u", spec, 10),
        alerts.prometheus_rule(
            _owner("InferenceService", name), alerts.serving_rule_groups(name, "default", spec)
        ),
        alerts.rules_configmap(
            _owner("InferenceService", name), alerts.serving_rule_groups(name, "default", spec)
        ),
    ]
    return children


def name_problems(children: Callable[[str], list[dict[str, Any]]], name: str) -> list[str]:
    """What would be refused among the children of an object called `name` (a builder's refusal too)."""
    try:
        return problems(children(name))
    except ValueError as error:  # a builder's own model refusing the name (pydantic's ValidationError)
        return [f"a builder refuses the name: {error}"]


def longest_name(children: Callable[[str], list[dict[str, Any]]], longest: int = 253) -> int:
    """The longest name whose children all have valid names: the limit the CRD must enforce.

    Names only get worse with length, so a binary search over 1..253 finds it.
    """
    good, bad = 0, longest + 1
    while bad - good > 1:
        middle = (good + bad) // 2
        if name_problems(children, "a" * middle):
            bad = middle
        else:
            good = middle
    if good == 0:
        raise AssertionError("no name works: a builder makes an invalid name whatever the length")
    return good


LONGEST_NAME: dict[str, Callable[[], int]] = {
    "TrainingJob": lambda: longest_name(trainingjob_children),
    "ModelVersion": lambda: longest_name(modelversion_children),
    "InferenceService": lambda: longest_name(inferenceservice_children),
}
