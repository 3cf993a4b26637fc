"""Projected volumes for the local kubelet, service-account tokens included, kept fresh like the kubelet does.

The ServiceAccount admission plugin gives every pod a `kube-api-access-*` projected volume: a token
from the TokenRequest API, the `kube-root-ca.crt` ConfigMap's `ca.crt` and the pod's namespace. This
module writes such a volume (sources serviceAccountToken, configMap, secret, downwardAPI) into a host
directory with the kubelet's atomic layout — the files live in a timestamped `..<time>` directory,
`..data` is a symlink to it swapped in one rename, and each visible name is a symlink through `..data` —
so a reader never sees a half-written update. A token is re-requested at 80% of its lifetime (or after
24 h), as the kubelet's token manager does, so the file always holds a valid token.

`in_cluster_env` and `mounts_env` give a container the environment that in-cluster clients and
`sitecustomize/pathmap.py` need.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import posixpath
import re
import shutil
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from modelops.local.client import ApiError

from .quantity import parse_quantity, to_int_ceil

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DATA_DIR = "..data"
# The kubelet's token manager: refresh at 80% of the TTL, and at least daily.
REFRESH_FRACTION = 0.8
MAX_REFRESH_SECONDS = 24 * 3600
RETRY_SECONDS = 10.0
DEFAULT_TOKEN_SECONDS = 3600
KUBERNETES_SERVICE_IP = (
    "127.96.0.1"  # as serviceaccounts.KUBERNETES_SERVICE_IP (no import across processes' packages)
)
KUBERNETES_SERVICE_PORT = 443


class Api(Protocol):
    """What the volume needs of `modelops.local.client.Client`."""

    async def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> Obj: ...

    async def create(
        self,
        api_version: str,
        plural: str,
        namespace: str | None,
        body: Obj,
        *,
        name: str | None = None,
        subresource: str | None = None,
        field_manager: str | None = None,
    ) -> Obj: ...


class VolumeError(Exception):
    """The volume cannot be set up now (missing ConfigMap, refused TokenRequest); the pod waits and retries."""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _check_path(path: str, where: str) -> str:
    norm = posixpath.normpath(path)
    if not path or path.startswith("/") or norm == ".." or norm.startswith("../") or norm == ".":
        raise VolumeError(
            f"{where}: path {path!r} must be relative and must not contain '..'; fix the volume"
        )
    if norm.split("/", 1)[0].startswith(".."):
        raise VolumeError(f"{where}: path {path!r} must not start with '..'; fix the volume")
    return norm


def _parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """A downwardAPI `fieldRef.fieldPath` of the pod, formatted as the kubelet writes it."""
    meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = (meta.get(path.split(".")[1]) or {}).items()
        # Go's %q quoting, which JSON string quoting matches for printable text.
        return "\n".join(f"{k}={json.dumps(str(v), ensure_ascii=False)}" for k, v in sorted(items))
    raise VolumeError(
        f"downwardAPI fieldRef.fieldPath {path!r} is not supported; use metadata.*, spec.nodeName, ..."
    )


def resource_value(pod: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """A downwardAPI `resourceFieldRef` (limits/requests of a container, divided and rounded up)."""
    resource = str(ref.get("resource") or "")
    kind, _, name = resource.partition(".")
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    wanted = ref.get("containerName")
    container = next((c for c in containers if c.get("name") == wanted), None)
    if container is None or kind not in ("limits", "requests"):
        raise VolumeError(
            f"downwardAPI resourceFieldRef {resource!r} of container {wanted!r} cannot be resolved; "
            "name an existing container and limits.<resource> or requests.<resource>"
        )
    res = container.get("resources") or {}
    value = (res.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (res.get("limits") or {}).get(name)
    if value is None:
        value = "0"
    divisor = parse_quantity(str(ref.get("divisor") or "1"))
    return str(to_int_ceil(parse_quantity(str(value)), divisor if divisor else Decimal(1)))


class ProjectedVolume:
    """One projected (or configMap/secret/downwardAPI) volume of one pod, written under `target`.

    `await write()` materialises it (raises VolumeError when a source is missing); `refresh_at` is
    then the epoch second its token needs renewing (None without a token source).
    `keep_fresh()` rewrites it whenever that time comes, until cancelled.
    """

    def __init__(self, api: Api, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path) -> None:
        self.api = api
        self.pod = pod
        self.volume = volume
        self.target = Path(target)
        self.refresh_at: float | None = None
        self._tokens: dict[int, tuple[str, float]] = {}  # source index -> (token, refresh time)

    @property
    def name(self) -> str:
        return str(self.volume.get("name") or "")

    def _sources(self) -> tuple[list[Mapping[str, Any]], int]:
        v = self.volume
        if "projected" in v:
            projected = v["projected"] or {}
            return list(projected.get("sources") or []), int(projected.get("defaultMode", 0o644))
        for kind in ("configMap", "secret", "downwardAPI"):
            if kind in v:
                source = dict(v[kind] or {})
                if kind == "secret":
                    source["name"] = source.get("secretName", "")
                return [{kind: source}], int(source.get("defaultMode", 0o644))
        raise VolumeError(
            f"volume {self.name!r} is not projected, configMap, secret or downwardAPI; "
            "ProjectedVolume cannot write it"
        )

    async def files(self, now: float | None = None) -> dict[str, tuple[bytes, int]]:
        """path -> (content, mode) of every file the volume holds now; fetches tokens due a refresh."""
        now = time.time() if now is None else now
        sources, default_mode = self._sources()
        out: dict[str, tuple[bytes, int]] = {}
        refresh: list[float] = []
        namespace = str(_meta(self.pod).get("namespace") or "default")
        for index, source in enumerate(sources):
            if "serviceAccountToken" in source:
                token_source = source["serviceAccountToken"] or {}
                path = _check_path(
                    str(token_source.get("path") or ""), f"volume {self.name}: serviceAccountToken"
                )
                token, due = await self._token(index, token_source, namespace, now)
                out[path] = (token.encode(), default_mode)
                refresh.append(due)
            elif "configMap" in source or "secret" in source:
                kind = "configMap" if "configMap" in source else "secret"
                out.update(await self._config_files(kind, source[kind] or {}, namespace, default_mode))
            elif "downwardAPI" in source:
                for item in (source["downwardAPI"] or {}).get("items") or []:
                    path = _check_path(str(item.get("path") or ""), f"volume {self.name}: downwardAPI")
                    if item.get("fieldRef"):
                        text = field_value(self.pod, str(item["fieldRef"].get("fieldPath") or ""))
                    elif item.get("resourceFieldRef"):
                        text = resource_value(self.pod, item["resourceFieldRef"])
                    else:
                        raise VolumeError(
                            f"volume {self.name}: downwardAPI item {path!r} needs fieldRef or resourceFieldRef"
                        )
                    out[path] = (text.encode(), int(item.get("mode", default_mode)))
            # clusterTrustBundle and unknown future sources: nothing to write locally.
        self.refresh_at = min(refresh) if refresh else None
        return out

    async def _token(
        self, index: int, source: Mapping[str, Any], namespace: str, now: float
    ) -> tuple[str, float]:
        cached = self._tokens.get(index)
        if cached is not None and now < cached[1]:
            return cached
        meta, spec = _meta(self.pod), self.pod.get("spec") or {}
        seconds = int(source.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
        account = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        body: Obj = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta.get("name", ""),
                    "uid": meta.get("uid", ""),
                },
            },
        }
        if source.get("audience"):
            body["spec"]["audiences"] = [str(source["audience"])]
        try:
            answer = await self.api.create(
                "v1", "serviceaccounts", namespace, body, name=account, subresource="token"
            )
        except ApiError as e:
            raise VolumeError(
                f'MountVolume.SetUp failed for volume "{self.name}": failed to fetch token: {e.message}'
            ) from None
        status = answer.get("status") or {}
        token = str(status.get("token") or "")
        if not token:
            raise VolumeError(
                f'MountVolume.SetUp failed for volume "{self.name}": TokenRequest returned no token'
            )
        try:
            expires = _parse_time(str(status.get("expirationTimestamp")))
        except ValueError:
            expires = now + seconds
        ttl = float((answer.get("spec") or {}).get("expirationSeconds") or seconds)
        issued = expires - ttl
        due = min(issued + REFRESH_FRACTION * ttl, issued + MAX_REFRESH_SECONDS)
        self._tokens[index] = (token, due)
        return token, due

    async def _config_files(
        self, kind: str, source: Mapping[str, Any], namespace: str, default_mode: int
    ) -> dict[str, tuple[bytes, int]]:
        name = str(source.get("name") or "")
        plural = "configmaps" if kind == "configMap" else "secrets"
        optional = bool(source.get("optional"))
        try:
            obj = await self.api.get("v1", plural, namespace, name)
        except ApiError as e:
            if e.status == 404 and optional:
                return {}
            if e.status == 404:
                raise VolumeError(
                    f'MountVolume.SetUp failed for volume "{self.name}": {kind.lower()} "{name}" not found'
                ) from None
            raise VolumeError(f'MountVolume.SetUp failed for volume "{self.name}": {e.message}') from None
        data: dict[str, bytes] = {}
        if kind == "configMap":
            data.update({k: str(v).encode() for k, v in (obj.get("data") or {}).items()})
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        else:
            data.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
            data.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
        mode = int(source.get("defaultMode", default_mode))
        items = source.get("items")
        out: dict[str, tuple[bytes, int]] = {}
        if items is None:
            for key, value in data.items():
                out[_check_path(key, f"volume {self.name}: {kind} {name}")] = (value, mode)
            return out
        for item in items:
            key = str(item.get("key") or "")
            if key not in data:
                if optional:
                    continue
                raise VolumeError(
                    f'MountVolume.SetUp failed for volume "{self.name}": {kind.lower()} "{name}" has no key '
                    f'"{key}"; add it or mark the source optional'
                )
            path = _check_path(str(item.get("path") or ""), f"volume {self.name}: {kind} {name}")
            out[path] = (data[key], int(item.get("mode", mode)))
        return out

    async def write(self, now: float | None = None) -> None:
        """Fetch every source and swap the new content in atomically (see the module docstring)."""
        write_atomically(self.target, await self.files(now))

    async def keep_fresh(self) -> None:
        """Rewrite the volume when its token is due, until cancelled; failures are retried every 10 s."""
        while self.refresh_at is not None:
            await asyncio.sleep(max(0.0, self.refresh_at - time.time()))
            try:
                await self.write()
            except (VolumeError, ApiError, OSError) as e:
                log.warning("refreshing volume %s of pod %s: %s", self.name, _meta(self.pod).get("name"), e)
                self.refresh_at = time.time() + RETRY_SECONDS
            except Exception:
                log.exception("refreshing volume %s of pod %s", self.name, _meta(self.pod).get("name"))
                self.refresh_at = time.time() + RETRY_SECONDS


def write_atomically(target: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    """The kubelet's AtomicWriter: `..<time>/` holds the files, `..data` points to it, names link through.

    A reader that opens `target/<path>` sees either the old or the new content, never a mix.
    """
    target.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.") + f"{time.time_ns() % 10**9:09d}"
    new_dir = target / stamp
    new_dir.mkdir()
    for path, (content, mode) in files.items():
        dest = new_dir / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chmod(dest, mode & 0o777)
    data_link = target / DATA_DIR
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp_link = target / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp_link.unlink()
    os.symlink(stamp, tmp_link)
    os.replace(tmp_link, data_link)
    top = {p.split("/", 1)[0] for p in files}
    for name in top:
        link = target / name
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            os.symlink(posixpath.join(DATA_DIR, name), link)
    for entry in os.listdir(target):
        if entry.startswith(".."):
            continue
        if entry not in top and (target / entry).is_symlink():
            (target / entry).unlink()
    if old and old != stamp:
        shutil.rmtree(target / old, ignore_errors=True)


async def materialise(
    api: Api, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path
) -> ProjectedVolume:
    """Write one volume of a pod now; returns it so the caller can run `keep_fresh()` while the pod lives."""
    projected = ProjectedVolume(api, pod, volume, target)
    await projected.write()
    return projected


def in_cluster_env(apiserver_url: str, *, via_service: bool = False) -> dict[str, str]:
    """The `KUBERNETES_SERVICE_*`/`KUBERNETES_PORT*` variables the kubelet gives every container.

    By default they name the API server's own listener (`apiserver_url`, e.g. https://127.0.0.1:40123):
    a local pod is a host process and reaches it directly, with no privileged port to bind and with
    the certificate's existing 127.0.0.1 name. With `via_service=True` they name the `kubernetes`
    Service (127.96.0.1:443) as on a real cluster; that needs the service proxy to bind port 443 (root
    or CAP_NET_BIND_SERVICE) and the extra certificate names of `serviceaccounts.required_sans()`.
    Set them after the per-Service variables so these win.
    """
    if via_service:
        host, port = KUBERNETES_SERVICE_IP, KUBERNETES_SERVICE_PORT
    else:
        parts = urlsplit(apiserver_url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
    address = f"tcp://{host}:{port}"
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": address,
        f"KUBERNETES_PORT_{port}_TCP": address,
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
        f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
    }


def mounts_env(mounts: Mapping[str, str | os.PathLike[str]]) -> dict[str, str]:
    """`MODELOPS_LOCAL_MOUNTS` for a container, from its mountPath -> host path map.

    `nodes.containers.container_mounts(container, volumes)` gives exactly that map (subPath applied).
    """
    return {
        "MODELOPS_LOCAL_MOUNTS": json.dumps({str(k): os.fspath(v) for k, v in mounts.items()}, sort_keys=True)
    }
