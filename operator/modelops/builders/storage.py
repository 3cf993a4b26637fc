"""How a pod reaches a storage URI: the credentials Secret as read-only files, claims at one place.

Every pod kind that reads or writes a URI (training, verification, backup, restore, the model store's
fetch) wires it through these functions, so the Secret is mounted the same way everywhere: a `secret`
volume with mode 0400 (the kubelet adds the group's read bit under the pod's fsGroup), mounted
read-only at `CREDENTIALS_MOUNT/<role>`, and only the directory's path in the environment or argv.
The values never enter argv, env, status, logs or events. Without a Secret nothing is mounted and the
worker uses the pod's own identity (its service account: IRSA, workload identity).

A `pvc://<claim>/<path>` URI keeps meaning a file on a mounted claim: `claim_volume` mounts the claim
at `CLAIMS_MOUNT/<claim>`, which is where the worker's storage layer looks (`ENV_CLAIMS_DIR`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from modelops.api.common import SecretReference
from modelops.api.storage import (
    CLAIMS_MOUNT,
    CREDENTIALS_FILE_MODE,
    CREDENTIALS_MOUNT,
    ENV_CACHE_DIR,
    ENV_CLAIMS_DIR,
    ENV_CREDENTIALS_DIR,
    ENV_SECRET_NAME_PREFIX,
    parse_uri,
)


@dataclasses.dataclass(frozen=True)
class StorageWiring:
    """What one container needs to reach one URI: volumes for the pod, mounts, env and worker args."""

    volumes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    env: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    credentials_dir: str | None = None  # the mounted Secret's directory, None: the pod's identity

    def args(self, flag: str = "--credentials-dir") -> list[str]:
        """Worker CLI args naming the credentials directory (a path, never a secret value)."""
        return [flag, self.credentials_dir] if self.credentials_dir else []

    def merged(self, other: StorageWiring) -> StorageWiring:
        """Both wirings, without repeating a volume (one claim read through two URIs)."""
        names = {v["name"] for v in self.volumes}
        mounts = {(m["name"], m["mountPath"]) for m in self.volume_mounts}
        env = {e["name"] for e in self.env}
        return StorageWiring(
            self.volumes + [v for v in other.volumes if v["name"] not in names],
            self.volume_mounts
            + [m for m in other.volume_mounts if (m["name"], m["mountPath"]) not in mounts],
            self.env + [e for e in other.env if e["name"] not in env],
            self.credentials_dir or other.credentials_dir,
        )

    def apply(self, pod_spec: dict[str, Any], container: dict[str, Any]) -> None:
        """Add the volumes to the pod spec and the mounts and env to the container (idempotent)."""
        vols = pod_spec.setdefault("volumes", [])
        have = {v["name"] for v in vols}
        vols += [v for v in self.volumes if v["name"] not in have]
        mounts = container.setdefault("volumeMounts", [])
        have_m = {m["mountPath"] for m in mounts}
        mounts += [m for m in self.volume_mounts if m["mountPath"] not in have_m]
        env = container.setdefault("env", [])
        have_e = {e["name"] for e in env}
        env += [e for e in self.env if e["name"] not in have_e]


def credentials_volume_name(role: str) -> str:
    return f"storage-credentials-{role}"


def credentials(secret: SecretReference | str | None, *, role: str = "default") -> StorageWiring:
    """The Secret mounted read-only (0400) at `CREDENTIALS_MOUNT/<role>`; nothing without a Secret.

    `role` separates two stores of one pod (a backup's source and destination). The default role also
    sets `ENV_CREDENTIALS_DIR`, which the worker reads when no `--credentials-dir` is given.
    """
    if secret is None:
        return StorageWiring()
    name = secret if isinstance(secret, str) else secret.name
    volume = credentials_volume_name(role)
    path = f"{CREDENTIALS_MOUNT}/{role}"
    env = [{"name": ENV_CREDENTIALS_DIR, "value": path}] if role == "default" else []
    env.append({"name": f"{ENV_SECRET_NAME_PREFIX}{role.upper()}", "value": name})
    return StorageWiring(
        volumes=[{"name": volume, "secret": {"secretName": name, "defaultMode": CREDENTIALS_FILE_MODE}}],
        volume_mounts=[{"name": volume, "mountPath": path, "readOnly": True}],
        env=env,
        credentials_dir=path,
    )


def claim_volume_name(claim: str) -> str:
    return f"claim-{claim}"[:63].rstrip("-")


def claim(claim_name: str, *, read_only: bool = True) -> StorageWiring:
    """A claim mounted at `CLAIMS_MOUNT/<claim>`, where the worker resolves pvc://<claim>/..."""
    volume = claim_volume_name(claim_name)
    return StorageWiring(
        volumes=[{"name": volume, "persistentVolumeClaim": {"claimName": claim_name, "readOnly": read_only}}],
        volume_mounts=[{"name": volume, "mountPath": f"{CLAIMS_MOUNT}/{claim_name}", "readOnly": read_only}],
        env=[{"name": ENV_CLAIMS_DIR, "value": CLAIMS_MOUNT}],
    )


def for_uri(
    uri: str, secret: SecretReference | str | None = None, *, role: str = "default", read_only: bool = True
) -> StorageWiring:
    """Everything a container needs to reach `uri`: its claim (pvc://) or its credentials (others)."""
    parsed = parse_uri(uri)
    if parsed.scheme == "pvc":
        return claim(parsed.bucket, read_only=read_only)
    return credentials(secret, role=role)


# The dataset cache's directory on the checkpoint claim (hidden: backups and checkpoint scans skip it).
DATASET_CACHE = ".dataset-cache"
SCRATCH_VOLUME = "storage-scratch"
SCRATCH_MOUNT = "/var/run/modelops/scratch"


def dataset(
    file: Any, volumes: list[dict[str, Any]], container: dict[str, Any], *, cache_dir: str | None
) -> None:
    """Wire a training container for `spec.dataset.file.uri`: the claim or the Secret, and the cache.

    `cache_dir` None: an emptyDir scratch volume holds the downloads (ranks without the checkpoint claim).
    """
    wiring = for_uri(str(file.uri), file.credentials_secret)
    if cache_dir is None:
        volumes.append({"name": SCRATCH_VOLUME, "emptyDir": {}})
        container["volumeMounts"].append({"name": SCRATCH_VOLUME, "mountPath": SCRATCH_MOUNT})
        cache_dir = f"{SCRATCH_MOUNT}/dataset-cache"
    pod_spec = {"volumes": volumes}
    wiring.apply(pod_spec, container)
    container["env"].append({"name": ENV_CACHE_DIR, "value": cache_dir})
