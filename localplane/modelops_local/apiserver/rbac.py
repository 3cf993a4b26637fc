"""RBAC for what reaches into a running pod: `pods/exec`, `pods/attach` and `pods/portforward`.

The local plane authenticates the kubeconfig's admin and service-account tokens; everything else it
leaves open, as it is one user's machine. Exec and port-forward are different: they hand a shell or a
socket inside a workload to whoever holds a token, so they are authorized as kube-apiserver's RBAC
authorizer does it, from the Roles, ClusterRoles and their bindings stored in the plane:

* the request is `create` on the subresource (`pods/exec`), whether it arrives as a POST (SPDY) or as
  a WebSocket GET: kube-apiserver 1.35 asks for `create` on both (AuthorizePodWebsocketUpgradeCreate-
  Permission), so a Role that only grants `get` is refused here as it will be on a current cluster;
* a subject matches by user (`system:serviceaccount:<ns>:<name>`), group or ServiceAccount; a rule
  matches by apiGroups (`""`), resources (`pods/exec`, `pods/*`, `*`), verbs and resourceNames;
* `system:masters` (the kubeconfig's admin) is allowed everything, as in a cluster.

The refusal is kube-apiserver's 403 message, which kubectl prints as is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from .errors import ApiError

Obj = Mapping[str, Any]


class Who(Protocol):
    username: str
    groups: tuple[str, ...]


class Lister(Protocol):
    def list(self, skey: str, ns: str | None) -> list[dict[str, Any]]: ...

    def get(self, skey: str, ns: str, name: str) -> dict[str, Any] | None: ...


def _subject_matches(subject: Obj, who: Who, binding_ns: str) -> bool:
    kind, name = subject.get("kind"), str(subject.get("name") or "")
    if kind == "User":
        return name == who.username
    if kind == "Group":
        return name in who.groups
    if kind == "ServiceAccount":
        ns = str(subject.get("namespace") or binding_ns)
        return who.username == f"system:serviceaccount:{ns}:{name}"
    return False


def _rule_allows(rule: Obj, verb: str, group: str, resource: str, name: str) -> bool:
    def has(values: Iterable[Any] | None, wanted: str) -> bool:
        items = [str(v) for v in values or []]
        return "*" in items or wanted in items

    if not has(rule.get("verbs"), verb) or not has(rule.get("apiGroups"), group):
        return False
    resources = [str(r) for r in rule.get("resources") or []]
    base = resource.split("/", 1)[0]
    if not ("*" in resources or resource in resources or f"{base}/*" in resources):
        return False
    names = rule.get("resourceNames") or []
    return not names or name in names


def _role_rules(store: Lister, ref: Obj, binding_ns: str) -> list[Obj]:
    kind, name = ref.get("kind"), str(ref.get("name") or "")
    role = (
        store.get("rbac.authorization.k8s.io/clusterroles", "", name)
        if kind == "ClusterRole"
        else store.get("rbac.authorization.k8s.io/roles", binding_ns, name)
    )
    return list((role or {}).get("rules") or [])


def allowed(store: Lister, who: Who, verb: str, group: str, resource: str, namespace: str, name: str) -> bool:
    """Whether RBAC grants `verb` on `resource` (with subresource, `pods/exec`) to `who`."""
    if "system:masters" in who.groups:
        return True
    bindings: list[tuple[dict[str, Any], str]] = [
        (b, "") for b in store.list("rbac.authorization.k8s.io/clusterrolebindings", None)
    ]
    bindings += [(b, namespace) for b in store.list("rbac.authorization.k8s.io/rolebindings", namespace)]
    for binding, binding_ns in bindings:
        if not any(_subject_matches(s, who, binding_ns) for s in binding.get("subjects") or []):
            continue
        for rule in _role_rules(store, binding.get("roleRef") or {}, binding_ns):
            if _rule_allows(rule, verb, group, resource, name):
                return True
    return False


def require(store: Lister, who: Who, verb: str, resource: str, namespace: str, name: str) -> None:
    """Raise kube-apiserver's 403 unless `who` may `verb` the core-group `resource` (e.g. pods/exec)."""
    if allowed(store, who, verb, "", resource, namespace, name):
        return
    plural, _, sub = resource.partition("/")
    why = (
        f'User "{who.username}" cannot {verb} resource "{plural}/{sub}" in API group "" '
        f'in the namespace "{namespace}"'
    )
    raise ApiError(403, "Forbidden", f'{plural} "{name}" is forbidden: {why}', {"name": name, "kind": plural})
