"""From a container spec to a local process: image, command, environment, volumes and paths.

There is no container runtime, so a container is a process of the project's own Python environment.
Three things a runtime would do are emulated here, and documented because users see them:

* Images: only `ghcr.io/modelops/worker` and `ghcr.io/modelops/operator` (any tag or digest) run;
  their default entrypoints are `modelops-worker` and `modelops operator`. Anything else is a pull error.
* Mounts: processes cannot see a volume at an absolute path such as `/data` without root. Each volume
  is a directory on the host, and every mountPath (and the terminationMessagePath) found at a path
  boundary in env values, command, args and workingDir is rewritten to that directory, so
  `--out=/data/model.pt` becomes `--out=DIR/.../volumes/data/model.pt`. The container also runs in a
  per-pod `rootfs` directory holding a symlink per mountPath (`rootfs/data -> volume dir`), so
  relative paths work too; `MODELOPS_LOCAL_ROOT` names it and `MODELOPS_LOCAL_MOUNTS` (JSON) gives the
  whole mapping for code that builds paths at run time.
* Termination message: `/dev/termination-log` (or the container's terminationMessagePath) is rewritten
  like a mount, `MODELOPS_TERMINATION_MESSAGE_PATH` holds the real file, and in Python processes the
  injected sitecustomize redirects `open("/dev/termination-log", ...)` to it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import posixpath
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from modelops_local.nodes import identity
from modelops_local.nodes.identity import Access
from modelops_local.nodes.quantity import parse_quantity, to_int_ceil

Obj = dict[str, Any]

RUNNABLE_IMAGES = {
    "ghcr.io/modelops/worker": ["modelops-worker"],
    "ghcr.io/modelops/operator": ["modelops", "operator"],
}


class Getter(Protocol):
    """What the kubelet needs of `modelops_local.client.Client` here."""

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


class ConfigError(Exception):
    """The container cannot be configured yet (CreateContainerConfigError); retried later."""


class MountError(Exception):
    """A volume cannot be set up yet (FailedMount); retried later."""


def image_repository(image: str) -> str:
    """`ghcr.io/modelops/worker` of `ghcr.io/modelops/worker:1.2@sha256:...`."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return name


def default_command(image: str) -> list[str] | None:
    """The image's entrypoint, or None when the local plane cannot run this image."""
    return RUNNABLE_IMAGES.get(image_repository(image))


def pull_error_message(image: str) -> str:
    return (
        f'Failed to pull image "{image}": the modelops local plane runs only the project\'s images '
        f"({', '.join(sorted(RUNNABLE_IMAGES))}, any tag); use one of them or a real cluster"
    )


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: unknown references stay as written, `$$` escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR_REF.sub(sub, text)


def field_ref(pod: Mapping[str, Any], path: str) -> str:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": status.get("hostIP"),
        "status.hostIPs": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.podIPs": status.get("podIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in {"metadata.labels", "metadata.annotations"}:
        items = (meta.get(path.split(".")[1]) or {}).items()
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items))
    raise ConfigError(f"fieldRef.fieldPath {path!r} is not supported; use metadata.name, status.podIP, ...")


