"""Pruning, defaulting and OpenAPI validation of custom resources, as apiextensions-apiserver does them.

The local API server must accept and reject exactly what a real cluster would, and reshape what it stores
the same way (unknown fields dropped, defaults filled), or the operator would pass here and fail there.
The order is the server's: prune, drop non-nullable nulls, default, validate the schema keywords, check
list-type invariants, then run the CEL rules unless an earlier error makes them meaningless.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import Any

from . import errors as fe
from .correlation import ABSENT, correlated_items, json_equal
from .errors import FieldError, Validated, go_float, join_path, json_type
from .formats import FORMAT_CHECKS
from .normalize import normalized
from .objectmeta import prune_meta, validate_meta
from .regex import compile_re2
from .rules import validate_rules

__all__ = ["apply_defaults", "prune", "validate_custom_resource", "validate_schema"]

Schema = Mapping[str, Any]


def _sub(schema: Schema | None, key: str) -> Schema | None:
    value = schema.get(key) if schema else None
    return value if isinstance(value, Mapping) else None


def _preserves(schema: Schema | None) -> bool:
    return bool(schema and schema.get("x-kubernetes-preserve-unknown-fields"))


def _embedded(schema: Schema | None) -> bool:
    return bool(schema and schema.get("x-kubernetes-embedded-resource"))


# ---------------------------------------------------------------------------------------------------
# Pruning.


def prune(obj: Any, schema: Schema | None, *, root: bool = True) -> list[str]:
    """Drop fields the schema does not know, in place; returns their paths ("spec.foo")."""
    unknown: list[str] = []
    _prune(obj, schema, "", root, unknown)
    return unknown


def _prune(
    obj: Any, schema: Schema | None, path: str, root: bool, unknown: list[str], keep_unknown: bool = False
) -> None:
    # keep_unknown: items of a preserve-unknown-fields array keep unknown keys (apiextensions' skipPrune).
    if isinstance(obj, dict):
        is_resource = root or _embedded(schema)
        props = _sub(schema, "properties") or {}
        addl = schema.get("additionalProperties") if schema else None
        for key in list(obj):
            child_path = join_path(path, key)
            if is_resource and key in ("apiVersion", "kind"):
                continue
            if is_resource and key == "metadata":
                prune_meta(obj[key], child_path, unknown)
                continue
            if key in props:
                _prune(obj[key], props[key], child_path, False, unknown)
            elif isinstance(addl, Mapping):
                _prune(obj[key], addl, child_path, False, unknown)
            elif addl is True or _preserves(schema) or keep_unknown:
                continue
            else:
                del obj[key]
                unknown.append(child_path)
    elif isinstance(obj, list):
        items = _sub(schema, "items")
        for i, item in enumerate(obj):
            if items is not None:
                _prune(item, items, join_path(path, i), False, unknown, keep_unknown or _preserves(schema))
            elif not _preserves(schema) and isinstance(item, dict | list):
                # An array without an items schema keeps nothing structured inside it.
                _prune(item, None, join_path(path, i), False, unknown)


# ---------------------------------------------------------------------------------------------------
# Defaulting.


def _drop_nulls(obj: Any, schema: Schema | None) -> None:
    """PruneNonNullableNullsWithoutDefaults: a null for a non-nullable field without default is absent."""
    if isinstance(obj, dict):
        props = _sub(schema, "properties") or {}
        addl = _sub(schema, "additionalProperties")
        for key in list(obj):
            sub = props.get(key, addl) if key in props or addl is not None else None
            if sub is None:
                continue
            if obj[key] is None and not sub.get("nullable") and "default" not in sub:
                del obj[key]
            else:
                _drop_nulls(obj[key], sub)
    elif isinstance(obj, list):
        items = _sub(schema, "items")
        for item in obj:
            _drop_nulls(item, items)


def _default(obj: Any, schema: Schema | None) -> None:
    if isinstance(obj, dict):
        props = _sub(schema, "properties") or {}
        for key, sub in props.items():
            if not isinstance(sub, Mapping) or "default" not in sub:
                continue
            if key not in obj or (obj[key] is None and not sub.get("nullable")):
                obj[key] = copy.deepcopy(sub["default"])
        addl = _sub(schema, "additionalProperties")
        for key, value in obj.items():
            if key in props:
                _default(value, props[key])
            elif addl is not None:
                if value is None and "default" in addl and not addl.get("nullable"):
                    obj[key] = copy.deepcopy(addl["default"])
                _default(obj[key], addl)
    elif isinstance(obj, list):
        items = _sub(schema, "items")
        if items is None:
            return
        for i, item in enumerate(obj):
            if item is None and "default" in items and not items.get("nullable"):
                obj[i] = copy.deepcopy(items["default"])
            _default(obj[i], items)


def apply_defaults(schema: Schema, obj: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `obj` with the schema's defaults filled in (nested, in arrays and maps)."""
    out = copy.deepcopy(dict(obj))
    schema = normalized(schema)
    _drop_nulls(out, schema)
    _default(out, schema)
    return out


