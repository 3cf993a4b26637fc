"""The resources the server knows: built-in kinds and the ones CRDs register, and their discovery documents.

One `ResourceDef` per served (group, version, resource); versions of one resource share one storage key,
so a custom resource written as v1beta1 reads back as v1 (CRD conversion strategy `None`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUB_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class ResourceDef:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # The CustomResourceDefinition object for custom resources, None for built-ins.
    crd: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> str:
        return f"{self.group}/{self.plural}"

    @property
    def singular(self) -> str:
        if self.crd is not None:
            return str(self.crd["spec"]["names"].get("singular") or self.kind.lower())
        return self.kind.lower()

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def is_custom(self) -> bool:
        return self.crd is not None

    def version_schema(self) -> dict[str, Any] | None:
        """The CRD's openAPIV3Schema for this version."""
        if self.crd is None:
            return None
        for v in self.crd["spec"].get("versions", []):
            if v.get("name") == self.version:
                schema = (v.get("schema") or {}).get("openAPIV3Schema")
                return schema if isinstance(schema, dict) else None
        return None

    def crd_version(self) -> dict[str, Any]:
        assert self.crd is not None
        for v in self.crd["spec"].get("versions", []):
            if v.get("name") == self.version:
                return dict(v)
        return {}


def _b(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool = True,
    short: Iterable[str] = (),
    cats: Iterable[str] = (),
    subs: Iterable[str] = (),
    verbs: tuple[str, ...] = ALL_VERBS,
) -> ResourceDef:
    return ResourceDef(
        group, version, plural, kind, namespaced, tuple(short), tuple(cats), tuple(subs), verbs
    )