def resource_ref(
    pod: Mapping[str, Any],
    ref: Mapping[str, Any],
    default_container: str,
    node_allocatable: Mapping[str, str],
) -> str:
    container_name = ref.get("containerName") or default_container
    resource = str(ref.get("resource") or "")
    kind, _, name = resource.partition(".")
    containers = list((pod.get("spec") or {}).get("containers") or [])
    containers += list((pod.get("spec") or {}).get("initContainers") or [])
    container = next((c for c in containers if c.get("name") == container_name), None)
    if container is None or kind not in {"limits", "requests"}:
        raise ConfigError(f"resourceFieldRef {resource!r} of container {container_name!r} cannot be resolved")
    res = container.get("resources") or {}
    value = (res.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (res.get("limits") or {}).get(name)
    if value is None:
        # Without a limit the downward API reports the node's allocatable, as the kubelet does.
        value = node_allocatable.get(name, "0") if kind == "limits" else "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = Decimal(1)
    return str(to_int_ceil(parse_quantity(value), divisor))


async def _config_data(
    api: Getter, plural: str, namespace: str, name: str, optional: bool
) -> dict[str, bytes] | None:
    """The exact bytes of a ConfigMap's or Secret's keys (`data`, `binaryData`), as the kubelet has them."""
    from modelops_local.client import ApiError

    try:
        obj = await api.get("v1", plural, namespace, name)
    except ApiError as e:
        if e.status != 404:
            raise
        if optional:
            return None
        kind = "configmap" if plural == "configmaps" else "secret"
        raise ConfigError(f'{kind} "{name}" not found') from None
    if plural == "secrets":
        data = {k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        return data
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def env_value(raw: bytes) -> str:
    """An env value of exactly these bytes: the kubelet (v1.33) passes a key's bytes unchanged, so bytes
    that are not UTF-8 are kept (surrogateescape, which `os.fsencode` turns back into the same bytes)."""
    return raw.decode("utf-8", "surrogateescape")


async def container_env(
    api: Getter,
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    node_allocatable: Mapping[str, str],
    svc_env: Mapping[str, str],
    in_cluster: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment as Kubernetes defines it (service links, envFrom, then env).

    `in_cluster` (KUBERNETES_SERVICE_HOST/PORT...) is always set and wins over the service links of
    the `kubernetes` Service, as the kubelet's master-service variables do.
    """
    ns = str((pod.get("metadata") or {}).get("namespace") or "default")
    spec = pod.get("spec") or {}
    env: dict[str, str] = dict(svc_env) if spec.get("enableServiceLinks", True) else {}
    env.update(in_cluster or {})
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for key, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            ref = source.get(key)
            if ref:
                data = await _config_data(api, plural, ns, str(ref.get("name")), bool(ref.get("optional")))
                for k, v in (data or {}).items():
                    env[prefix + k] = env_value(v)
    for var in container.get("env") or []:
        name = str(var.get("name"))
        if "value" in var or "valueFrom" not in var:
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        vf = var["valueFrom"] or {}
        if "fieldRef" in vf:
            env[name] = field_ref(pod, str(vf["fieldRef"].get("fieldPath")))
        elif "resourceFieldRef" in vf:
            env[name] = resource_ref(
                pod, vf["resourceFieldRef"], str(container.get("name")), node_allocatable
            )
        else:
            for key, plural in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
                ref = vf.get(key)
                if not ref:
                    continue
                optional = bool(ref.get("optional"))
                data = await _config_data(api, plural, ns, str(ref.get("name")), optional)
                if data is None:
                    break
                if ref.get("key") not in data:
                    if optional:
                        break
                    kind = "ConfigMap" if plural == "configmaps" else "Secret"
                    raise ConfigError(f"couldn't find key {ref.get('key')} in {kind} {ns}/{ref.get('name')}")
                env[name] = env_value(data[str(ref.get("key"))])
    return env


Files = dict[str, tuple[bytes, int]]  # relative path -> (exact bytes, mode)


def _write_files(directory: Path, files: Files, access: Access) -> None:
    """Write projected files with their modes; the volume's directories are enterable by the pod only."""
    directory.mkdir(parents=True, exist_ok=True)
    access.enterable(str(directory))
    for rel, (data, mode) in files.items():
        target = directory / rel
        if target.parent != directory:
            target.parent.mkdir(parents=True, exist_ok=True)
            access.enterable(str(target.parent))
        current = None
        with contextlib.suppress(OSError):
            current = target.read_bytes()
        if current != data:  # unchanged: keep the mtime, programs that watch it reload only on change
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            access.projected(str(tmp), mode)
            os.replace(tmp, target)
        else:
            access.projected(str(target), mode)


def _item_path(path: Any, what: str) -> str:
    text = str(path or "")
    if not text or text.startswith("/") or ".." in text.split("/"):
        raise MountError(f"MountVolume.SetUp failed: {what} path {text!r} must be relative without '..'")
    return text


def _mode(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise MountError(f"MountVolume.SetUp failed: {what} {value!r} must be an octal mode 0000-0777")
    return value


async def _projection(
    api: Getter,
    pod: Mapping[str, Any],
    source: Mapping[str, Any],
    kind: str,
    node_alloc: Mapping[str, str],
    access: Access,
    default_mode: int | None,
) -> Files:
    ns = str((pod.get("metadata") or {}).get("namespace") or "default")
    files: Files = {}

    def put(path: Any, data: bytes, item_mode: Any = None) -> None:
        mode = identity.projected_mode(_mode(item_mode, "items[].mode"), default_mode, access.has_fs_group)
        files[_item_path(path, kind)] = (data, mode)

    if kind in {"configMap", "secret"}:
        name = str(source.get("name") or source.get("secretName") or "")
        plural = "configmaps" if kind == "configMap" else "secrets"
        try:
            data = await _config_data(api, plural, ns, name, bool(source.get("optional")))
        except ConfigError as e:
            raise MountError(f"MountVolume.SetUp failed: {e}") from None
        items = source.get("items")
        for key, value in (data or {}).items():
            if items is None:
                put(key, value)
        for item in items or []:
            if (data or {}).get(item.get("key")) is None:
                if source.get("optional"):
                    continue
                raise MountError(
                    f"MountVolume.SetUp failed: key {item.get('key')} not found in {kind} {name}"
                )
            put(item.get("path"), (data or {})[str(item.get("key"))], item.get("mode"))
    elif kind == "serviceAccountToken":
        put(source.get("path") or "token", (await _service_account_token(api, pod, source)).encode())
    elif kind == "downwardAPI":
        for item in source.get("items") or []:
            if item.get("fieldRef"):
                text = field_ref(pod, str(item["fieldRef"].get("fieldPath")))
            elif item.get("resourceFieldRef"):
                ref = item["resourceFieldRef"]
                text = resource_ref(pod, ref, str(ref.get("containerName") or ""), node_alloc)
            else:
                continue
            put(item.get("path"), text.encode(), item.get("mode"))
    return files


DEFAULT_TOKEN_SECONDS = 3600


async def _service_account_token(api: Getter, pod: Mapping[str, Any], source: Mapping[str, Any]) -> str:
    """A pod-bound token from the TokenRequest API, as the kubelet's token manager gets one."""
    from modelops_local.client import ApiError

    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    account = str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
    request: Obj = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": int(source.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta.get("name"),
                "uid": meta.get("uid"),
            },
        },
    }
    if source.get("audience"):
        request["spec"]["audiences"] = [str(source["audience"])]
    ns = str(meta.get("namespace") or "default")
    try:
        answer = await api.create("v1", "serviceaccounts", ns, request, name=account, subresource="token")
    except ApiError as e:
        raise MountError(
            f"MountVolume.SetUp failed: failed to fetch token for serviceaccount {account}: {e.message}"
        ) from None
    token = str((answer.get("status") or {}).get("token") or "")
    if not token:
        raise MountError(
            f"MountVolume.SetUp failed: TokenRequest for serviceaccount {account} returned no token"
        )
    return token


def token_refresh_seconds(pod: Mapping[str, Any]) -> float | None:
    """When the pod's projected tokens need renewing (80% of the shortest lifetime), or None."""
    lifetimes = [
        float((source.get("serviceAccountToken") or {}).get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
        for vol in (pod.get("spec") or {}).get("volumes") or []
        for source in ((vol.get("projected") or {}).get("sources") or [])
        if "serviceAccountToken" in source
    ]
    return 0.8 * min(lifetimes) if lifetimes else None


def has_token(volume: Mapping[str, Any]) -> bool:
    return any("serviceAccountToken" in s for s in (volume.get("projected") or {}).get("sources") or [])


def is_projection(volume: Mapping[str, Any]) -> bool:
    """Volumes whose files the kubelet writes from API objects (and so keeps current)."""
    return any(kind in volume for kind in ("configMap", "secret", "downwardAPI", "projected"))


async def prepare_volumes(
    api: Getter,
    pod: Mapping[str, Any],
    pod_dir: Path,
    node_alloc: Mapping[str, str],
    select: Callable[[Mapping[str, Any]], bool] | None = None,
    access: Access | None = None,
) -> dict[str, Path]:
    """Create every volume of the pod (or those `select` picks) on the host; volume name -> directory.

    `access` says who owns what (see `identity.Access`); the default is the plane's user only.
    """
    access = access or Access()
    ns = str((pod.get("metadata") or {}).get("namespace") or "default")
    uid = str((pod.get("metadata") or {}).get("uid") or "")
    result: dict[str, Path] = {}
    (pod_dir / "volumes").mkdir(parents=True, exist_ok=True)
    access.enterable(str(pod_dir / "volumes"))
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        if select is not None and not select(vol):
            continue
        name = str(vol.get("name"))
        local = pod_dir / "volumes" / name
        if "emptyDir" in vol:
            medium = (vol.get("emptyDir") or {}).get("medium")
            if medium == "Memory" and os.access("/dev/shm", os.W_OK):
                shm = Path("/dev/shm") / "modelops-local"
                shm.mkdir(exist_ok=True)
                if shm.stat().st_uid == os.geteuid():
                    os.chmod(shm, 0o711 if access.group is not None else 0o700)
                (shm / uid).mkdir(exist_ok=True)
                access.enterable(str(shm / uid))
                local = shm / uid / name
            local.mkdir(parents=True, exist_ok=True)
            access.writable(str(local))
        elif "hostPath" in vol:
            local = Path(str(vol["hostPath"].get("path")))
            if (vol["hostPath"].get("type") or "") == "DirectoryOrCreate":
                local.mkdir(parents=True, exist_ok=True)
        elif "persistentVolumeClaim" in vol:
            local = await _claim_dir(api, ns, str(vol["persistentVolumeClaim"].get("claimName")))
            if access.group is not None:
                access.claim(str(local))
        elif "configMap" in vol or "secret" in vol or "downwardAPI" in vol:
            kind = next(k for k in ("configMap", "secret", "downwardAPI") if k in vol)
            source = vol[kind] or {}
            default_mode = _mode(source.get("defaultMode"), f"volumes[{name}].{kind}.defaultMode")
            _write_files(
                local, await _projection(api, pod, source, kind, node_alloc, access, default_mode), access
            )
        elif "projected" in vol:
            files: Files = {}
            projected = vol["projected"] or {}
            default_mode = _mode(projected.get("defaultMode"), f"volumes[{name}].projected.defaultMode")
            for source in projected.get("sources") or []:
                for kind in ("configMap", "secret", "downwardAPI", "serviceAccountToken"):
                    if kind in source:
                        files.update(
                            await _projection(
                                api, pod, source[kind] or {}, kind, node_alloc, access, default_mode
                            )
                        )
            _write_files(local, files, access)
        else:
            # Unknown volume types (csi, nfs, ...) get an empty directory rather than a stuck pod.
            local.mkdir(parents=True, exist_ok=True)
            access.writable(str(local))
        result[name] = local
    return result


async def _claim_dir(api: Getter, namespace: str, claim: str) -> Path:
    from modelops_local.client import ApiError

    try:
        pvc = await api.get("v1", "persistentvolumeclaims", namespace, claim)
    except ApiError as e:
        if e.status == 404:
            raise MountError(f'persistentvolumeclaim "{claim}" not found') from None
        raise
    volume_name = (pvc.get("spec") or {}).get("volumeName")
    if (pvc.get("status") or {}).get("phase") != "Bound" or not volume_name:
        raise MountError(f'persistentvolumeclaim "{claim}" is not bound yet')
    pv = await api.get("v1", "persistentvolumes", None, str(volume_name))
    path = ((pv.get("spec") or {}).get("hostPath") or {}).get("path")
    if not path:
        raise MountError(
            f'persistentvolume "{volume_name}" has no hostPath; the local plane mounts only hostPath'
        )
    local = Path(str(path))
    local.mkdir(parents=True, exist_ok=True)
    # Resolved: the plane's directory may be a link the pod's user cannot follow (statedir.py).
    return local.resolve()


def container_mounts(container: Mapping[str, Any], volumes: Mapping[str, Path]) -> dict[str, Path]:
    """mountPath -> host directory (subPath applied) for one container."""
    mounts: dict[str, Path] = {}
    for m in container.get("volumeMounts") or []:
        vol = volumes.get(str(m.get("name")))
        if vol is None:
            raise ConfigError(
                f"volumeMounts[].name {m.get('name')!r} of container {container.get('name')!r} names no "
                "volume of the pod; add it to spec.volumes"
            )
        local = vol / str(m["subPath"]) if m.get("subPath") else vol
        if m.get("subPath") and not local.exists():
            local.mkdir(parents=True, exist_ok=True)
        mounts[posixpath.normpath("/" + str(m.get("mountPath")).lstrip("/"))] = local
    return mounts


# What may follow a mountPath in an argument or env value for it to be that path: a slash, the end, or a
# separator of lists and options (`a:/data:b`, `/data,/models`, `"/data"`). Anything else (`/tmpfoo`,
# `/tmp+x`, `/tmp.bak`, `/tmp~`) is another file name, never the mount.
_PATH_END = r"(?=/|$|[\s:;,=\"')\]}])"


def rewrite_paths(text: str, mounts: Mapping[str, Path], passthrough: Iterable[str] = ()) -> str:
    """Replace each mountPath at path-component boundaries by its host directory (longest first).

    A path under a `passthrough` prefix longer than the mountPath is a host path of the plane itself
    (the interpreter, the project's "image", the plane's directory, a volume's host directory, as in
    `pathmap.passthrough_prefixes`) and stays as written: with an emptyDir at /tmp and the checkout
    under /tmp, `/tmp/ci/.venv/bin/python` must stay the interpreter, not a file in the volume.
    """
    # A volume mounted at "/" would match every path; such a mount is reachable via the rootfs only.
    ordered = sorted((p for p in mounts if p != "/"), key=len, reverse=True)
    if not ordered:
        return text
    keep = sorted({posixpath.normpath(p) for p in passthrough if p.startswith("/")}, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.~/-])(" + "|".join(re.escape(p) for p in ordered) + r")" + _PATH_END)
    path_rest = re.compile(r"[^\s:;,=\"')\]}]*")

    def sub(m: re.Match[str]) -> str:
        mount = m.group(1)
        rest = path_rest.match(text, m.end(1))
        full = mount + (rest.group(0) if rest else "")
        for prefix in keep:
            if len(prefix) > len(mount) and (full == prefix or full.startswith(prefix + "/")):
                return mount
        return str(mounts[mount])

    return pattern.sub(sub, text)


def link_rootfs(rootfs: Path, mounts: Mapping[str, Path]) -> None:
    """Symlinks rootfs/<mountPath> -> host directory, so relative paths find the volumes."""
    rootfs.mkdir(parents=True, exist_ok=True)
    for mount_path, local in mounts.items():
        rel = mount_path.lstrip("/")
        if not rel:
            continue
        link = rootfs / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        link.symlink_to(local)


def mounts_json(mounts: Mapping[str, Path]) -> str:
    return json.dumps({k: str(v) for k, v in sorted(mounts.items())})
