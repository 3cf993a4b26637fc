"""The model store as the operator's pods see it: where verified artifacts are published, and how serving
pods fetch them by digest.

One operator setting names the store (`MODELOPS_MODEL_STORE_URI`, chart value `modelStore.uri`):

- `s3://<bucket>[/<prefix>]` (or `gs://`, `az://`), production: an object storage prefix, reached
  through the one storage layer (`modelops_worker.storage`) with the credentials Secret named by
  `MODELOPS_MODEL_STORE_CREDENTIALS_SECRET` (a Secret of that name in each namespace with versions,
  mounted read-only as files into the pods that publish or fetch, never into the server), or without
  one the pods' own identity.
- `pvc://<claim>[/<prefix>]` (the embedded default, `pvc://modelops-model-store`): a claim of that
  name in each namespace that has versions. A pod can mount only claims of its own namespace, so one
  central claim could not serve every namespace; and a claim, unlike a hostPath, is allowed under
  Pod Security "restricted". The operator creates the claim when it first publishes into a namespace
  (no owner: it outlives every version; size and class from the setting). On a multi-node cluster
  it needs a ReadWriteMany class (`MODELOPS_MODEL_STORE_ACCESS_MODE`), which is why production
  stores are object storage.

Objects are `<store>/sha256/<hex digest>`. The verification pod reaches the store read-write and
publishes after verifying (`modelops-worker verify --publish`); a serving pod's init container
reaches it read-only and copies the object into the pod's own emptyDir (`modelops-worker fetch`),
verifying the sha256, before the server starts. Neither ever mounts a training claim.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

import modelops.builders as builders
from modelops.api.storage import OBJECT_STORE_SCHEMES
from modelops.builders import storage as storage_builders

ENV_URI = "MODELOPS_MODEL_STORE_URI"
ENV_CLAIM_SIZE = "MODELOPS_MODEL_STORE_CLAIM_SIZE"
ENV_STORAGE_CLASS = "MODELOPS_MODEL_STORE_STORAGE_CLASS"
ENV_ACCESS_MODE = "MODELOPS_MODEL_STORE_ACCESS_MODE"
ENV_CREDENTIALS_SECRET = "MODELOPS_MODEL_STORE_CREDENTIALS_SECRET"
# The role of the store's credentials in a pod (a verification pod may hold its source's too).
CREDENTIALS_ROLE = "model-store"
DEFAULT_URI = "pvc://modelops-model-store"
DEFAULT_CLAIM_SIZE = "20Gi"
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod")

OBJECTS = "sha256"
VOLUME = "model-store"
MOUNT = "/var/run/modelops/store"
FETCH_CONTAINER = "fetch-model"
COMPONENT_LABEL = "app.kubernetes.io/component"

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_PREFIX = r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*"
_PVC = re.compile(rf"^pvc://(?P<claim>{_DNS_LABEL})(/(?P<prefix>{_PREFIX}))?/?$")
_BUCKET = r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]"
_OBJECT_STORE = re.compile(
    rf"^(?P<scheme>{'|'.join(s for s in OBJECT_STORE_SCHEMES if s != 'https')})://(?P<bucket>{_BUCKET})"
    rf"(/(?P<prefix>{_PREFIX}))?/?$"
)
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")


class StoreSettingError(ValueError):
    """The model-store setting is wrong; the message names the variable and the fix."""


@dataclasses.dataclass(frozen=True)
class ModelStore:
    """A parsed model-store setting."""

    uri: str
    claim: str  # empty for an object storage prefix
    prefix: str = ""
    claim_size: str = DEFAULT_CLAIM_SIZE
    storage_class: str | None = None
    access_mode: str = "ReadWriteOnce"
    credentials_secret: str | None = None  # object storage only; None: the pods' own identity

    @property
    def is_object_store(self) -> bool:
        return not self.claim

    def object_uri(self, digest: str) -> str:
        """Where the object of `digest` is, as recorded in ModelVersion status.artifact.storeUri."""
        return f"{self.uri}/{OBJECTS}/{digest}"

    @property
    def pod_root(self) -> str:
        """The store as the worker is told: the URI of an object store, else where the claim is mounted."""
        if self.is_object_store:
            return self.uri
        return f"{MOUNT}/{self.prefix}" if self.prefix else MOUNT


def parse(
    uri: str,
    *,
    claim_size: str = "",
    storage_class: str = "",
    access_mode: str = "",
    credentials_secret: str = "",
) -> ModelStore:
    """The setting as a ModelStore; raises StoreSettingError naming the variable and the fix."""
    text = uri.strip()
    secret = credentials_secret.strip() or None
    if secret is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", secret):
        raise StoreSettingError(f"{ENV_CREDENTIALS_SECRET}={credentials_secret!r} is not a Secret name")
    objects = _OBJECT_STORE.match(text)
    if objects is not None:
        prefix = (objects.group("prefix") or "").strip("/")
        if ".." in prefix.split("/") or ".." in objects.group("bucket"):
            raise StoreSettingError(f"{ENV_URI}={uri!r}: the bucket and prefix must not contain '..'")
        root = f"{objects.group('scheme')}://{objects.group('bucket')}" + (f"/{prefix}" if prefix else "")
        return ModelStore(uri=root, claim="", prefix=prefix, credentials_secret=secret)
    match = _PVC.match(text)
    if match is None:
        raise StoreSettingError(
            f"{ENV_URI}={uri!r} is not a model store: use s3://<bucket>[/<prefix>] (or gs://, az://) in "
            "production, or pvc://<claim>[/<prefix>] (a claim of that name in each namespace, created by the "
            "operator), e.g. pvc://modelops-model-store"
        )
    if secret is not None:
        raise StoreSettingError(
            f"{ENV_CREDENTIALS_SECRET} applies to an object storage store only; a pvc:// store needs none"
        )
    size = claim_size.strip() or DEFAULT_CLAIM_SIZE
    if not _QUANTITY.match(size):
        raise StoreSettingError(f"{ENV_CLAIM_SIZE}={claim_size!r} is not a quantity: use e.g. 20Gi")
    mode = access_mode.strip() or "ReadWriteOnce"
    if mode not in ACCESS_MODES:
        raise StoreSettingError(f"{ENV_ACCESS_MODE}={access_mode!r}: use one of {', '.join(ACCESS_MODES)}")
    prefix = (match.group("prefix") or "").strip("/")
    if ".." in prefix.split("/"):
        raise StoreSettingError(f"{ENV_URI}={uri!r}: the prefix must not contain '..' segments")
    claim = match.group("claim")
    return ModelStore(
        uri=f"pvc://{claim}" + (f"/{prefix}" if prefix else ""),
        claim=claim,
        prefix=prefix,
        claim_size=size,
        storage_class=storage_class.strip() or None,
        access_mode=mode,
    )


def from_env(environ: Mapping[str, str] | None = None) -> ModelStore:
    """The operator's setting (the embedded default when unset); raises StoreSettingError."""
    env = os.environ if environ is None else environ
    return parse(
        env.get(ENV_URI) or DEFAULT_URI,
        claim_size=env.get(ENV_CLAIM_SIZE, ""),
        storage_class=env.get(ENV_STORAGE_CLASS, ""),
        access_mode=env.get(ENV_ACCESS_MODE, ""),
        credentials_secret=env.get(ENV_CREDENTIALS_SECRET, ""),
    )


def current(environ: Mapping[str, str] | None = None) -> ModelStore | None:
    """The setting, or None when it is wrong (ModelVersions report that; serving uses recorded URIs)."""
    try:
        return from_env(environ)
    except StoreSettingError:
        return None


def parse_object_uri(uri: str | None, current: ModelStore | None = None) -> tuple[ModelStore, str] | None:
    """A recorded status.artifact.storeUri as (its store, the digest); None for anything else.

    An object store's credentials are not in the URI: they are the `current` setting's when the object
    is in that store, else none (the pods' own identity).
    """
    if not uri:
        return None
    root, sep, digest = uri.rpartition(f"/{OBJECTS}/")
    if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
        return None
    try:
        store = parse(root)
    except StoreSettingError:
        return None
    if current is not None and current.uri == store.uri:
        store = current
    return store, digest


def claim(store: ModelStore, namespace: str) -> dict[str, Any]:
    """The store's claim in `namespace`: no owner, it outlives every version published into it."""
    spec: dict[str, Any] = {
        "accessModes": [store.access_mode],
        "resources": {"requests": {"storage": store.claim_size}},
    }
    if store.storage_class:
        spec["storageClassName"] = store.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": store.claim,
            "namespace": namespace,
            "labels": {COMPONENT_LABEL: "model-store", **builders.MANAGED_BY},
        },
        "spec": spec,
    }


def wiring(store: ModelStore, *, read_only: bool) -> storage_builders.StorageWiring:
    """What a container needs to reach the store: its claim, or its credentials Secret (files, 0400)."""
    if store.is_object_store:
        return storage_builders.credentials(store.credentials_secret, role=CREDENTIALS_ROLE)
    return storage_builders.StorageWiring(
        volumes=[
            {"name": VOLUME, "persistentVolumeClaim": {"claimName": store.claim, "readOnly": read_only}}
        ],
        volume_mounts=[{"name": VOLUME, "mountPath": MOUNT, **({"readOnly": True} if read_only else {})}],
    )


def with_publish(pod: dict[str, Any], store: ModelStore) -> dict[str, Any]:
    """A verification pod that also publishes what it verified into `store` (reached read-write)."""
    container = pod["spec"]["containers"][0]
    wired = wiring(store, read_only=False)
    container["args"] = [
        *container["args"],
        "--publish",
        store.pod_root,
        *wired.args("--publish-credentials-dir"),
    ]
    wired.apply(pod["spec"], container)
    return pod


_RESTRICTED: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def fetch_container(
    store: ModelStore, digest: str, dest: str, model_volume: str, mount: str, image: str
) -> dict[str, Any]:
    """The serving pod's init container: the object `digest` into `dest` (on `model_volume` at `mount`).

    Only this container reaches the store (its claim or credentials); the server never sees them. The
    caller adds `wiring(store, read_only=True).volumes` to the pod.
    """
    wired = wiring(store, read_only=True)
    container: dict[str, Any] = {
        "name": FETCH_CONTAINER,
        "image": image,
        "command": ["modelops-worker"],
        "args": ["fetch", "--store", store.pod_root, "--sha256", digest, "--to", dest, *wired.args()],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
        # Why it refused (ArtifactDigestMismatch, ArtifactNotFound) as JSON, read by the controller.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": dict(_RESTRICTED),
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        "volumeMounts": [{"name": model_volume, "mountPath": mount}, *wired.volume_mounts],
    }
    return container


def model_volume_size(size_bytes: int | None) -> str | None:
    """The emptyDir's sizeLimit: the artifact and 64 MiB to spare (None when the size is unknown)."""
    if not size_bytes:
        return None
    mib = -(-int(size_bytes) // (1 << 20)) + 64
    return f"{mib}Mi"
