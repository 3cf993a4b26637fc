"""The official Kubernetes object schemas (shipped by kubernetes-validate) and walking them.

The server needs them for three things: patch strategies of built-in lists (strategic merge, server-side
apply), unknown-field detection for `fieldValidation`, and the OpenAPI documents kubectl reads.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

KUBE_SCHEMA_VERSION = "v1.33.0"

Schema = Mapping[str, Any]


@functools.cache
def definitions() -> dict[str, Any]:
    """The `$defs` of the official schemas: definition name -> JSON schema (refs as `#/$defs/<name>`)."""
    try:
        import kubernetes_validate
    except ImportError:  # pragma: no cover - kubernetes-validate is a dev dependency
        return {}
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = base / f"{KUBE_SCHEMA_VERSION}-local" / "_definitions.json"
    if not path.exists():
        candidates = sorted(base.glob("v1.*-local/_definitions.json"))
        if not candidates:
            return {}
        path = candidates[-1]
    data = json.loads(path.read_text())
    defs = data.get("$defs") or data.get("definitions") or {}
    return dict(defs)


@functools.cache
def gvk_index() -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> definition name."""
    out: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            out.setdefault((gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", "")), name)
    return out


def builtin_schema(group: str, version: str, kind: str) -> Schema | None:
    name = gvk_index().get((group, version, kind))
    return definitions().get(name) if name else None


def resolve(node: Schema | None) -> Schema | None:
    """Follow `$ref` (and a single-entry `allOf`) to the schema it names."""
    seen = 0
    while node is not None and seen < 32:
        seen += 1
        ref = node.get("$ref")
        if isinstance(ref, str):
            node = definitions().get(ref.rsplit("/", 1)[-1])
            continue
        all_of = node.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and "properties" not in node:
            node = all_of[0]
            continue
        return node
    return node


def child(node: Schema | None, key: str) -> Schema | None:
    """The schema of a map's value at `key`, keeping list annotations found at the property itself."""
    node = resolve(node)
    if node is None:
        return None
    props = node.get("properties")
    if isinstance(props, Mapping) and key in props:
        prop: Schema = props[key]
        return prop
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        return extra
    return None


def items(node: Schema | None) -> Schema | None:
    resolved = resolve(node)
    if resolved is None:
        return None
    it = resolved.get("items")
    return it if isinstance(it, Mapping) else None


def list_keys(node: Schema | None) -> tuple[str, list[str]]:
    """(list-type, keys) for an array schema: ("map", [keys]) / ("set", []) / ("atomic", [])."""
    if node is None:
        return ("atomic", [])
    candidates = [node]
    resolved = resolve(node)
    if resolved is not None and resolved is not node:
        candidates.append(resolved)
    for n in candidates:
        list_type = n.get("x-kubernetes-list-type")
        if list_type == "map":
            return ("map", list(n.get("x-kubernetes-list-map-keys") or []))
        if list_type in ("set", "atomic"):
            return (str(list_type), [])
        strategy = str(n.get("x-kubernetes-patch-strategy") or "")
        if "merge" in strategy.split(","):
            key = n.get("x-kubernetes-patch-merge-key")
            return ("map", [str(key)]) if key else ("set", [])
    return ("atomic", [])


def patch_strategy(node: Schema | None) -> tuple[str, str | None]:
    """(strategy, merge key) as strategic merge patch reads it; strategy "" means replace."""
    if node is None:
        return ("", None)
    for n in (node, resolve(node) or {}):
        strategy = str(n.get("x-kubernetes-patch-strategy") or "")
        if strategy:
            key = n.get("x-kubernetes-patch-merge-key")
            return (strategy, str(key) if key else None)
    return ("", None)


def preserves_unknown(node: Schema | None) -> bool:
    node = resolve(node)
    return bool(node and node.get("x-kubernetes-preserve-unknown-fields"))


def unknown_fields(schema: Schema | None, obj: Any, path: str = "") -> Iterator[str]:
    """Paths of fields in `obj` that the schema does not declare (for `fieldValidation`)."""
    node = resolve(schema)
    if (
        node is None
        or node.get("x-kubernetes-preserve-unknown-fields")
        or node.get("x-kubernetes-int-or-string")
    ):
        return
    if isinstance(obj, Mapping):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if not isinstance(props, Mapping):
            if isinstance(extra, Mapping):
                for k, v in obj.items():
                    yield from unknown_fields(extra, v, f"{path}.{k}" if path else str(k))
            return
        for k, v in obj.items():
            sub = f"{path}.{k}" if path else str(k)
            if path == "" and k in ("apiVersion", "kind"):
                continue
            if path == "" and k == "metadata" and "metadata" not in props:
                continue
            if k in props:
                yield from unknown_fields(props[k], v, sub)
            elif isinstance(extra, Mapping):
                yield from unknown_fields(extra, v, sub)
            elif extra is True:
                continue
            else:
                yield sub
    elif isinstance(obj, list):
        it = node.get("items")
        if isinstance(it, Mapping):
            for i, v in enumerate(obj):
                yield from unknown_fields(it, v, f"{path}[{i}]")
