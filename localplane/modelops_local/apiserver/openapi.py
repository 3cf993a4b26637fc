"""`/openapi/v2` and `/openapi/v3`: built from the official definitions plus every CRD's schema.

kubectl reads them for `kubectl explain`, and to learn that the server accepts `fieldValidation` on
PATCH (then it lets the server validate instead of validating on the client).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from aiohttp import web

from . import schemas
from .errors import ApiError
from .resources import Registry, ResourceDef

Obj = dict[str, Any]
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
PROTO_V2 = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _convert(node: Any, prefix: str) -> Any:
    """JSON-schema-flavoured definitions (type lists, `$defs`) to OpenAPI ones."""
    if isinstance(node, list):
        return [_convert(x, prefix) for x in node]
    if not isinstance(node, dict):
        return node
    out: Obj = {}
    for key, value in node.items():
        if key == "$ref":
            continue
        if key == "type" and isinstance(value, list):
            kinds = [v for v in value if v != "null"]
            if len(kinds) == 1:
                out["type"] = kinds[0]
            continue
        if key == "oneOf" and isinstance(value, list):
            oneof = {t for v in value for t in (v.get("type") or []) if t != "null"}
            if oneof == {"string", "integer"}:
                out["x-kubernetes-int-or-string"] = True
                out["format"] = "int-or-string"
            else:
                out["format"] = "quantity" if "number" in oneof else out.get("format", "")
            continue
        if key == "enum" and node.get("type") in (["string", "null"], "string") and len(value) == 1:
            continue  # apiVersion/kind pins added by kubernetes-json-schema; the real documents have none
        out[key] = _convert(value, prefix) if key in ("properties", "additionalProperties", "items") or isinstance(
            value, (dict, list)) else value  # fmt: skip
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _convert(v, prefix) for k, v in value.items()}
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = prefix + ref.rsplit("/", 1)[-1]
        if len(out) == 0:
            return {"$ref": target}
        out["allOf"] = [{"$ref": target}]
    return out


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in found:
                found.add(name)
                _refs(schemas.definitions().get(name), found)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def crd_schema_name(rd: ResourceDef) -> str:
    return ".".join(reversed(rd.group.split("."))) + f".{rd.version}.{rd.kind}"


def crd_schema(rd: ResourceDef, prefix: str) -> Obj:
    schema = copy.deepcopy(rd.version_schema() or {"type": "object"})
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "description": "APIVersion defines the versioned schema of this "
                           "representation of an object."}  # fmt: skip
    props["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource "
                     "this object represents."}  # fmt: skip
    props["metadata"] = {
        "allOf": [{"$ref": prefix + OBJECT_META}],
        "description": "Standard object's metadata.",
    }
    schema["x-kubernetes-group-version-kind"] = [{"group": rd.group, "version": rd.version, "kind": rd.kind}]
    return schema


def _params(*names: str) -> list[Obj]:
    return [{"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True} for n in names]


def _paths(rd: ResourceDef, schema_ref: str, v3: bool) -> dict[str, Obj]:
    base = f"/apis/{rd.group}/{rd.version}" if rd.group else "/api/v1"
    collection = f"{base}/namespaces/{{namespace}}/{rd.plural}" if rd.namespaced else f"{base}/{rd.plural}"
    gvk = {"group": rd.group, "version": rd.version, "kind": rd.kind}

    def op(action: str, body: bool = False, extra: tuple[str, ...] = ()) -> Obj:
        response: Obj = {"description": "OK"}
        if v3:
            response["content"] = {"application/json": {"schema": {"$ref": schema_ref}}}
        else:
            response["schema"] = {"$ref": schema_ref}
        o: Obj = {
            "operationId": f"{action}{rd.kind}",
            "parameters": _params(*extra),
            "responses": {"200": response},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        }
        if body and v3:
            o["requestBody"] = {"content": {"*/*": {"schema": {"$ref": schema_ref}}}, "required": True}
        return o

    write = ("dryRun", "fieldManager", "fieldValidation")
    item: Obj = {
        "get": op("get"),
        "put": op("put", True, write),
        "patch": op("patch", True, (*write, "force")),
        "delete": op("delete"),
    }
    coll: Obj = {"get": op("list", extra=("labelSelector", "fieldSelector", "limit", "continue", "watch")),
                 "post": op("post", True, write)}  # fmt: skip
    return {collection: coll, f"{collection}/{{name}}": item}


class OpenAPI:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._cache: dict[str, bytes] = {}
        self._cache_key: tuple[Any, ...] = ()

    def _key(self) -> tuple[Any, ...]:
        return tuple(sorted((r.group, r.version, r.plural, id(r.crd)) for r in self.registry.all()))

    def _cached(self, name: str, build: Any) -> bytes:
        key = self._key()
        if key != self._cache_key:
            self._cache.clear()
            self._cache_key = key
        if name not in self._cache:
            self._cache[name] = json.dumps(build(), separators=(",", ":")).encode()
        return self._cache[name]

    def gv_document(self, group: str, version: str) -> Obj | None:
        defs = [r for r in self.registry.all() if r.group == group and r.version == version]
        if not defs:
            return None
        prefix = "#/components/schemas/"
        components: Obj = {}
        paths: Obj = {}
        names: set[str] = set()
        for rd in defs:
            if rd.verbs == ("create",):
                continue
            if rd.is_custom:
                name = crd_schema_name(rd)
                components[name] = crd_schema(rd, prefix)
                names.add(OBJECT_META)
                _refs(schemas.definitions().get(OBJECT_META), names)
            else:
                name = schemas.gvk_index().get((rd.group, rd.version, rd.kind)) or ""
                if not name:
                    continue
                names.add(name)
                _refs(schemas.definitions().get(name), names)
            paths.update(_paths(rd, prefix + name, True))
        for n in names:
            if n in schemas.definitions():
                components[n] = _convert(schemas.definitions()[n], prefix)
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": schemas.KUBE_SCHEMA_VERSION},
            "paths": paths,
            "components": {"schemas": components},
        }

    def v2_document(self) -> Obj:
        prefix = "#/definitions/"
        definitions = {n: _convert(s, prefix) for n, s in schemas.definitions().items()}
        paths: Obj = {}
        for rd in self.registry.all():
            if rd.verbs == ("create",):
                continue
            if rd.is_custom:
                name = crd_schema_name(rd)
                definitions[name] = crd_schema(rd, prefix)
            else:
                name = schemas.gvk_index().get((rd.group, rd.version, rd.kind)) or ""
                if not name:
                    continue
            paths.update(_paths(rd, prefix + name, False))
        return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": schemas.KUBE_SCHEMA_VERSION},
                "paths": paths, "definitions": definitions}  # fmt: skip

    def serve(self, request: web.Request, parts: list[str]) -> web.Response:
        if parts[1:] == ["v2"]:
            accept = request.headers.get("Accept", "")
            if "protobuf" in accept and "json" not in accept:
                # kubectl asks for the v2 document (as protobuf) only to validate kinds that the v3 documents
                # do not know, i.e. custom resources whose CRD is missing. An empty document (gnostic
                # Document{swagger: "2.0"}) validates nothing, so kubectl goes on to report the missing
                # kind as it does against a real cluster ("no matches for kind ... ensure CRDs are
                # installed first").
                return web.Response(body=b"\x0a\x032.0", content_type=PROTO_V2)
            return web.Response(body=self._cached("v2", self.v2_document), content_type="application/json")
        if parts[1:] == ["v3"]:
            root: Obj = {"paths": {}}
            for group, versions in self.registry.groups().items():
                for version in versions:
                    path = f"apis/{group}/{version}" if group else f"api/{version}"
                    doc = self._cached(path, lambda g=group, v=version: self.gv_document(g, v))
                    digest = hashlib.sha512(doc).hexdigest()[:32].upper()
                    root["paths"][path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
            return web.json_response(root)
        if len(parts) >= 3 and parts[1] == "v3":
            path = "/".join(parts[2:])
            if path.startswith("apis/") and len(parts) == 5:
                group, version = parts[3], parts[4]
            elif path.startswith("api/") and len(parts) == 4:
                group, version = "", parts[3]
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            if self.registry.api_resource_list(group, version) is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            body = self._cached(path, lambda: self.gv_document(group, version))
            return web.Response(
                body=body,
                content_type="application/json",
                headers={"Cache-Control": "public, immutable"} if "hash" in request.query else {},
            )
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
