"""Validation of incoming objects: object names, CRD schemas for custom resources, built-in schemas.

Custom resources go through `modelops.schema` (structural schema, pruning, defaulting, CEL), shared with
the CRD tests. While that package is missing this module falls back to a small type/required/enum check
so that the server still rejects the obvious.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
Cause = tuple[str, str, str]  # (reason, field, detail)

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
# Resources whose names must be DNS labels rather than subdomains.
LABEL_NAMED = {"/namespaces", "/services"}


def validate_name(storage_key: str, name: str) -> list[Cause]:
    if storage_key in LABEL_NAMED:
        if len(name) > 63 or not _LABEL.match(name):
            return [("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": {LABEL_MSG}')]
    elif storage_key.startswith("rbac.authorization.k8s.io/"):
        if "/" in name or "%" in name or name in (".", ".."):
            return [("FieldValueInvalid", "metadata.name", f"Invalid value: \"{name}\": may not contain '/'")]
    elif len(name) > 253 or not _SUBDOMAIN.match(name):
        return [("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": {SUBDOMAIN_MSG}')]
    return []


@dataclass
class Result:
    obj: dict[str, Any]
    causes: list[Cause] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@functools.cache
def _schema_module() -> Any:
    """`modelops.schema`, or None when it cannot be imported (then the small fallback below is used)."""
    try:
        import modelops.schema
    except Exception:  # a broken checkout of that package must not take the API server down
        log.warning("modelops.schema is unavailable; using the minimal fallback validation", exc_info=True)
        return None
    return modelops.schema


def validate_custom(
    schema: Mapping[str, Any] | None, obj: dict[str, Any], old: dict[str, Any] | None
) -> Result:
    if schema is None:
        return Result(obj)
    module = _schema_module()
    if module is None:
        return _fallback(schema, obj)
    validated = module.validate_custom_resource(schema, obj, old)
    causes: list[Cause] = []
    for err in validated.errors:
        causes.append((str(err.type), str(err.field), str(err.message)))
    return Result(dict(validated.obj), causes, list(validated.unknown_fields))


def validate_builtin_object(obj: dict[str, Any]) -> list[Cause]:
    module = _schema_module()
    if module is None:
        return []
    return [(str(e.type), str(e.field), str(e.message)) for e in module.validate_builtin(obj)]


# --- fallback: types, required, enum, defaults, pruning -------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _fallback(schema: Mapping[str, Any], obj: dict[str, Any]) -> Result:
    result = Result(copy.deepcopy(obj))
    _walk(schema, result.obj, "", result, top=True)
    return result


def _walk(schema: Mapping[str, Any], value: Any, path: str, result: Result, top: bool = False) -> Any:
    typ = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            result.causes.append(
                (
                    "FieldValueTypeInvalid",
                    path,
                    f"Invalid value: {_render_value(value)}: spec.x in body must be of type int-or-string",
                )
            )
        return
    if isinstance(typ, str) and typ in _TYPES:
        ok = isinstance(value, _TYPES[typ]) and not (typ in ("integer", "number") and isinstance(value, bool))
        if value is None and schema.get("nullable"):
            return
        if not ok:
            shown = f'"{_json_type(value)}"'
            result.causes.append(
                (
                    "FieldValueTypeInvalid",
                    path,
                    f'Invalid value: {shown}: {path} in body must be of type {typ}: "{_json_type(value)}"',
                )
            )
            return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(_render_value(v) for v in schema["enum"])
        result.causes.append(
            (
                "FieldValueNotSupported",
                path,
                f"Unsupported value: {_render_value(value)}: supported values: {allowed}",
            )
        )
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name, sub in props.items():
            if name not in value and isinstance(sub, Mapping) and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        for name in schema.get("required") or []:
            if name not in value:
                result.causes.append(
                    ("FieldValueRequired", f"{path}.{name}" if path else name, "Required value")
                )
        extra = schema.get("additionalProperties")
        for name in list(value):
            sub_path = f"{path}.{name}" if path else name
            if top and name in ("apiVersion", "kind", "metadata"):
                continue
            if name in props:
                _walk(props[name], value[name], sub_path, result)
            elif isinstance(extra, Mapping):
                _walk(extra, value[name], sub_path, result)
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and extra is not True:
                result.unknown.append(sub_path)
                del value[name]
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _walk(schema["items"], item, f"{path}[{i}]", result)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            result.causes.append(
                (
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {value}: {path} in body should be greater than or equal to "
                    f"{schema['minimum']}",
                )
            )
        if "maximum" in schema and value > schema["maximum"]:
            result.causes.append(
                (
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {value}: {path} in body should be less than or equal to "
                    f"{schema['maximum']}",
                )
            )
    return


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"
