"""The semantics of each verb, independent of HTTP: what the real API server does between decoding a
request and writing to storage (defaults, validation, generation, finalizers, managed fields, ...).
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import random
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from . import defaults, errors, events, patching, schemas, validation
from .errors import ApiError
from .resources import Registry, ResourceDef
from .schemas import Schema
from .store import Obj, Store, meta

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
CLUSTER_IP_NET = ipaddress.ip_network("127.96.0.0/16")
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def storage_key(rd: ResourceDef) -> str:
    return "/events" if rd.group == "events.k8s.io" else rd.storage_key


class Params:
    """The query parameters that change what a write does."""

    def __init__(self, query: Mapping[str, str], user_agent: str = "") -> None:
        self.dry_run = query.get("dryRun") == "All"
        self.manager = query.get("fieldManager") or ""
        # Like the real server: without fieldManager, updates are recorded under the User-Agent's name.
        self.default_manager = user_agent.split("/", 1)[0].strip() or "unknown"
        self.validation = query.get("fieldValidation") or "Warn"
        self.force = query.get("force") in ("true", "1")
        self.warnings: list[str] = []


class Api:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.used_ips: set[str] = set()
        # Mutating admission for pods (the ServiceAccount plugin), set by the server when available.
        self.pod_admission: Callable[[Obj, str], Obj] | None = None
        # The CA bundle published as `kube-root-ca.crt` in every namespace (None over plain HTTP).
        self.root_ca: str | None = None
        for crd in store.list("apiextensions.k8s.io/customresourcedefinitions", None):
            registry.register_crd(crd)
        for svc in store.list("/services", None):
            self.used_ips.add(str(svc.get("spec", {}).get("clusterIP", "")))
        self.store.listeners.append(self._on_event)
        for ns in INITIAL_NAMESPACES:
            if store.get("/namespaces", "", ns) is None:
                self.create(self.rd("", "v1", "namespaces"), "", {"metadata": {"name": ns}}, Params({}))

    def rd(self, group: str, version: str, plural: str) -> ResourceDef:
        r = self.registry.get(group, version, plural)
        assert r is not None
        return r

    def rd_for(self, skey: str) -> ResourceDef | None:
        if skey == "/events":
            return self.registry.get("", "v1", "events")
        return self.registry.preferred(skey)

    # --- views ---------------------------------------------------------------------------------------

    def view(self, rd: ResourceDef, obj: Obj) -> Obj:
        """The object as served through `rd` (its version's apiVersion; events converted)."""
        if rd.group == "events.k8s.io":
            return events.from_core(obj)
        if rd.is_custom and obj.get("apiVersion") != rd.api_version:
            out = dict(obj)
            out["apiVersion"] = rd.api_version
            return out
        return obj

    def schema(self, rd: ResourceDef) -> Schema | None:
        if rd.is_custom:
            return rd.version_schema()
        return schemas.builtin_schema(rd.group, rd.version, rd.kind)

    # --- reads ---------------------------------------------------------------------------------------

    def get(self, rd: ResourceDef, ns: str, name: str) -> Obj:
        obj = self.store.get(storage_key(rd), ns if rd.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rd.group, rd.plural, name)
        return self.view(rd, obj)

    # --- create --------------------------------------------------------------------------------------

    def _check_type(self, rd: ResourceDef, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the object provided is unrecognized (must be of type object)")
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if api_version and api_version != rd.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rd.api_version})"
            )
        if kind and kind != rd.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rd.kind})"
            )
        m = body.get("metadata", {})
        if not isinstance(m, dict):
            raise errors.bad_request(
                "json: cannot unmarshal "
                + type(m).__name__
                + " into Go struct field Object.metadata of type "
                "v1.ObjectMeta"
            )
        return body

    def check_namespace(self, rd: ResourceDef, ns: str, name: str, creating: bool) -> None:
        if not rd.namespaced:
            return
        nso = self.store.get("/namespaces", "", ns)
        if nso is None:
            raise errors.not_found("", "namespaces", ns)
        if creating and meta(nso).get("deletionTimestamp"):
            raise errors.forbidden(
                rd.group,
                rd.plural,
                name,
                f"unable to create new content in namespace {ns} because it is being terminated",
                [
                    {
                        "reason": "NamespaceTerminating",
                        "message": f"namespace {ns} is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            )

    def create(self, rd: ResourceDef, ns: str, body: Any, params: Params, skip_unknown: bool = False) -> Obj:
        # The caller hands over a freshly decoded body; it becomes the stored object.
        body = self._check_type(rd, body)
        skey = storage_key(rd)
        if not skip_unknown:
            # Decoding comes first on the real server, so a strict decoding error wins over the rest.
            self._unknown_fields(rd, body, params)
        if rd.group == "events.k8s.io":
            body = events.to_core(body)
        body["apiVersion"], body["kind"] = (
            ("v1", "Event") if rd.group == "events.k8s.io" else (rd.api_version, rd.kind)
        )
        m = body.setdefault("metadata", {})
        if rd.namespaced:
            if m.get("namespace") and m["namespace"] != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            m["namespace"] = ns
        else:
            m.pop("namespace", None)
        if not m.get("name"):
            if m.get("generateName"):
                m["name"] = str(m["generateName"]) + "".join(random.choices(_NAME_CHARS, k=5))
            else:
                raise errors.invalid(
                    rd.kind,
                    rd.group,
                    "",
                    [
                        (
                            "FieldValueRequired",
                            "metadata.name",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
        name = str(m["name"])
        if causes := validation.validate_name(skey, name):
            raise errors.invalid(rd.kind, rd.group, name, causes)
        self.check_namespace(rd, ns, name, creating=True)
        if self.store.get(skey, ns if rd.namespaced else "", name) is not None:
            raise errors.already_exists(rd.group, rd.plural, name)
        for key in (*_SERVER_META, "resourceVersion", "selfLink"):
            m.pop(key, None)
        m["uid"] = str(uuid.uuid4())
        m["creationTimestamp"] = now()
        if self._tracks_generation(rd):
            m["generation"] = 1
        if rd.has_status and rd.is_custom:
            body.pop("status", None)
        elif skey in defaults.STATUS_RESET_ON_CREATE:
            body["status"] = copy.deepcopy(defaults.STATUS_RESET_ON_CREATE[skey])
        if skey == "/pods" and self.pod_admission is not None:
            body = self.pod_admission(body, ns)
        self._kind_specific_create(rd, body)
        defaults.apply(skey, body)
        body = self._validate(rd, body, None)
        if not m.get("managedFields"):
            self._record(
                body,
                params.manager or params.default_manager,
                "Update",
                rd,
                patching.field_set(_managed_view(body), self.schema(rd)),
                None,
            )
        if params.dry_run:
            return self.view(rd, body)
        obj = self.store.put(skey, body)
        return self.view(rd, obj)

    def _tracks_generation(self, rd: ResourceDef) -> bool:
        return rd.is_custom or rd.has_status

    def _kind_specific_create(self, rd: ResourceDef, body: Obj) -> None:
        skey = storage_key(rd)
        if skey == "/services":
            spec = body.setdefault("spec", {})
            if spec.get("type") != "ExternalName" and spec.get("clusterIP") not in ("None",):
                ip = spec.get("clusterIP") or self._allocate_ip()
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
                self.used_ips.add(ip)
            elif spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            body.setdefault("status", {"loadBalancer": {}})
        elif skey == "/pods":
            body["status"] = {"phase": "Pending", "qosClass": _qos_class(body.get("spec") or {})}
        elif skey == "/persistentvolumeclaims":
            body["status"] = {"phase": "Pending"}
        elif skey == "/persistentvolumes":
            body.setdefault("status", {"phase": "Available"})
        elif skey == "batch/jobs":
            uid = body["metadata"]["uid"]
            spec = body.setdefault("spec", {})
            job_name = body["metadata"]["name"]
            if not spec.get("manualSelector"):
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
                labels = tmeta.setdefault("labels", {})
                labels.update({
                    "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": job_name,
                    "controller-uid": uid, "job-name": job_name,
                })  # fmt: skip
        elif skey == "apiextensions.k8s.io/customresourcedefinitions":
            self._crd_prepare(body)
            body.setdefault("metadata", {}).setdefault("finalizers", [])
            if CRD_FINALIZER not in body["metadata"]["finalizers"]:
                body["metadata"]["finalizers"].append(CRD_FINALIZER)

    def _allocate_ip(self) -> str:
        hosts = CLUSTER_IP_NET.num_addresses
        for _ in range(1000):
            ip = str(CLUSTER_IP_NET[random.randrange(10, hosts - 1)])
            if ip not in self.used_ips:
                return ip
        raise ApiError(500, "InternalError", "failed to allocate a serviceIP: range is full")

    def _crd_prepare(self, body: Obj) -> None:
        spec = body.get("spec")
        name = body.get("metadata", {}).get("name", "")
        causes: list[tuple[str, str, str]] = []
        if not isinstance(spec, dict):
            raise errors.invalid(
                "CustomResourceDefinition",
                "apiextensions.k8s.io",
                name,
                [("FieldValueRequired", "spec", "Required value")],
            )
        names = spec.get("names") or {}
        group = spec.get("group")
        if not group:
            causes.append(("FieldValueRequired", "spec.group", "Required value"))
        if not names.get("plural"):
            causes.append(("FieldValueRequired", "spec.names.plural", "Required value"))
        if not names.get("kind"):
            causes.append(("FieldValueRequired", "spec.names.kind", "Required value"))
        if group and names.get("plural") and name != f"{names['plural']}.{group}":
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.name",
                    f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                )
            )
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            causes.append(
                (
                    "FieldValueNotSupported",
                    "spec.scope",
                    f'Unsupported value: "{spec.get("scope", "")}": supported values: "Cluster", "Namespaced"',
                )
            )
        versions = spec.get("versions") or []
        if not versions:
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.versions",
                    "Invalid value: null: must have exactly one version marked as storage version",
                )
            )
        elif sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.versions",
                    "Invalid value: "
                    + json.dumps(versions)[:80]
                    + ": must have exactly one version marked as storage version",
                )
            )
        for i, v in enumerate(versions):
            schema = (v.get("schema") or {}).get("openAPIV3Schema") if isinstance(v, dict) else None
            if not isinstance(schema, dict):
                causes.append(
                    (
                        "FieldValueRequired",
                        f"spec.versions[{i}].schema.openAPIV3Schema",
                        "Required value: schemas are required",
                    )
                )
        if causes:
            raise errors.invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes)
        names.setdefault("singular", str(names["kind"]).lower())
        names.setdefault("listKind", f"{names['kind']}List")
        spec.setdefault("conversion", {"strategy": "None"})
        t = now()
        body["status"] = {
            "acceptedNames": copy.deepcopy(names),
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": t},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": t},
            ],
            "storedVersions": [v["name"] for v in versions if v.get("storage")],
        }  # fmt: skip

    # --- validation ----------------------------------------------------------------------------------

    def _unknown_fields(self, rd: ResourceDef, body: Obj, params: Params) -> None:
        """Apply `fieldValidation` to fields the schema does not know; they are never stored (decoding
        into a built-in type drops them, pruning drops them from custom resources)."""
        schema = self.schema(rd)
        if schema is None:
            return
        found = [f for f in schemas.unknown_fields(schema, body) if f != "status" or rd.is_custom]
        if rd.is_custom:
            # ObjectMeta is not in a CRD's schema; check it against the built-in definition.
            meta_schema = schemas.definitions().get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
            found = [f for f in found if not f.startswith("metadata.")]
            found += [
                f"metadata.{f}" for f in schemas.unknown_fields(meta_schema, body.get("metadata") or {})
            ]
        if not found:
            return
        if params.validation == "Strict":
            raise errors.bad_request(
                "strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in found)
            )
        if params.validation != "Ignore":
            params.warnings.extend(f'unknown field "{f}"' for f in found)
        for path in found:
            _drop(body, path)

    def _validate(self, rd: ResourceDef, obj: Obj, old: Obj | None) -> Obj:
        name = str(meta(obj).get("name", ""))
        if rd.is_custom:
            result = validation.validate_custom(rd.version_schema(), obj, old)
            if result.causes:
                raise errors.invalid(rd.kind, rd.group, name, result.causes)
            return result.obj
        causes = validation.validate_builtin_object(obj)
        if causes:
            raise errors.invalid(rd.kind, rd.group, name, causes)
        return obj

    # --- update / patch ------------------------------------------------------------------------------

    def _current(self, rd: ResourceDef, ns: str, name: str) -> Obj:
        obj = self.store.get(storage_key(rd), ns if rd.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rd.group, rd.plural, name)
        return obj

    def update(
        self, rd: ResourceDef, ns: str, name: str, body: Any, params: Params, sub: str | None = None
    ) -> Obj:
        if sub == "scale":
            return self.update_scale(rd, ns, name, body, params)
        old = self._current(rd, ns, name)
        # The caller hands over a freshly decoded body; it becomes the stored object.
        body = self._check_type(rd, body)
        self._unknown_fields(rd, body, params)
        if rd.group == "events.k8s.io":
            body = events.to_core(body)
        m = body.setdefault("metadata", {})
        if m.get("name") and m["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({m['name']}) does not match the name on the URL ({name})"
            )
        if rd.namespaced and m.get("namespace") and m["namespace"] != ns:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        rv = m.get("resourceVersion")
        if rv and rv != meta(old).get("resourceVersion"):
            raise errors.conflict(rd.group, rd.plural, name, errors.STALE)
        fs = patching.field_set(_managed_view(body), self.schema(rd))
        return self.commit(rd, old, body, params, sub, ("Update", fs))

    def patch(
        self,
        rd: ResourceDef,
        ns: str,
        name: str,
        raw: bytes,
        content_type: str,
        params: Params,
        sub: str | None,
    ) -> Obj:
        if content_type == APPLY_PATCH:
            return self.apply(rd, ns, name, raw, params, sub)
        if content_type not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH) or (
            content_type == STRATEGIC_PATCH and rd.is_custom
        ):
            accepted = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
            if not rd.is_custom:
                accepted.insert(2, STRATEGIC_PATCH)
            raise errors.unsupported_media(accepted)
        try:
            patch = json.loads(raw or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        if content_type != JSON_PATCH and not isinstance(patch, dict):
            raise errors.bad_request("error decoding patch: json: cannot unmarshal into Go value of type map")
        if sub == "scale":
            scale = self.get_scale(rd, ns, name)
            new_scale = self._apply_patch(scale, patch, content_type, None)
            return self.update_scale(rd, ns, name, new_scale, params)
        old = self._current(rd, ns, name)
        view = self.view(rd, old)
        new = self._apply_patch(view, patch, content_type, self.schema(rd))
        if not isinstance(new, dict):
            raise errors.bad_request("the patch produced something that is not an object")
        rv = meta(new).get("resourceVersion")
        if rv and rv != meta(old).get("resourceVersion"):
            raise errors.conflict(rd.group, rd.plural, name, errors.STALE)
        self._unknown_fields(rd, new, params)
        if rd.group == "events.k8s.io":
            new = events.to_core(new)
        fs = patching.field_set(_managed_view(patch), self.schema(rd)) if isinstance(patch, dict) else {}
        return self.commit(rd, old, new, params, sub, ("Update", fs))

    @staticmethod
    def _apply_patch(base: Obj, patch: Any, content_type: str, schema: Schema | None) -> Any:
        if content_type == JSON_PATCH:
            return patching.json_patch(base, patch)
        if content_type == MERGE_PATCH:
            return patching.merge_patch(base, patch)
        return patching.strategic_merge(base, patch, schema)

    def apply(self, rd: ResourceDef, ns: str, name: str, raw: bytes, params: Params, sub: str | None) -> Obj:
        try:
            applied = yaml.safe_load(raw.decode() or "null")
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise errors.bad_request(f"error decoding YAML: {exc}") from exc
        if not isinstance(applied, dict):
            raise errors.bad_request("error decoding YAML: the applied configuration must be an object")
        if not params.manager:
            raise errors.invalid(
                "PatchOptions", "meta.k8s.io", "",
                [("FieldValueRequired", "fieldManager", "Required value: is required for apply patch")],
            )  # fmt: skip
        if not applied.get("apiVersion") or not applied.get("kind"):
            raise errors.bad_request("invalid object type: /, Kind=")
        self._check_type(rd, applied)
        m = applied.setdefault("metadata", {})
        if m.get("name") and m["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({m['name']}) does not match the name on the URL ({name})"
            )
        m["name"] = name
        schema = self.schema(rd)
        old = self.store.get(storage_key(rd), ns if rd.namespaced else "", name)
        if sub == "status":
            applied = {
                "apiVersion": applied["apiVersion"],
                "kind": applied["kind"],
                "metadata": {"name": name},
                "status": applied.get("status", {}),
            }
        self._unknown_fields(rd, applied, params)
        entries = list(meta(old).get("managedFields") or []) if old else []
        previous: dict[str, Any] | None = None
        others: dict[str, Any] = {}
        for e in entries:
            if e.get("operation") != "Apply" or e.get("subresource", "") != (sub or ""):
                continue
            if e.get("manager") == params.manager:
                previous = e.get("fieldsV1")
            else:
                others = patching.union(others, e.get("fieldsV1") or {})
        if sub == "status":
            status_schema = schemas.child(schema, "status")
            base = copy.deepcopy(dict(old or {}))
            prev_status = (previous or {}).get("f:status")
            merged_status, fs_status = patching.server_side_apply(
                base.get("status") or {}, applied.get("status") or {}, status_schema, prev_status,
                others.get("f:status") or {})  # fmt: skip
            merged_status.pop("metadata", None)
            base["status"] = merged_status
            fs_status.pop("f:metadata", None)
            new, fs = base, {"f:status": fs_status}
        else:
            new, fs = patching.server_side_apply(
                copy.deepcopy(dict(self.view(rd, old))) if old else None, applied, schema, previous, others
            )
        if old is not None:
            others_all = [
                (str(e.get("manager", "")), str(e.get("apiVersion", "")), e.get("fieldsV1") or {})
                for e in entries
                if not (
                    e.get("manager") == params.manager
                    and e.get("operation") == "Apply"
                    and e.get("subresource", "") == (sub or "")
                )
            ]
            found = patching.apply_conflicts(self.view(rd, old), new, fs, others_all)
            if found and not params.force:
                raise _apply_conflict(rd, name, found)
            if found:
                # Forced: the appliers whose fields were taken lose them.
                taken = {path for _, _, path in found}
                kept = []
                for e in meta(old).get("managedFields") or []:
                    if not (e.get("manager") == params.manager and e.get("operation") == "Apply"):
                        e = dict(e, fieldsV1=patching.without_paths(e.get("fieldsV1") or {}, taken))
                    kept.append(e)
                new.setdefault("metadata", {})["managedFields"] = kept
        if old is None:
            if sub:
                raise errors.not_found(rd.group, rd.plural, name)
            new["metadata"]["managedFields"] = [self._entry(params.manager, "Apply", rd, fs, None)]
            return self.create(rd, ns, new, params, skip_unknown=True)
        if old and "status" in old and sub != "status":
            new["status"] = old["status"]
        return self.commit(rd, old, new, params, sub, ("Apply", fs))

    def _entry(self, manager: str, op: str, rd: ResourceDef, fs: dict[str, Any], sub: str | None) -> Obj:
        entry: Obj = {"manager": manager, "operation": op, "apiVersion": rd.api_version, "time": now(),
                      "fieldsType": "FieldsV1", "fieldsV1": fs}  # fmt: skip
        if sub:
            entry["subresource"] = sub
        return entry

    def _record(
        self, obj: Obj, manager: str, op: str, rd: ResourceDef, fs: dict[str, Any], sub: str | None
    ) -> None:
        entries = [
            e for e in meta(obj).get("managedFields") or []
            if not (e.get("manager") == manager and e.get("operation") == op and e.get("subresource", "") == (sub or ""))
        ]  # fmt: skip
        previous = next(
            (e.get("fieldsV1") or {} for e in meta(obj).get("managedFields") or []
             if e.get("manager") == manager and e.get("operation") == op and e.get("subresource", "") == (sub or "")),
            {},
        )  # fmt: skip
        fs = fs if op == "Apply" else patching.union(previous, fs)
        entries.append(self._entry(manager, op, rd, fs, sub))
        obj["metadata"]["managedFields"] = entries

    def commit(
        self,
        rd: ResourceDef,
        old: Obj,
        new: Obj,
        params: Params,
        sub: str | None,
        managed: tuple[str, dict[str, Any]] | None = None,
    ) -> Obj:
        """Write an update of `old` to `new`, keeping what the caller may not change."""
        skey = storage_key(rd)
        om = meta(old)
        if sub == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        else:
            new = dict(new)
            new["metadata"] = dict(meta(new))
            if rd.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
        nm = new["metadata"]
        for key in ("name", "namespace", *_SERVER_META):
            if key in om:
                nm[key] = om[key]
            else:
                nm.pop(key, None)
        nm.pop("resourceVersion", None)
        nm.pop("selfLink", None)
        if "managedFields" not in nm and "managedFields" in om:
            nm["managedFields"] = om["managedFields"]
        new["apiVersion"] = "v1" if skey == "/events" else rd.api_version
        new["kind"] = rd.kind
        self._kind_specific_update(rd, old, new)
        defaults.apply(skey, new)
        # Custom resources are validated (and pruned) on status writes too, as the real server does; a
        # built-in's status is written by our own controllers and checked only by their types.
        if sub != "status" or rd.is_custom:
            new = self._validate(rd, new, old)
            nm = new["metadata"]
        if self._tracks_generation(rd) and _spec_changed(rd, old, new):
            nm["generation"] = int(om.get("generation") or 1) + 1
        if managed is not None:
            self._record(new, params.manager or params.default_manager, managed[0], rd, managed[1], sub)
        if _same(old, new):
            return self.view(rd, old)
        if params.dry_run:
            nm["resourceVersion"] = om.get("resourceVersion")  # a dry run writes nothing, so rv stays
            return self.view(rd, new)
        if om.get("deletionTimestamp"):
            # A terminating namespace also waits for its spec.finalizers (the namespace controller's).
            spec_finalizers = skey == "/namespaces" and (new.get("spec") or {}).get("finalizers")
            # A pod in graceful deletion stays until the kubelet's final delete (grace period 0).
            graceful = int(om.get("deletionGracePeriodSeconds") or 0) > 0
            if not nm.get("finalizers") and not spec_finalizers and not graceful:
                nm["resourceVersion"] = om.get("resourceVersion")
                final = self.store.remove(skey, om.get("namespace") or "", om["name"])
                return self.view(rd, final or new)
            added = set(nm.get("finalizers") or []) - set(om.get("finalizers") or [])
            if added:
                raise errors.forbidden(rd.group, rd.plural, om["name"],
                                       "no new finalizers can be added if the object is being deleted, found new "
                                       f"finalizers {json.dumps(sorted(added))}")  # fmt: skip
        obj = self.store.put(skey, new)
        return self.view(rd, obj)

    def _kind_specific_update(self, rd: ResourceDef, old: Obj, new: Obj) -> None:
        skey = storage_key(rd)
        if skey == "/services":
            ospec, nspec = old.get("spec") or {}, new.setdefault("spec", {})
            if ospec.get("clusterIP") and not nspec.get("clusterIP"):
                nspec["clusterIP"] = ospec["clusterIP"]
                nspec["clusterIPs"] = ospec.get("clusterIPs", [ospec["clusterIP"]])
        elif skey == "batch/jobs":
            ospec, nspec = old.get("spec") or {}, new.setdefault("spec", {})
            if "selector" in ospec and "selector" not in nspec:
                nspec["selector"] = ospec["selector"]
        elif skey == "apiextensions.k8s.io/customresourcedefinitions":
            status = new.get("status")
            self._crd_prepare(new)
            if isinstance(status, dict) and status.get("conditions"):
                new["status"]["conditions"] = status["conditions"]
                new["status"]["storedVersions"] = sorted(
                    set(status.get("storedVersions") or []) | set(new["status"]["storedVersions"])
                )

    # --- scale ---------------------------------------------------------------------------------------

    def _scale_paths(self, rd: ResourceDef) -> tuple[str, str, str | None]:
        if rd.is_custom:
            scale = (rd.crd_version().get("subresources") or {}).get("scale") or {}
            return (scale.get("specReplicasPath", ".spec.replicas"), scale.get("statusReplicasPath",
                    ".status.replicas"), scale.get("labelSelectorPath"))  # fmt: skip
        return (".spec.replicas", ".status.replicas", None)

    def get_scale(self, rd: ResourceDef, ns: str, name: str) -> Obj:
        obj = self._current(rd, ns, name)
        spec_path, status_path, selector_path = self._scale_paths(rd)
        m = meta(obj)
        selector: Any = ""
        if selector_path:
            selector = _dig(obj, selector_path) or ""
        else:
            match = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        status: Obj = {"replicas": _dig(obj, status_path) or 0}
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in m},
            "spec": {"replicas": _dig(obj, spec_path) or 0},
            "status": status,
        }  # fmt: skip

    def update_scale(self, rd: ResourceDef, ns: str, name: str, body: Any, params: Params) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the object provided is unrecognized (must be of type Scale)")
        old = self._current(rd, ns, name)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != meta(old).get("resourceVersion"):
            raise errors.conflict(rd.group, rd.plural, name, errors.STALE)
        replicas = (body.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid(
                "Scale",
                "autoscaling",
                name,
                [
                    (
                        "FieldValueInvalid",
                        "spec.replicas",
                        f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
                    )
                ],
            )
        new = copy.deepcopy(old)
        _set(new, self._scale_paths(rd)[0], replicas)
        self.commit(rd, old, new, params, None, ("Update", {"f:spec": {"f:replicas": {}}}))
        return self.get_scale(rd, ns, name)

    # --- delete --------------------------------------------------------------------------------------

    def delete(self, rd: ResourceDef, ns: str, name: str, options: Mapping[str, Any], params: Params) -> Obj:
        skey = storage_key(rd)
        old = self._current(rd, ns, name)
        om = meta(old)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != om.get("uid"):
            raise errors.conflict(rd.group, rd.plural, name, f"Precondition failed: UID in precondition: "
                                  f"{pre['uid']}, UID in object meta: {om.get('uid')}")  # fmt: skip
        if pre.get("resourceVersion") and pre["resourceVersion"] != om.get("resourceVersion"):
            raise errors.conflict(rd.group, rd.plural, name, "Precondition failed: ResourceVersion in "
                                  f"precondition: {pre['resourceVersion']}, ResourceVersion in object meta: "
                                  f"{om.get('resourceVersion')}")  # fmt: skip
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is None:
            policy = "Background"
            if skey == "batch/jobs":
                policy = "Orphan"
                params.warnings.append(
                    "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background "
                    "to remove them or set propagationPolicy=Orphan to suppress this warning"
                )
        if policy not in ("Background", "Foreground", "Orphan"):
            raise errors.invalid("DeleteOptions", "meta.k8s.io", "", [("FieldValueNotSupported",
                                 "propagationPolicy", f'Unsupported value: "{policy}": supported values: '
                                 '"Foreground", "Background", "Orphan", "nil"')])  # fmt: skip
        finalizers = list(om.get("finalizers") or [])
        has_dependents = bool(self.store.dependents.get(om.get("uid", "")))
        if policy == "Orphan" and has_dependents and "orphan" not in finalizers:
            finalizers.append("orphan")
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        grace = self._grace(skey, old, options)
        ns_finalizers = skey == "/namespaces" and (old.get("spec") or {}).get("finalizers")
        if not finalizers and not ns_finalizers and grace == 0:
            if params.dry_run:
                return self._deleted_answer(rd, old)
            final = self.store.remove(skey, om.get("namespace") or "", name)
            return self._deleted_answer(rd, final or old)
        unchanged = finalizers == list(om.get("finalizers") or [])
        if (
            om.get("deletionTimestamp")
            and unchanged
            and grace >= int(om.get("deletionGracePeriodSeconds") or 0)
        ):
            # Already being deleted: a repeated delete changes nothing (it may only shorten a pod's grace).
            return self.view(rd, old)
        new = copy.deepcopy(old)
        nm = new["metadata"]
        if not nm.get("deletionTimestamp"):
            if nm.get("generation"):
                nm["generation"] = int(nm["generation"]) + 1
            nm["deletionTimestamp"] = (
                datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=grace)
            ).strftime("%Y-%m-%dT%H:%M:%SZ")
        nm["deletionGracePeriodSeconds"] = grace
        nm["finalizers"] = finalizers
        if skey == "/namespaces":
            new.setdefault("status", {})["phase"] = "Terminating"
        if params.dry_run:
            return self.view(rd, new)
        return self.view(rd, self.store.put(skey, new))

    def _grace(self, skey: str, old: Obj, options: Mapping[str, Any]) -> int:
        if skey != "/pods":
            return 0
        spec, status = old.get("spec") or {}, old.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        requested = options.get("gracePeriodSeconds")
        if requested is not None:
            grace = max(0, int(requested))
        else:
            grace = int(spec.get("terminationGracePeriodSeconds", 30))
        current = meta(old).get("deletionGracePeriodSeconds")
        if current is not None:
            grace = min(grace, int(current))
        return grace

    def _deleted_answer(self, rd: ResourceDef, obj: Obj) -> Obj:
        if rd.is_custom or storage_key(rd) in ("/pods", "/namespaces"):
            return self.view(rd, obj)
        details: Obj = {"name": meta(obj).get("name"), "kind": rd.plural, "uid": meta(obj).get("uid")}
        if rd.group:
            details["group"] = rd.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    # --- hooks ---------------------------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        if event.storage_key == "apiextensions.k8s.io/customresourcedefinitions":
            if event.type == "DELETED":
                self.registry.unregister_crd(event.obj)
            else:
                self.registry.register_crd(event.obj)
        elif event.storage_key == "/namespaces" and event.type == "ADDED":
            ns = meta(event.obj)["name"]
            if self.store.get("/serviceaccounts", ns, "default") is None:
                # The service account controller's job in a real cluster; pods name it by default.
                sa = {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {
                        "name": "default",
                        "namespace": ns,
                        "uid": str(uuid.uuid4()),
                        "creationTimestamp": now(),
                    },
                }
                self.store.put("/serviceaccounts", sa)
            self._root_ca_configmap(ns)
        elif event.storage_key == "/services" and event.type == "DELETED":
            self.used_ips.discard(str((event.obj.get("spec") or {}).get("clusterIP", "")))

    def publish_root_ca(self, pem: str) -> None:
        """Keep `kube-root-ca.crt` (the root-CA publisher's ConfigMap) with `pem` in every namespace."""
        self.root_ca = pem
        for nso in self.store.list("/namespaces", None):
            self._root_ca_configmap(meta(nso)["name"])

    def _root_ca_configmap(self, ns: str) -> None:
        if self.root_ca is None:
            return
        data = {"ca.crt": self.root_ca}
        old = self.store.get("/configmaps", ns, "kube-root-ca.crt")
        if old is not None and old.get("data") == data:
            return
        cm: Obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "kube-root-ca.crt",
                "namespace": ns,
                "uid": meta(old).get("uid") if old else str(uuid.uuid4()),
                "creationTimestamp": meta(old).get("creationTimestamp") if old else now(),
                "annotations": {
                    "kubernetes.io/description": "Contains a CA bundle that can be used to verify the "
                    "kube-apiserver when using internal endpoints such as the internal service IP or "
                    "kubernetes.default.svc. No other usage is guaranteed across distributions of "
                    "Kubernetes clusters."
                },
            },
            "data": data,
        }
        self.store.put("/configmaps", cm)

    def upsert(self, rd: ResourceDef, ns: str, obj: Obj, manager: str) -> Obj:
        """Create `obj` or bring the stored one to it (spec and data; metadata labels): for objects the
        server itself maintains, such as `default/kubernetes`."""
        params = Params({"fieldManager": manager})
        name = obj["metadata"]["name"]
        old = self.store.get(storage_key(rd), ns if rd.namespaced else "", name)
        if old is None:
            return self.create(rd, ns, obj, params)
        new = copy.deepcopy(old)
        for key, value in obj.items():
            if key not in ("metadata", "apiVersion", "kind", "status"):
                new[key] = copy.deepcopy(value)
        new["metadata"]["labels"] = dict(obj["metadata"].get("labels") or {})
        return self.commit(rd, old, new, params, None)


