"""Who a container's processes run as, and who may enter the pod's files: the securityContext, locally.

A container runtime starts every container as the user its securityContext names. The local plane has
no runtime, but when it runs as root it can do the part that matters most for other local users and
for the pod's own files: the kubelet starts the container's process with `setpriv`, which sets the
real and effective user and group, the supplementary groups (`supplementalGroups` and `fsGroup`, as
the kubelet adds them) and `no_new_privs` (`allowPrivilegeEscalation: false`) before it execs.

The images' user: the local images are this machine's Python environment, which has no user of its
own, so a container that names no `runAsUser` runs as the plane's user (root on a root plane). A
`runAsNonRoot` container without a user therefore is refused on a root plane with the kubelet's own
CreateContainerConfigError message, and one with `runAsUser: 0` everywhere; on a plane run by an
ordinary user, the processes cannot change user at all and run as that user (`runAsNonRoot` then holds).

The pod's files (rootfs, HOME, volumes, Secret files) live in one directory per pod, `0750 root:G`,
where G is the pod's group: its `fsGroup`, else the group of its first container. Every container of
the pod gets G as a supplementary group, so they can all enter, and other local users cannot. Writable
volumes (emptyDir, claims) are `2770 root:G` (setgid, as the kubelet's fsGroup ownership), projected
files (Secret, ConfigMap, downward API, tokens) carry their `defaultMode`/`mode` with group G, and
with an `fsGroup` the kubelet's `0440` read bits for the group.

Everything here is pure (spec in, decisions out), so `tests/unit/test_local_identity.py` covers it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Identity:
    """The credentials a container's process gets before exec."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    no_new_privs: bool = False

    def setpriv_args(self) -> list[str]:
        """Options of util-linux `setpriv` that give a process exactly this identity."""
        args = ["--reuid", str(self.uid), "--regid", str(self.gid)]
        args += ["--groups", ",".join(map(str, self.groups))] if self.groups else ["--clear-groups"]
        if self.no_new_privs:
            args.append("--no-new-privs")
        return args


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def effective_context(pod: Obj, container: Obj) -> dict[str, Any]:
    """The container's securityContext over the pod's, for the fields both have (as the kubelet merges)."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    own = container.get("securityContext") or {}
    merged = {k: pod_sc.get(k) for k in ("runAsUser", "runAsGroup", "runAsNonRoot")}
    for key in ("runAsUser", "runAsGroup", "runAsNonRoot"):
        if own.get(key) is not None:
            merged[key] = own[key]
    merged["allowPrivilegeEscalation"] = own.get("allowPrivilegeEscalation")
    return merged


def format_pod(pod: Obj) -> str:
    """The kubelet's `format.Pod`: name_namespace(uid)."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('name')}_{meta.get('namespace') or 'default'}({meta.get('uid')})"


def verify_run_as_non_root(pod: Obj, container: Obj, image_uid: int) -> str | None:
    """The kubelet's `verifyRunAsNonRoot`: its error message, or None when the container may start.

    `image_uid` is the user the image runs as when no runAsUser is given (the plane's user here).
    """
    sc = effective_context(pod, container)
    if not sc.get("runAsNonRoot"):
        return None
    who = f"(pod: {format_pod(pod)!r}, container: {container.get('name')})".replace("'", '"')
    user = _int(sc.get("runAsUser"))
    if user is not None:
        return f"container's runAsUser breaks non-root policy {who}" if user == 0 else None
    if image_uid == 0:
        return f"container has runAsNonRoot and image will run as root {who}"
    return None


def _all_containers(pod: Obj) -> list[Obj]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def fs_group(pod: Obj) -> int | None:
    return _int(((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup"))


def pod_group(pod: Obj, plane_gid: int) -> int:
    """G, the group that owns the pod's files: fsGroup, else the first container's group."""
    group = fs_group(pod)
    if group is not None:
        return group
    for container in _all_containers(pod):
        sc = effective_context(pod, container)
        gid = _int(sc.get("runAsGroup"))
        if gid is not None:
            return gid
        return 0 if _int(sc.get("runAsUser")) is not None else plane_gid
    return plane_gid


def container_identity(pod: Obj, container: Obj, plane_uid: int, plane_gid: int) -> Identity:
    """The identity of one container on a root plane (see the module docstring for the defaults)."""
    sc = effective_context(pod, container)
    uid = _int(sc.get("runAsUser"))
    gid = _int(sc.get("runAsGroup"))
    if gid is None:
        # A numeric user unknown to the image gets group 0, as container runtimes do.
        gid = 0 if uid is not None else plane_gid
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    groups = [g for g in (_int(x) for x in pod_sc.get("supplementalGroups") or []) if g is not None]
    fsg = fs_group(pod)
    if fsg is not None:
        groups.append(fsg)
    groups.append(pod_group(pod, plane_gid))
    extra = tuple(dict.fromkeys(g for g in groups if g != gid))
    return Identity(
        uid=plane_uid if uid is None else uid,
        gid=gid,
        groups=extra,
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
    )


def single_user(pod: Obj, plane_uid: int) -> int | None:
    """The one user every container runs as, when they agree (owner of token/Secret files then)."""
    users = {_int(effective_context(pod, c).get("runAsUser")) or plane_uid for c in _all_containers(pod)}
    return users.pop() if len(users) == 1 else None


DEFAULT_FILE_MODE = 0o644
READ_ONLY_GROUP_BITS = 0o440  # the kubelet's roMask, or-ed into projected files under an fsGroup


def projected_mode(mode: int | None, default_mode: int | None, has_fs_group: bool) -> int:
    """The mode of one projected file: item mode, else the volume's defaultMode, else 0644."""
    chosen = mode if mode is not None else default_mode if default_mode is not None else DEFAULT_FILE_MODE
    chosen &= 0o777
    return chosen | READ_ONLY_GROUP_BITS if has_fs_group else chosen


@dataclass(frozen=True)
class Access:
    """How the kubelet lays out one pod's files: owned by root:group on a root plane, else private.

    `group` None means the plane is not root: everything is the plane user's own, 0700/0600.
    """

    group: int | None = None
    file_owner: int | None = None
    has_fs_group: bool = False

    @classmethod
    def for_pod(cls, pod: Obj, *, root: bool, plane_uid: int, plane_gid: int) -> Access:
        if not root:
            return cls()
        return cls(
            group=pod_group(pod, plane_gid),
            file_owner=None if fs_group(pod) is not None else single_user(pod, plane_uid),
            has_fs_group=fs_group(pod) is not None,
        )

    def enterable(self, path: str) -> None:
        """A directory the pod's processes may enter and read but not change (the pod dir, logs)."""
        self._apply(path, 0o750, 0o700)

    def writable(self, path: str) -> None:
        """A directory the pod's processes may write (emptyDir, HOME, rootfs): setgid group G."""
        self._apply(path, 0o2770, 0o700)

    def owned_file(self, path: str, uid: int | None) -> None:
        """A file one container writes (its termination log)."""
        if self.group is None:
            os.chmod(path, 0o600)
            return
        os.chown(path, -1 if uid is None else uid, self.group)
        os.chmod(path, 0o660)

    def projected(self, path: str, mode: int) -> None:
        if self.group is not None:
            os.chown(path, -1 if self.file_owner is None else self.file_owner, self.group)
        os.chmod(path, mode)

    def claim(self, path: str) -> None:
        """A claim's directory: group G and group-writable, recursively when its top is not yet (the
        kubelet's fsGroupChangePolicy OnRootMismatch)."""
        if self.group is None:
            return
        st = os.stat(path)
        if st.st_gid == self.group and st.st_mode & 0o2070 == 0o2070:
            return
        for root, dirs, files in os.walk(path):
            for name in dirs:
                self._group_rw(os.path.join(root, name), directory=True)
            for name in files:
                self._group_rw(os.path.join(root, name), directory=False)
        self._group_rw(path, directory=True)

    def _group_rw(self, path: str, *, directory: bool) -> None:
        assert self.group is not None
        try:
            st = os.lstat(path)
            if os.path.islink(path):
                return
            os.chown(path, -1, self.group)
            extra = 0o2070 if directory else 0o060
            os.chmod(path, (st.st_mode & 0o7777) | extra)
        except OSError:
            pass

    def _apply(self, path: str, shared: int, private: int) -> None:
        if self.group is None:
            os.chmod(path, private)
            return
        os.chown(path, 0, self.group)
        os.chmod(path, shared)
