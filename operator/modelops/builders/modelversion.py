"""The child of a ModelVersion: a short-lived Pod that runs `modelops-worker verify` on the artifact.

A bare Pod with `restartPolicy: Never` rather than a batch/v1 Job: the operator reads the one
container's termination message and deletes the pod, so a Job's retries and history would only get
in the way. The artifact's claim is mounted read-only: verifying can never change what it checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import modelops.builders as builders
from modelops import GROUP
from modelops.builders import storage as storage_builders
from modelops.builders.trainingjob import RUN_AS_USER, worker_image

KIND = "ModelVersion"
# Its own key: serving pods carry `modelops.dev/modelversion`, and must never match a verifier query.
LABEL_VERIFIES = f"{GROUP}/verifies"
CONTAINER = "verify"
ARTIFACT_MOUNT = "/var/run/modelops/artifact"
# Enough to hash and load a multi-GB artifact on a slow volume; a stuck pod is failed after it.
ACTIVE_DEADLINE_SECONDS = 1800


@dataclasses.dataclass(frozen=True)
class Location:
    """An artifact on a PersistentVolumeClaim of the version's namespace, or in object storage
    (`source_uri`, fetched by the verification pod with `credentials_secret`; `claim` is then empty)."""

    claim: str
    path: str
    source_uri: str | None = None
    credentials_secret: str | None = None

    @property
    def uri(self) -> str:
        return self.source_uri or f"pvc://{self.claim}/{self.path}"

    @property
    def on_claim(self) -> bool:
        return self.source_uri is None


def pod_name(name: str, request: str) -> str:
    """One pod name per verification request, so a new request never reads an old pod's answer."""
    suffix = hashlib.sha256(request.encode()).hexdigest()[:6]
    return f"{name[:49].rstrip('-')}-verify-{suffix}"


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return builders.owner_reference(KIND, name, uid)


def verification_pod(
    name: str,
    namespace: str,
    uid: str,
    *,
    location: Location,
    sha256: str | None,
    fmt: str,
    request: str,
    image: str | None = None,
    signature: str | None = None,
) -> dict[str, Any]:
    """The pod that verifies `location` (digest, load, smoke inference) and reports in its termination log."""
    args = ["verify", "--artifact", f"{ARTIFACT_MOUNT}/{location.path}", "--format", fmt]
    fetch = storage_builders.credentials(location.credentials_secret)
    if not location.on_claim:
        # Fetched into the pod's own volume first, the digest checked while streaming (docs/storage.md).
        args += ["--artifact-uri", str(location.source_uri), *fetch.args()]
    if sha256:
        args += ["--sha256", sha256]
    if signature:
        # spec.signature as JSON: the verifier smoke-runs zeros of exactly this signature.
        args += ["--signature", signature]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image or worker_image(),
        "command": ["modelops-worker"],
        "args": args,
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "2Gi"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        "volumeMounts": [
            {"name": "artifact", "mountPath": ARTIFACT_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    artifact_volume: dict[str, Any] = (
        {"name": "artifact", "persistentVolumeClaim": {"claimName": location.claim, "readOnly": True}}
        if location.on_claim
        else {"name": "artifact", "emptyDir": {}}
    )
    if not location.on_claim:
        container["volumeMounts"][0]["readOnly"] = False
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(name, request),
            "namespace": namespace,
            "labels": {
                LABEL_VERIFIES: name,
                "app.kubernetes.io/component": "verifier",
                **builders.MANAGED_BY,
            },
            "ownerReferences": [owner_reference(name, uid)],
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": ACTIVE_DEADLINE_SECONDS,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "fsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [artifact_volume, {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
        },
    }
    fetch.apply(pod["spec"], container)
    return pod