def _apply_conflict(rd: ResourceDef, name: str, found: list[tuple[str, str, tuple[str, ...]]]) -> ApiError:
    """409 the way kube-apiserver words it, so `kubectl apply --server-side` suggests --force-conflicts."""
    causes = [
        {"reason": "FieldManagerConflict", "message": f'conflict with "{m}" using {v}',
         "field": patching.render_path(p)}
        for m, v, p in found
    ]  # fmt: skip
    if len(found) == 1:
        m, v, p = found[0]
        message = f'Apply failed with 1 conflict: conflict with "{m}" using {v}: {patching.render_path(p)}'
    else:
        lines = [f'conflicts with "{m}" using {v}:\n- {patching.render_path(p)}' for m, v, p in found]
        message = f"Apply failed with {len(found)} conflicts: " + "\n".join(lines)
    details: dict[str, Any] = {"name": name, "kind": rd.plural, "causes": causes}
    if rd.group:
        details["group"] = rd.group
    return ApiError(409, "Conflict", message, details)


def _drop(obj: Any, path: str) -> None:
    """Remove the field at `spec.containers[0].foo` from `obj`, if it is there."""
    steps: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            steps.append(name)
        for index in rest.split("[") if rest else []:
            steps.append(int(index.rstrip("]")))
    for step in steps[:-1]:
        if isinstance(step, int):
            obj = obj[step] if isinstance(obj, list) and step < len(obj) else None
        else:
            obj = obj.get(step) if isinstance(obj, dict) else None
        if obj is None:
            return
    if isinstance(obj, dict) and isinstance(steps[-1], str):
        obj.pop(steps[-1], None)