BUILTINS: tuple[ResourceDef, ...] = (
    _b("", "v1", "namespaces", "Namespace", False, ["ns"], subs=["status", "finalize"]),
    _b(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        ["po"],
        ["all"],
        ["status", "log", "binding", "eviction", "exec", "portforward"],
    ),
    _b("", "v1", "services", "Service", True, ["svc"], ["all"], ["status"]),
    _b("", "v1", "endpoints", "Endpoints", True, ["ep"]),
    _b("", "v1", "configmaps", "ConfigMap", True, ["cm"]),
    _b("", "v1", "secrets", "Secret", True),
    _b("", "v1", "events", "Event", True, ["ev"]),
    _b("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"], subs=["token"]),
    _b("", "v1", "nodes", "Node", False, ["no"], subs=["status"]),
    _b("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"], subs=["status"]),
    _b("", "v1", "persistentvolumes", "PersistentVolume", False, ["pv"], subs=["status"]),
    _b("", "v1", "resourcequotas", "ResourceQuota", True, ["quota"], subs=["status"]),
    _b("", "v1", "limitranges", "LimitRange", True, ["limits"]),
    _b("apps", "v1", "deployments", "Deployment", True, ["deploy"], ["all"], ["status", "scale"]),
    _b("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"], ["all"], ["status", "scale"]),
    _b("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"], ["all"], ["status", "scale"]),
    _b("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"], ["all"], ["status"]),
    _b("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    _b("batch", "v1", "jobs", "Job", True, [], ["all"], ["status"]),
    _b("batch", "v1", "cronjobs", "CronJob", True, ["cj"], ["all"], ["status"]),
    _b(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        ["hpa"],
        ["all"],
        ["status"],
    ),
    _b("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"], subs=["status"]),
    _b("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ["netpol"]),
    _b("networking.k8s.io", "v1", "ingresses", "Ingress", True, ["ing"], subs=["status"]),
    _b("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    _b("coordination.k8s.io", "v1", "leases", "Lease", True),
    _b("events.k8s.io", "v1", "events", "Event", True, ["ev"]),
    _b("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ["crd", "crds"],
        ["api-extensions"],
        ["status"],
    ),
    _b("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    _b("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ["sc"]),
    _b("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ["pc"]),
    _b(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        verbs=("create",),
    ),
    _b(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        True,
        verbs=("create",),
    ),
    _b("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False, verbs=("create",)),
)

# Group order as the real server lists it; custom groups follow.
GROUP_ORDER = [
    "", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch",
    "networking.k8s.io", "policy", "rbac.authorization.k8s.io", "storage.k8s.io", "apiextensions.k8s.io",
    "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
]  # fmt: skip

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key so that the most preferred version sorts first (v2 > v1 > v1beta2 > v1alpha1 > other)."""
    m = _VERSION_RE.match(version)
    if not m:
        return (3, 0, 0, version)
    major = int(m.group(1))
    stage = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, "")


class Registry:
    """All served resources, updated when CRDs come and go."""

    def __init__(self) -> None:
        self._by_gvr: dict[tuple[str, str, str], ResourceDef] = {}
        for r in BUILTINS:
            self._by_gvr[(r.group, r.version, r.plural)] = r

    def get(self, group: str, version: str, plural: str) -> ResourceDef | None:
        return self._by_gvr.get((group, version, plural))

    def all(self) -> list[ResourceDef]:
        return list(self._by_gvr.values())

    def by_storage(self, storage_key: str) -> list[ResourceDef]:
        return [r for r in self._by_gvr.values() if r.storage_key == storage_key]

    def preferred(self, storage_key: str) -> ResourceDef | None:
        defs = self.by_storage(storage_key)
        if not defs:
            return None
        return sorted(defs, key=lambda r: version_priority(r.version))[0]

    def by_kind(self, api_version: str, kind: str) -> ResourceDef | None:
        group, _, version = api_version.rpartition("/")
        for r in self._by_gvr.values():
            if r.group == group and r.version == version and r.kind == kind:
                return r
        return None

    def groups(self) -> dict[str, list[str]]:
        """group -> versions, most preferred first."""
        out: dict[str, set[str]] = {}
        for r in self._by_gvr.values():
            out.setdefault(r.group, set()).add(r.version)
        return {g: sorted(vs, key=version_priority) for g, vs in out.items()}

    def group_order(self) -> list[str]:
        groups = self.groups()
        known = [g for g in GROUP_ORDER if g in groups]
        return known + sorted(g for g in groups if g not in GROUP_ORDER)

    def register_crd(self, crd: dict[str, Any]) -> None:
        self.unregister_crd(crd)
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        group = spec["group"]
        namespaced = spec.get("scope", "Namespaced") == "Namespaced"
        for v in spec.get("versions", []):
            if not v.get("served", True):
                continue
            subs = []
            sr = v.get("subresources") or {}
            if "status" in sr:
                subs.append("status")
            if "scale" in sr:
                subs.append("scale")
            r = ResourceDef(
                group,
                v["name"],
                names["plural"],
                names["kind"],
                namespaced,
                tuple(names.get("shortNames") or ()),
                tuple(names.get("categories") or ()),
                tuple(subs),
                ALL_VERBS,
                crd,
            )
            self._by_gvr[(group, v["name"], names["plural"])] = r

    def unregister_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec", {})
        group = spec.get("group")
        plural = spec.get("names", {}).get("plural")
        for key in [k for k, r in self._by_gvr.items() if r.is_custom and k[0] == group and k[2] == plural]:
            del self._by_gvr[key]

    # --- discovery documents -------------------------------------------------------------------------

    def api_resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        defs = sorted(
            (r for r in self._by_gvr.values() if r.group == group and r.version == version),
            key=lambda r: r.plural,
        )
        if not defs:
            return None
        resources: list[dict[str, Any]] = []
        for r in defs:
            entry: dict[str, Any] = {
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": list(r.verbs),
            }
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            if r.categories:
                entry["categories"] = list(r.categories)
            resources.append(entry)
            for sub in r.subresources:
                resources.append(_sub_entry(r, sub))
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.groups().get(group)
        if not versions or not group:
            return None
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": gvs,
            "preferredVersion": gvs[0],
        }

    def api_group_list(self) -> dict[str, Any]:
        groups = [self.api_group(g) for g in self.group_order() if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [g for g in groups if g]}


def _sub_entry(r: ResourceDef, sub: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced}
    if sub == "scale":
        entry.update(group="autoscaling", version="v1", kind="Scale", verbs=list(SUB_VERBS))
    elif sub == "log":
        entry.update(kind="Pod", verbs=["get"])
    elif sub == "binding":
        entry.update(kind="Binding", verbs=["create"])
    elif sub in ("exec", "portforward"):
        kind = "PodExecOptions" if sub == "exec" else "PodPortForwardOptions"
        entry.update(kind=kind, verbs=["create", "get"])
    elif sub == "eviction":
        entry.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
    elif sub == "token":
        entry.update(group="authentication.k8s.io", version="v1", kind="TokenRequest", verbs=["create"])
    elif sub == "finalize":
        entry.update(kind=r.kind, verbs=["update"])
    else:
        entry.update(kind=r.kind, verbs=list(SUB_VERBS))
    return entry
