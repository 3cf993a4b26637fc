"""Pod Security Standards ("baseline" and "restricted") as a pure function over manifests.

Contract 5 says every Pod the operator or the chart produces meets "restricted". The API server
only enforces that on namespaces labelled ``pod-security.kubernetes.io/enforce``, and even then it
rejects the *Pod*, long after the Deployment or Job that stamps it out was accepted: the user sees a
ReplicaSet that never gets a Pod. Checking our own manifests before they are applied turns that into
a failing unit test.

The controls follow https://kubernetes.io/docs/concepts/security/pod-security-standards/ one by one,
with the allowed values of the pod-security-admission "latest" policy. Every message names the full
path of the offending field (relative to the object that was passed in), the container when there
is one, and what to set instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PodSpecLocation", "check_baseline", "check_restricted", "pod_spec_locations"]

# Kinds whose pods come from ``spec.template``.
_TEMPLATE_KINDS = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"}
)

_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

# Baseline "Capabilities": what a container may add on top of the runtime's default set.
_BASELINE_ADDABLE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)

# Baseline "Sysctls": the safe, namespaced set (1.32 added tcp_rmem/tcp_wmem).
_SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)

# Baseline "SELinux": container_engine_t is allowed since 1.31.
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})

_PROFILE_TYPES = frozenset({"RuntimeDefault", "Localhost"})

# Restricted "Volume Types": everything else (hostPath, nfs, gitRepo, in-tree cloud disks...) is out.
# `image` volumes are allowed from 1.33 on.
_RESTRICTED_VOLUME_SOURCES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)

_APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"

_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_LIFECYCLE_HOOKS = ("postStart", "preStop")


@dataclass(frozen=True)
class PodSpecLocation:
    """Where a pod spec sits inside the object that was checked."""

    path: str
    metadata: Mapping[str, Any]
    spec: Mapping[str, Any]


def check_baseline(obj: Mapping[str, Any]) -> list[str]:
    """Violations of the Pod Security Standards "baseline" profile; empty when the pod passes.

    Args:
        obj: a Pod, an object holding a pod template (Deployment, ReplicaSet, StatefulSet,
            DaemonSet, Job, ReplicationController, PodTemplate, CronJob) or a bare PodSpec.
    """
    messages: list[str] = []
    for location in pod_spec_locations(obj):
        messages.extend(_baseline(location))
    return messages


def check_restricted(obj: Mapping[str, Any]) -> list[str]:
    """Violations of the Pod Security Standards "restricted" profile (which includes baseline).

    Args:
        obj: as for :func:`check_baseline`.
    """
    messages: list[str] = []
    for location in pod_spec_locations(obj):
        messages.extend(_baseline(location, restricted=True))
        messages.extend(_restricted(location))
    return messages


def pod_spec_locations(obj: Mapping[str, Any]) -> list[PodSpecLocation]:
    """Find the pod spec in ``obj``.

    Raises:
        ValueError: ``obj`` holds no pod spec, or one without containers. A check that silently
            passed a misplaced or empty spec would hide exactly the mistakes it exists to catch.
        TypeError: ``obj`` is not a mapping.
    """
    locations = _locate(obj)
    for location in locations:
        if not _list(location.spec.get("containers")):
            where = _join(location.path, "containers")
            raise ValueError(f"{where}: no containers to check; is the pod spec at the right path?")
    return locations


def _locate(obj: Mapping[str, Any]) -> list[PodSpecLocation]:
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"expected a manifest as a mapping (a dict parsed from YAML/JSON), got {type(obj).__name__}"
        )
    kind = obj.get("kind")
    if kind == "Pod":
        return [PodSpecLocation("spec", _mapping(obj.get("metadata")), _mapping(obj.get("spec")))]
    if kind == "PodTemplate":
        template = _mapping(obj.get("template"))
        return [PodSpecLocation("template.spec", _mapping(template.get("metadata")), _spec_of(template))]
    if kind == "CronJob":
        template = _mapping(_dig(obj, "spec", "jobTemplate", "spec", "template"))
        return [
            PodSpecLocation(
                "spec.jobTemplate.spec.template.spec",
                _mapping(template.get("metadata")),
                _spec_of(template),
            )
        ]
    if kind in _TEMPLATE_KINDS or (kind is not None and _dig(obj, "spec", "template", "spec") is not None):
        template = _mapping(_dig(obj, "spec", "template"))
        return [PodSpecLocation("spec.template.spec", _mapping(template.get("metadata")), _spec_of(template))]
    if kind is None and "containers" in obj:
        return [PodSpecLocation("", {}, obj)]
    raise ValueError(
        f"cannot find a pod spec in kind {kind!r}: pass a Pod, an object with spec.template "
        "(Deployment, Job, StatefulSet, ...), a CronJob, or a bare PodSpec with `containers`"
    )


def _baseline(loc: PodSpecLocation, *, restricted: bool = False) -> Iterator[str]:
    spec = loc.spec
    pod_sc = _mapping(spec.get("securityContext"))
    pod_sc_path = _join(loc.path, "securityContext")
    # Under "restricted", its stricter seccomp and capabilities controls replace the baseline ones
    # (as in the admission plugin), so one wrong field gives one message, not two. Windows pods are
    # exempt from the restricted versions and keep the baseline ones.
    baseline_only = not restricted or _dig(spec, "os", "name") == "windows"

    # HostProcess
    if _dig(pod_sc, "windowsOptions", "hostProcess") is True:
        yield f"{pod_sc_path}.windowsOptions.hostProcess: must be unset or false (baseline: HostProcess)"

    # Host Namespaces
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            yield f"{_join(loc.path, field)}: must be unset or false (baseline: Host Namespaces)"

    # HostPath Volumes
    for index, volume in enumerate(_list(spec.get("volumes"))):
        if _mapping(volume).get("hostPath") is not None:
            yield (
                f"{_join(loc.path, f'volumes[{index}]')} (volume {_name(volume)}): hostPath volumes "
                "are forbidden; use a persistentVolumeClaim or emptyDir (baseline: HostPath Volumes)"
            )

    # AppArmor (pod level and the legacy per-container annotations)
    yield from _apparmor(pod_sc, pod_sc_path, "")
    for key, value in _mapping(loc.metadata.get("annotations")).items():
        if str(key).startswith(_APPARMOR_ANNOTATION_PREFIX) and not (
            value in ("", "runtime/default") or str(value).startswith("localhost/")
        ):
            metadata_path = _join(loc.path.removesuffix("spec").rstrip("."), "metadata")
            yield (
                f"{metadata_path}.annotations[{key!r}]: {value!r} is not allowed; use "
                "runtime/default or localhost/<profile> (baseline: AppArmor)"
            )

    # SELinux
    yield from _selinux(pod_sc, pod_sc_path, "")

    # Seccomp (baseline only forbids Unconfined)
    if baseline_only and _dig(pod_sc, "seccompProfile", "type") == "Unconfined":
        yield (
            f"{pod_sc_path}.seccompProfile.type: Unconfined is not allowed; use RuntimeDefault "
            "(baseline: Seccomp)"
        )

    # Sysctls
    for index, sysctl in enumerate(_list(pod_sc.get("sysctls"))):
        name = _mapping(sysctl).get("name")
        if name not in _SAFE_SYSCTLS:
            yield (
                f"{pod_sc_path}.sysctls[{index}].name: {name!r} is not a safe sysctl; allowed: "
                f"{', '.join(sorted(_SAFE_SYSCTLS))} (baseline: Sysctls)"
            )

    for path, who, container in _containers(loc):
        sc = _mapping(container.get("securityContext"))
        sc_path = f"{path}.securityContext"

        if _dig(sc, "windowsOptions", "hostProcess") is True:
            yield f"{sc_path}.windowsOptions.hostProcess{who}: must be unset or false (baseline: HostProcess)"

        if sc.get("privileged") is True:
            yield f"{sc_path}.privileged{who}: must be unset or false (baseline: Privileged Containers)"

        for cap in _list(_dig(sc, "capabilities", "add")) if baseline_only else []:
            if cap not in _BASELINE_ADDABLE_CAPABILITIES:
                yield (
                    f"{sc_path}.capabilities.add{who}: adding {cap!r} is not allowed (baseline: Capabilities)"
                )

        for index, port in enumerate(_list(container.get("ports"))):
            host_port = _mapping(port).get("hostPort")
            if host_port not in (None, 0):
                yield (
                    f"{path}.ports[{index}].hostPort{who}: {host_port} is not allowed; remove hostPort "
                    "and reach the pod through a Service (baseline: Host Ports)"
                )

        yield from _apparmor(sc, sc_path, who)
        yield from _selinux(sc, sc_path, who)

        if sc.get("procMount") not in (None, "Default"):
            yield f"{sc_path}.procMount{who}: must be unset or Default (baseline: /proc Mount Type)"

        if baseline_only and _dig(sc, "seccompProfile", "type") == "Unconfined":
            yield (
                f"{sc_path}.seccompProfile.type{who}: Unconfined is not allowed; use RuntimeDefault "
                "(baseline: Seccomp)"
            )

        # Probes and lifecycle handlers may not point at another host (1.34): the kubelet would
        # make the request from the node, reaching what the pod itself cannot.
        handlers = [(probe, container.get(probe)) for probe in _PROBES]
        handlers += [(f"lifecycle.{hook}", _dig(container, "lifecycle", hook)) for hook in _LIFECYCLE_HOOKS]
        for handler_path, handler in handlers:
            for action in ("httpGet", "tcpSocket"):
                host = _dig(_mapping(handler), action, "host")
                if host not in (None, ""):
                    yield (
                        f"{path}.{handler_path}.{action}.host{who}: must be unset, is {host!r} "
                        "(baseline: Host Probes / Lifecycle Hooks)"
                    )


def _restricted(loc: PodSpecLocation) -> Iterator[str]:
    spec = loc.spec
    pod_sc = _mapping(spec.get("securityContext"))
    pod_sc_path = _join(loc.path, "securityContext")
    # Windows pods are exempt from the Linux-only controls (privilege escalation, seccomp,
    # capabilities), as in the admission plugin.
    linux = _dig(spec, "os", "name") != "windows"

    # Volume Types
    for index, volume in enumerate(_list(spec.get("volumes"))):
        sources = set(_mapping(volume)) - {"name"}
        bad = sorted(sources - _RESTRICTED_VOLUME_SOURCES)
        if bad:
            yield (
                f"{_join(loc.path, f'volumes[{index}]')} (volume {_name(volume)}): volume type "
                f"{', '.join(bad)} is not allowed; use one of "
                f"{', '.join(sorted(_RESTRICTED_VOLUME_SOURCES))} (restricted: Volume Types)"
            )

    # Running as Non-root: pod-level true covers containers that leave it unset.
    pod_non_root = pod_sc.get("runAsNonRoot")
    if pod_non_root is False:
        yield f"{pod_sc_path}.runAsNonRoot: must be true, is false (restricted: Running as Non-root)"
    if pod_sc.get("runAsUser") == 0:
        yield (
            f"{pod_sc_path}.runAsUser: 0 (root) is not allowed; use a non-zero UID such as 65532 "
            "(restricted: Running as Non-root user)"
        )
    pod_seccomp = _dig(pod_sc, "seccompProfile", "type")
    if linux and pod_seccomp is not None and pod_seccomp not in _PROFILE_TYPES:
        yield (
            f"{pod_sc_path}.seccompProfile.type: must be RuntimeDefault or Localhost, is "
            f"{pod_seccomp!r} (restricted: Seccomp)"
        )

    for path, who, container in _containers(loc):
        sc = _mapping(container.get("securityContext"))
        sc_path = f"{path}.securityContext"

        if linux and sc.get("allowPrivilegeEscalation") is not False:
            yield (
                f"{sc_path}.allowPrivilegeEscalation{who}: must be set to false, is "
                f"{_shown(sc.get('allowPrivilegeEscalation'))} (restricted: Privilege Escalation)"
            )

        non_root = sc.get("runAsNonRoot")
        if non_root is False:
            yield f"{sc_path}.runAsNonRoot{who}: must be true, is false (restricted: Running as Non-root)"
        elif non_root is None and pod_non_root is not True:
            yield (
                f"{sc_path}.runAsNonRoot{who}: must be true here or in {pod_sc_path}.runAsNonRoot, "
                "is unset in both (restricted: Running as Non-root)"
            )

        if sc.get("runAsUser") == 0:
            yield (
                f"{sc_path}.runAsUser{who}: 0 (root) is not allowed; use a non-zero UID such as 65532 "
                "(restricted: Running as Non-root user)"
            )

        if linux:
            seccomp = _dig(sc, "seccompProfile", "type")
            if seccomp is None and pod_seccomp is None:
                yield (
                    f"{sc_path}.seccompProfile.type{who}: must be RuntimeDefault or Localhost here or in "
                    f"{pod_sc_path}.seccompProfile.type, is unset in both (restricted: Seccomp)"
                )
            elif seccomp is not None and seccomp not in _PROFILE_TYPES:
                yield (
                    f"{sc_path}.seccompProfile.type{who}: must be RuntimeDefault or Localhost, is "
                    f"{seccomp!r} (restricted: Seccomp)"
                )

            drop = _list(_dig(sc, "capabilities", "drop"))
            if "ALL" not in drop:
                yield (
                    f"{sc_path}.capabilities.drop{who}: must include ALL, is {_shown(drop or None)} "
                    "(restricted: Capabilities)"
                )
            for cap in _list(_dig(sc, "capabilities", "add")):
                if cap != "NET_BIND_SERVICE":
                    yield (
                        f"{sc_path}.capabilities.add{who}: only NET_BIND_SERVICE may be added, not "
                        f"{cap!r} (restricted: Capabilities)"
                    )


def _apparmor(sc: Mapping[str, Any], sc_path: str, who: str) -> Iterator[str]:
    profile = _dig(sc, "appArmorProfile", "type")
    if profile is not None and profile not in _PROFILE_TYPES:
        yield (
            f"{sc_path}.appArmorProfile.type{who}: must be RuntimeDefault or Localhost, is {profile!r} "
            "(baseline: AppArmor)"
        )


def _selinux(sc: Mapping[str, Any], sc_path: str, who: str) -> Iterator[str]:
    options = _mapping(sc.get("seLinuxOptions"))
    selinux_type = options.get("type")
    if selinux_type is not None and selinux_type not in _SELINUX_TYPES:
        yield (
            f"{sc_path}.seLinuxOptions.type{who}: {selinux_type!r} is not allowed; use one of "
            f"{', '.join(sorted(t for t in _SELINUX_TYPES if t))} or leave it unset (baseline: SELinux)"
        )
    for field in ("user", "role"):
        if options.get(field):
            yield f"{sc_path}.seLinuxOptions.{field}{who}: must be unset (baseline: SELinux)"


def _containers(loc: PodSpecLocation) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """Each container as (path, ' (container "name")', container), over all three lists."""
    for list_name in _CONTAINER_LISTS:
        for index, raw in enumerate(_list(loc.spec.get(list_name))):
            container = _mapping(raw)
            yield (
                _join(loc.path, f"{list_name}[{index}]"),
                f" (container {_name(container)})",
                container,
            )


def _spec_of(template: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(template.get("spec"))


def _join(prefix: str, field: str) -> str:
    return f"{prefix}.{field}" if prefix else field


def _name(item: Any) -> str:
    return f'"{_mapping(item).get("name", "?")}"'


def _shown(value: Any) -> str:
    return "unset" if value is None else repr(value)


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []
