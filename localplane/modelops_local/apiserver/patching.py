"""The four patch types: JSON merge (RFC 7386), JSON patch (RFC 6902), strategic merge, server-side apply.

Strategic merge and apply need to know how each list merges; they read it from the schema
(`x-kubernetes-patch-strategy`/`-merge-key` for built-ins, `x-kubernetes-list-type`/`-map-keys` for both).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from . import schemas
from .errors import ApiError
from .schemas import Schema


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- JSON patch ----------------------------------------------------------------------------------------


def _patch_error(message: str) -> ApiError:
    return ApiError(
        422, "Invalid", f"the server rejected our request due to an error in our request: {message}"
    )


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _patch_error(f'invalid JSON pointer "{path}": must start with "/"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    current = doc
    for part in parts[:-1]:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise _patch_error(f'doc is missing path: "{path}": missing value')
    return current, parts[-1]


def _get(doc: Any, path: str) -> Any:
    current = doc
    for part in _pointer(path):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise _patch_error(f'doc is missing path: "{path}": missing value')
    return current


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _patch_error(f'unable to access invalid index: "{path}"')
    else:
        raise _patch_error(f'doc is missing path: "{path}": missing value')
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise _patch_error(f"Unable to remove nonexistent key: {last}: missing value")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise ApiError(
            400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, Mapping):
            raise _patch_error("invalid operation")
        kind, path = op.get("op"), str(op.get("path", ""))
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            doc = (
                _add(_remove(doc, path), path, copy.deepcopy(op.get("value")))
                if _pointer(path)
                else op.get("value")
            )
        elif kind == "move":
            value = _get(doc, str(op.get("from", "")))
            doc = _add(_remove(doc, str(op.get("from", ""))), path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, str(op.get("from", "")))))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise _patch_error(f"testing value {path} failed: test failed")
        else:
            raise _patch_error(f"Unexpected kind: {kind}")
    return doc


# --- strategic merge patch -----------------------------------------------------------------------------


def strategic_merge(original: Any, patch: Any, schema: Schema | None) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(original) if isinstance(original, Mapping) else {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            remove = value if isinstance(value, list) else []
            result[name] = [x for x in result.get(name) or [] if x not in remove]
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = schemas.child(schema, key)
        if isinstance(value, Mapping):
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = strategic_merge(result.get(key), value, sub)
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, sub)
        else:
            result[key] = value
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: Any, patch: list[Any], schema: Schema | None) -> list[Any]:
    if any(isinstance(x, Mapping) and x.get("$patch") == "replace" for x in patch):
        return [copy.deepcopy(x) for x in patch if not (isinstance(x, Mapping) and "$patch" in x)]
    strategy, key = schemas.patch_strategy(schema)
    current = list(original) if isinstance(original, list) else []
    if "merge" not in strategy.split(","):
        return [copy.deepcopy(x) for x in patch]
    if key is None:
        return current + [copy.deepcopy(x) for x in patch if x not in current]
    item_schema = schemas.items(schema)
    for item in patch:
        if not isinstance(item, Mapping):
            continue
        index = next(
            (
                i
                for i, old in enumerate(current)
                if isinstance(old, Mapping) and old.get(key) == item.get(key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del current[index]
            continue
        if index is None:
            current.append(strategic_merge({}, item, item_schema))
        else:
            current[index] = strategic_merge(current[index], item, item_schema)
    return current


# --- server-side apply ---------------------------------------------------------------------------------

FieldSet = dict[str, Any]


def field_set(obj: Any, schema: Schema | None) -> FieldSet:
    """The fieldsV1 set of the fields present in `obj`."""
    out: FieldSet = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            sub = schemas.child(schema, key)
            out[f"f:{key}"] = _value_set(value, sub)
    return out


def _value_set(value: Any, schema: Schema | None) -> FieldSet:
    if isinstance(value, Mapping):
        if schemas.preserves_unknown(schema) and not (schemas.resolve(schema) or {}).get("properties"):
            return field_set(value, None)
        return field_set(value, schema)
    if isinstance(value, list):
        list_type, keys = schemas.list_keys(schema)
        item_schema = schemas.items(schema)
        out: FieldSet = {}
        if list_type == "map" and keys:
            for item in value:
                if isinstance(item, Mapping):
                    ident = json.dumps({k: item.get(k) for k in keys if k in item}, separators=(",", ":"))
                    sub = field_set(item, item_schema)
                    sub["."] = {}
                    out[f"k:{ident}"] = sub
        elif list_type == "set":
            for item in value:
                out[f"v:{json.dumps(item, separators=(',', ':'))}"] = {}
        return out
    return {}


def _paths(fs: FieldSet, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for key, sub in fs.items():
        if key == ".":
            continue
        path = (*prefix, key)
        out.add(path)
        if isinstance(sub, dict):
            out |= _paths(sub, path)
    return out


def union(a: FieldSet, b: FieldSet) -> FieldSet:
    out = copy.deepcopy(a)
    for key, sub in b.items():
        if key in out and isinstance(out[key], dict) and isinstance(sub, dict):
            out[key] = union(out[key], sub)
        else:
            out[key] = copy.deepcopy(sub)
    return out


def apply_merge(live: Any, applied: Any, schema: Schema | None) -> Any:
    """Merge an applied configuration into the live object: maps and associative lists merge, others replace."""
    if not isinstance(applied, Mapping):
        return copy.deepcopy(applied)
    result = dict(live) if isinstance(live, Mapping) else {}
    for key, value in applied.items():
        sub = schemas.child(schema, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            result[key] = apply_merge(result.get(key), value, sub)
        elif isinstance(value, list):
            result[key] = _apply_list(result.get(key), value, sub)
        else:
            result[key] = value
    return result


def _apply_list(live: Any, applied: list[Any], schema: Schema | None) -> list[Any]:
    list_type, keys = schemas.list_keys(schema)
    current = list(live) if isinstance(live, list) else []
    if list_type == "map" and keys:
        item_schema = schemas.items(schema)
        for item in applied:
            if not isinstance(item, Mapping):
                continue
            index = next(
                (
                    i
                    for i, old in enumerate(current)
                    if isinstance(old, Mapping) and all(old.get(k) == item.get(k) for k in keys)
                ),
                None,
            )
            if index is None:
                current.append(copy.deepcopy(dict(item)))
            else:
                current[index] = apply_merge(current[index], item, item_schema)
        return current
    if list_type == "set":
        return current + [copy.deepcopy(x) for x in applied if x not in current]
    return [copy.deepcopy(x) for x in applied]


def _remove_path(obj: Any, path: tuple[str, ...]) -> None:
    """Remove the field or list item at a fieldsV1 path, with everything under it."""
    parent: Any = obj
    for step in path[:-1]:
        parent = _step(parent, step)
        if parent is None:
            return
    last = path[-1]
    if isinstance(parent, dict) and last.startswith("f:"):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        target = _step(parent, last)
        if target is not None:
            parent.remove(target)


def _step(node: Any, step: str) -> Any:
    if isinstance(node, dict) and step.startswith("f:"):
        return node.get(step[2:])
    if isinstance(node, list) and step.startswith("k:"):
        ident = json.loads(step[2:])
        return next(
            (x for x in node if isinstance(x, dict) and all(x.get(k) == v for k, v in ident.items())), None
        )
    if isinstance(node, list) and step.startswith("v:"):
        value = json.loads(step[2:])
        return value if value in node else None
    return None


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    schema: Schema | None,
    previous: FieldSet | None,
    owned_by_others: FieldSet,
) -> tuple[dict[str, Any], FieldSet]:
    """Returns the new object and the manager's new field set.

    Fields this manager applied before but no longer applies are removed unless another applier owns
    them. Ownership by non-apply (Update) managers is not tracked, so there are no apply conflicts.
    """
    body = {k: v for k, v in applied.items() if k != "status"}
    meta = dict(body.get("metadata") or {})
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink"):
        meta.pop(key, None)
    body["metadata"] = meta
    new_set = field_set(body, schema)
    for key in ("f:apiVersion", "f:kind"):
        new_set.pop(key, None)
    for key in ("f:name", "f:namespace"):
        new_set.get("f:metadata", {}).pop(key, None)
    if new_set.get("f:metadata") == {}:
        del new_set["f:metadata"]
    merged: dict[str, Any] = apply_merge(copy.deepcopy(live or {}), body, schema)
    if previous:
        removed = _paths(previous) - _paths(new_set) - _paths(owned_by_others)
        # Shortest first: a removed path is owned by nobody, so neither is anything under it.
        for path in sorted(removed, key=len):
            if path[0] in ("f:apiVersion", "f:kind") or path[:2] in (("f:metadata", "f:name"),):
                continue
            _remove_path(merged, path)
    return merged, new_set


def _leaf_paths(fs: FieldSet, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for key, sub in fs.items():
        if key == ".":
            continue
        path = (*prefix, key)
        children = {k: v for k, v in sub.items() if k != "."} if isinstance(sub, dict) else {}
        if children:
            out |= _leaf_paths(children, path)
        else:
            out.add(path)
    return out


def _value_at(obj: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    node = obj
    for step in path:
        node = _step(node, step)
        if node is None:
            return False, None
    return True, node


def render_path(path: tuple[str, ...]) -> str:
    """A fieldsV1 path as the real server prints it in conflicts: `.spec.containers[name="main"].image`."""
    out = ""
    for step in path:
        if step.startswith("f:"):
            out += "." + step[2:]
        elif step.startswith("k:"):
            ident = json.loads(step[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in ident.items()) + "]"
        elif step.startswith("v:"):
            out += f"[={step[2:]}]"
    return out


def apply_conflicts(
    live: Any, merged: Any, applied_set: FieldSet, others: list[tuple[str, str, FieldSet]]
) -> list[tuple[str, str, tuple[str, ...]]]:
    """(manager, apiVersion, path) of fields another manager owns that this apply would change."""
    mine = _leaf_paths(applied_set)
    found: list[tuple[str, str, tuple[str, ...]]] = []
    for manager, api_version, fs in others:
        for path in sorted(mine & _leaf_paths(fs)):
            had, before = _value_at(live, path)
            has, after = _value_at(merged, path)
            if had and (not has or before != after):
                found.append((manager, api_version, path))
    return found


def without_paths(fs: FieldSet, paths: set[tuple[str, ...]]) -> FieldSet:
    """`fs` with the given leaf paths (and maps left empty by their removal) taken out."""
    out: FieldSet = {}
    for key, sub in fs.items():
        if (key,) in paths:
            continue
        if isinstance(sub, dict) and sub:
            nested = without_paths(sub, {p[1:] for p in paths if p and p[0] == key and len(p) > 1})
            if nested or not any(p[0] == key for p in paths):
                out[key] = nested
        else:
            out[key] = sub
    return out