# ---------------------------------------------------------------------------------------------------
# Schema keyword validation (kube-openapi's validator, with apiextensions' error conversion).


def _type_ok(value: Any, schema: Schema) -> tuple[bool, str]:
    """(matches, the expected type name for the message)."""
    if schema.get("x-kubernetes-int-or-string"):
        actual = json_type(value)
        return actual in ("integer", "string"), "integer,string"
    expected = schema.get("type")
    if not expected:
        return True, ""
    actual = json_type(value)
    if expected == "number":
        return actual in ("integer", "number"), "number"
    return actual == expected, str(expected)


def _bound(bound: int | float, value: int | float) -> str:
    """A limit as kube-openapi prints it: truncated to int64 for integer values, Go's %v otherwise."""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(bound))
    return go_float(float(bound))


def _name(path: str) -> str:
    return path or "."


def validate_schema(
    value: Any, schema: Schema, path: str, out: list[FieldError], *, root: bool = False, old: Any = ABSENT
) -> None:
    """Append the errors of `value` against the OpenAPI keywords of `schema` (recursively).

    `old` is the correlated stored value on update: an unchanged value is not judged (ratcheting).
    """
    if old is not ABSENT and json_equal(value, old):
        return
    if value is None:
        if schema.get("nullable") or not (schema.get("type") or schema.get("x-kubernetes-int-or-string")):
            return
        expected = "integer,string" if schema.get("x-kubernetes-int-or-string") else schema.get("type")
        out.append(fe.type_invalid(path, "null", f'{_name(path)} in body must be of type {expected}: "null"'))
        return
    ok, expected = _type_ok(value, schema)
    if not ok:
        actual = json_type(value)
        out.append(
            fe.type_invalid(path, actual, f'{_name(path)} in body must be of type {expected}: "{actual}"')
        )
        return
    _validate_common(value, schema, path, out)
    for sub in schema.get("allOf") or []:
        if isinstance(sub, Mapping):
            validate_schema(value, sub, path, out)
    _validate_any_one_not(value, schema, path, out)
    if isinstance(value, str):
        _validate_string(value, schema, path, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(value, schema, path, out)
    elif isinstance(value, list):
        _validate_array(value, schema, path, out, old)
    elif isinstance(value, Mapping):
        _validate_object(value, schema, path, out, root=root, old=old)


def _validate_any_one_not(value: Any, schema: Schema, path: str, out: list[FieldError]) -> None:
    any_of = [s for s in schema.get("anyOf") or [] if isinstance(s, Mapping)]
    if any_of:
        results = []
        for sub in any_of:
            errs: list[FieldError] = []
            validate_schema(value, sub, path, errs)
            results.append(errs)
        if all(results):
            out.append(
                fe.invalid(path, value, f"{_name(path)} in body must validate at least one schema (anyOf)")
            )
            out.extend(results[0])
    one_of = [s for s in schema.get("oneOf") or [] if isinstance(s, Mapping)]
    if one_of:
        results = []
        for sub in one_of:
            errs = []
            validate_schema(value, sub, path, errs)
            results.append(errs)
        passing = sum(1 for r in results if not r)
        if passing == 0:
            out.append(
                fe.invalid(
                    path, value, f"{_name(path)} in body must validate one and only one schema (oneOf)"
                )
            )
            out.extend(results[0])
        elif passing > 1:
            out.append(
                fe.invalid(
                    path,
                    value,
                    f"{_name(path)} in body must validate one and only one schema (oneOf). Found {passing} valid alternatives",
                )
            )
    not_schema = _sub(schema, "not")
    if not_schema is not None:
        errs = []
        validate_schema(value, not_schema, path, errs)
        if not errs:
            out.append(fe.invalid(path, value, f"{_name(path)} in body must not validate the schema (not)"))


def _validate_common(value: Any, schema: Schema, path: str, out: list[FieldError]) -> None:
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and not any(json_equal(value, e) for e in enum):
        out.append(fe.not_supported(path, value, enum))


def _validate_string(value: str, schema: Schema, path: str, out: list[FieldError]) -> None:
    name = _name(path)
    max_length = schema.get("maxLength")
    if isinstance(max_length, int) and len(value) > max_length:
        out.append(fe.too_long(path, max_length))
    min_length = schema.get("minLength")
    if isinstance(min_length, int) and len(value) < min_length:
        out.append(fe.invalid(path, value, f"{name} in body should be at least {min_length} chars long"))
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            matched = compile_re2(pattern).search(value) is not None
        except re.error:
            matched = True  # check_structural reports a bad pattern; do not reject objects for it
        if not matched:
            out.append(fe.invalid(path, value, f"{name} in body should match '{pattern}'"))
    fmt = schema.get("format")
    check = FORMAT_CHECKS.get(str(fmt)) if fmt else None
    if check is not None and not check(value):
        out.append(fe.type_invalid(path, value, f'{name} in body must be of type {fmt}: "{value}"'))


def _validate_number(value: int | float, schema: Schema, path: str, out: list[FieldError]) -> None:
    name = _name(path)
    maximum = schema.get("maximum")
    if isinstance(maximum, int | float):
        if schema.get("exclusiveMaximum") and value >= maximum:
            out.append(
                fe.invalid(path, value, f"{name} in body should be less than {_bound(maximum, value)}")
            )
        elif value > maximum:
            out.append(
                fe.invalid(
                    path, value, f"{name} in body should be less than or equal to {_bound(maximum, value)}"
                )
            )
    minimum = schema.get("minimum")
    if isinstance(minimum, int | float):
        if schema.get("exclusiveMinimum") and value <= minimum:
            out.append(
                fe.invalid(path, value, f"{name} in body should be greater than {_bound(minimum, value)}")
            )
        elif value < minimum:
            out.append(
                fe.invalid(
                    path, value, f"{name} in body should be greater than or equal to {_bound(minimum, value)}"
                )
            )
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and multiple > 0:
        quotient = value / multiple
        if not math.isclose(quotient, round(quotient), rel_tol=0, abs_tol=1e-9):
            out.append(
                fe.invalid(path, value, f"{name} in body should be a multiple of {_bound(multiple, value)}")
            )


def _validate_array(value: list[Any], schema: Schema, path: str, out: list[FieldError], old: Any) -> None:
    name = _name(path)
    max_items = schema.get("maxItems")
    if isinstance(max_items, int) and len(value) > max_items:
        out.append(fe.too_many(path, len(value), max_items))
    min_items = schema.get("minItems")
    if isinstance(min_items, int) and len(value) < min_items:
        out.append(fe.invalid(path, len(value), f"{name} in body should have at least {min_items} items"))
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for item in value:
            if any(json_equal(item, s) for s in seen):
                out.append(fe.invalid(path, value, f"{name} in body shouldn't contain duplicates"))
                break
            seen.append(item)
    items = _sub(schema, "items")
    if items is not None:
        correlated = correlated_items(schema, value, old)
        for i, item in enumerate(value):
            validate_schema(item, items, join_path(path, i), out, old=correlated[i])


def _validate_object(
    value: Mapping[str, Any], schema: Schema, path: str, out: list[FieldError], *, root: bool, old: Any
) -> None:
    # kube-openapi's order: property counts (which stop here), map values, properties, then required;
    # keys sorted, as in the server's output (Go's map order would otherwise be random).
    name = _name(path)
    max_props = schema.get("maxProperties")
    if isinstance(max_props, int) and len(value) > max_props:
        out.append(fe.too_many(path, len(value), max_props))
        return
    min_props = schema.get("minProperties")
    if isinstance(min_props, int) and len(value) < min_props:
        out.append(
            fe.invalid(path, len(value), f"{name} in body should have at least {min_props} properties")
        )
        return
    props = _sub(schema, "properties") or {}
    addl = _sub(schema, "additionalProperties")
    is_resource = root or _embedded(schema)

    def old_of(key: str) -> Any:
        return old.get(key, ABSENT) if isinstance(old, Mapping) else ABSENT

    if addl is not None:
        for key, child in sorted(value.items()):
            if key not in props and not (is_resource and key in ("apiVersion", "kind", "metadata")):
                validate_schema(child, addl, join_path(path, key), out, root=_embedded(addl), old=old_of(key))
    for key, child in sorted(value.items()):
        sub = props.get(key)
        if not isinstance(sub, Mapping):
            continue
        child_path = join_path(path, key)
        if is_resource and key == "metadata":
            # Only name and generateName may be constrained; the rest is ObjectMeta's business.
            if isinstance(child, Mapping):
                meta_props = _sub(sub, "properties") or {}
                old_meta = old_of(key)
                for meta_key in ("name", "generateName"):
                    if meta_key in meta_props and meta_key in child:
                        old_field = (
                            old_meta.get(meta_key, ABSENT) if isinstance(old_meta, Mapping) else ABSENT
                        )
                        validate_schema(
                            child[meta_key],
                            meta_props[meta_key],
                            join_path(child_path, meta_key),
                            out,
                            old=old_field,
                        )
            continue
        validate_schema(child, sub, child_path, out, root=_embedded(sub), old=old_of(key))
    for key in schema.get("required") or []:
        if key not in value:
            out.append(fe.required(join_path(path, key)))


# ---------------------------------------------------------------------------------------------------
# x-kubernetes-list-type and embedded resources.


def _list_invariants(value: Any, schema: Schema | None, path: str, out: list[FieldError]) -> None:
    if schema is None:
        return
    if isinstance(value, Mapping):
        props = _sub(schema, "properties") or {}
        addl = _sub(schema, "additionalProperties")
        for key, child in value.items():
            sub = props.get(key) if key in props else addl
            if isinstance(sub, Mapping):
                _list_invariants(child, sub, join_path(path, key), out)
        if _embedded(schema):
            _embedded_invariants(value, path, out)
    elif isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            seen: list[Any] = []
            for i, item in enumerate(value):
                if any(json_equal(item, s) for s in seen):
                    out.append(fe.duplicate(join_path(path, i), item))
                else:
                    seen.append(item)
        elif list_type == "map":
            keys = [str(k) for k in schema.get("x-kubernetes-list-map-keys") or []]
            items = _sub(schema, "items") or {}
            item_props = _sub(items, "properties") or {}
            seen_keys: list[tuple[Any, ...]] = []
            for i, item in enumerate(value):
                if not isinstance(item, Mapping):
                    continue
                missing = False
                for k in keys:
                    if k not in item and "default" not in (item_props.get(k) or {}):
                        out.append(fe.required(join_path(join_path(path, i), k)))
                        missing = True
                if missing:
                    continue
                key_value = tuple(item.get(k, (item_props.get(k) or {}).get("default")) for k in keys)
                if key_value in seen_keys:
                    out.append(fe.duplicate(join_path(path, i), {k: item.get(k) for k in keys if k in item}))
                else:
                    seen_keys.append(key_value)
        item_schema = _sub(schema, "items")
        for i, item in enumerate(value):
            _list_invariants(item, item_schema, join_path(path, i), out)


def _embedded_invariants(value: Mapping[str, Any], path: str, out: list[FieldError]) -> None:
    for key in ("apiVersion", "kind"):
        if not value.get(key):
            out.append(fe.required(join_path(path, key), "must not be empty"))
    meta = value.get("metadata")
    if isinstance(meta, Mapping):
        validate_meta(meta, join_path(path, "metadata"), out, require_name=False)


# ---------------------------------------------------------------------------------------------------
# The whole pipeline.

_BLOCKING = {
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
}


def _has_rules(schema: Schema | None) -> bool:
    """hasXValidations: whether any node (properties, items, map values) carries CEL rules."""
    if not schema:
        return False
    if schema.get("x-kubernetes-validations"):
        return True
    children = list((_sub(schema, "properties") or {}).values())
    children += [c for c in (_sub(schema, "items"), _sub(schema, "additionalProperties")) if c is not None]
    return any(_has_rules(child) for child in children if isinstance(child, Mapping))


def validate_custom_resource(
    schema: Mapping[str, Any], obj: Mapping[str, Any], old: Mapping[str, Any] | None = None
) -> Validated:
    """Prune, default and validate `obj` against a CRD version's openAPIV3Schema, like the API server.

    `old` is the stored object on update: transition rules (those using `oldSelf`) run only then.
    The returned `obj` is what the server would store; `errors` is empty when it would accept it.
    """
    try:
        return _validate_custom_resource(normalized(schema), obj, old)
    except Exception as exc:  # a bug here must surface as an error answer, not take the server down
        error = FieldError(
            "<nil>", "InternalError", f"Internal error: validating against the schema failed: {exc!r}"
        )
        stored = copy.deepcopy(dict(obj)) if isinstance(obj, Mapping) else {}
        return Validated(obj=stored, errors=[error], unknown_fields=[])


def _validate_custom_resource(
    schema: Mapping[str, Any], obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> Validated:
    out = copy.deepcopy(dict(obj))
    unknown = prune(out, schema)
    _drop_nulls(out, schema)
    _default(out, schema)
    old_value: dict[str, Any] | None = None
    if old is not None:
        # The stored object went through the same decoding; normalise it so unchanged parts compare equal.
        old_value = copy.deepcopy(dict(old))
        prune(old_value, schema)
        _drop_nulls(old_value, schema)
        _default(old_value, schema)
    errs: list[FieldError] = []
    meta = out.get("metadata")
    if isinstance(meta, Mapping):
        validate_meta(meta, "metadata", errs, require_name=True)
    elif meta is None:
        errs.append(fe.required("metadata.name", "name or generateName is required"))
    else:
        errs.append(fe.type_invalid("metadata", json_type(meta), "metadata must be an object"))
    validate_schema(out, schema, "", errs, root=True, old=ABSENT if old_value is None else old_value)
    _list_invariants(out, schema, "", errs)
    if not _has_rules(schema):
        pass  # the server builds no CEL validator, so it neither runs rules nor says it skipped them
    elif any(e.type in _BLOCKING for e in errs):
        errs.append(
            fe.invalid(
                "",
                None,
                "some validation rules were not checked because the object was invalid; "
                "correct the existing errors to complete validation",
            )
        )
    else:
        errs.extend(validate_rules(schema, out, old_value))
    return Validated(obj=out, errors=errs, unknown_fields=unknown)