def _managed_view(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return {}
    out = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    m = out.get("metadata")
    if isinstance(m, dict):
        out["metadata"] = {k: v for k, v in m.items() if k in ("labels", "annotations", "finalizers",
                                                                "ownerReferences")}  # fmt: skip
        if not out["metadata"]:
            del out["metadata"]
    return out


def _strip(obj: Obj, keys: tuple[str, ...]) -> Obj:
    return {k: v for k, v in obj.items() if k not in keys}


def _spec_changed(rd: ResourceDef, old: Obj, new: Obj) -> bool:
    ignored: tuple[str, ...] = ("metadata", "status") if rd.has_status else ("metadata",)
    return _strip(old, ignored) != _strip(new, ignored)


def _same(old: Obj, new: Obj) -> bool:
    om = {k: v for k, v in meta(old).items() if k not in ("resourceVersion", "managedFields")}
    nm = {k: v for k, v in meta(new).items() if k not in ("resourceVersion", "managedFields")}
    return om == nm and _strip(old, ("metadata",)) == _strip(new, ("metadata",))


def _dig(obj: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _set(obj: Obj, path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    obj[parts[-1]] = value


def _qos_class(spec: Obj) -> str:
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    reqs = [(c.get("resources") or {}) for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in reqs):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get("cpu") and (r.get("limits") or {}).get("memory")
        and all((r.get("requests") or {}).get(k, (r.get("limits") or {}).get(k)) == (r.get("limits") or {}).get(k)
                for k in ("cpu", "memory"))
        for r in reqs
    )  # fmt: skip
    return "Guaranteed" if guaranteed else "Burstable"
