"""Built-in kinds (Pod, Deployment, Service, ...) checked against the official Kubernetes 1.33 schemas.

The local API server has no Go types to decode into, so a Deployment with `replicas: "3"` or a Pod
without containers would be stored silently where a real cluster refuses it. The schemas shipped by
the `kubernetes-validate` package stand in for those types; errors come out in the same FieldError shape
as for custom resources.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the venv; types-jsonschema would do
import referencing

from . import errors as fe
from .errors import FieldError, join_path

__all__ = ["KUBERNETES_VERSION", "builtin_unknown_fields", "has_builtin_schema", "validate_builtin"]

KUBERNETES_VERSION = "1.33.0"


def _schema_dir(strict: bool) -> Any:
    base = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    return base.joinpath(f"v{KUBERNETES_VERSION}-local" + ("-strict" if strict else ""))


def _file_name(api_version: str, kind: str) -> str:
    # "rbac.authorization.k8s.io/v1" -> "rbac-v1", "apps/v1" -> "apps-v1", "v1" -> "v1"
    mangled = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{mangled}.json"


@functools.lru_cache(maxsize=4)
def _registry(strict: bool) -> referencing.Registry[Any]:
    definitions = json.loads(_schema_dir(strict).joinpath("_definitions.json").read_text())
    resource: referencing.Resource[Any] = referencing.Resource.from_contents(definitions)
    return resource @ referencing.Registry()


@functools.lru_cache(maxsize=256)
def _validator(api_version: str, kind: str, strict: bool) -> jsonschema.protocols.Validator | None:
    path = _schema_dir(strict).joinpath(_file_name(api_version, kind))
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    # Only kinds that carry their own kind/apiVersion enum are top-level resources (not e.g. PodSpec).
    kinds = schema.get("properties", {}).get("kind", {}).get("enum")
    if not kinds or kind not in kinds:
        return None
    registry = referencing.Resource.from_contents(schema) @ _registry(strict)
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return validator


def has_builtin_schema(obj: Mapping[str, Any]) -> bool:
    """Whether `obj`'s apiVersion/kind is a built-in kind we have a schema for."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return False
    return _validator(api_version, kind, False) is not None


def _path(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        path = join_path(path, part if isinstance(part, int) else str(part))
    return path


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
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
    return "object"


def _types(error: jsonschema.ValidationError) -> list[str] | None:
    """The accepted types when every alternative of `error` is a type mismatch, else None."""
    if error.validator == "type":
        value = error.validator_value
        names = [value] if isinstance(value, str) else list(value)
        return [str(n) for n in names if n != "null"]
    if error.validator in ("oneOf", "anyOf") and error.context:
        found: list[str] = []
        for sub in error.context:
            sub_types = _types(sub)
            if sub_types is None:
                return None
            found.extend(t for t in sub_types if t not in found)
        return found
    return None


def _convert(error: jsonschema.ValidationError) -> list[FieldError]:
    path = _path(error.absolute_path)
    name = path or "."
    instance = error.instance
    types = _types(error)
    if types is not None:
        actual = _json_type(instance)
        expected = ",".join(types)
        return [fe.type_invalid(path, actual, f'{name} in body must be of type {expected}: "{actual}"')]
    if error.validator == "required":
        missing = [k for k in error.validator_value if isinstance(instance, Mapping) and k not in instance]
        return [fe.required(join_path(path, k)) for k in missing]
    if error.validator == "enum":
        return [fe.not_supported(path, instance, list(error.validator_value))]
    if error.validator == "format":
        return [
            fe.type_invalid(
                path, instance, f'{name} in body must be of type {error.validator_value}: "{instance}"'
            )
        ]
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Report the alternative that got furthest: the one whose error is deepest.
        best = max(error.context, key=lambda e: len(list(e.absolute_path)))
        return _convert(best)
    return [fe.invalid(path, instance if not isinstance(instance, dict | list) else "", error.message)]


def validate_builtin(obj: Mapping[str, Any]) -> list[FieldError]:
    """Errors of a built-in object against its official schema; [] for kinds without one.

    Unknown fields are not errors here (the server drops or warns about them depending on the request's
    fieldValidation); ask `builtin_unknown_fields` for them.
    """
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return []
    validator = _validator(api_version, kind, False)
    if validator is None:
        return []
    out: list[FieldError] = []
    for error in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(map(str, e.absolute_path))):
        for converted in _convert(error):
            if converted not in out:
                out.append(converted)
    return out


def builtin_unknown_fields(obj: Mapping[str, Any]) -> list[str]:
    """Paths ("spec.foo") the official schema of a built-in kind does not know, as strict decoding names them."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return []
    validator = _validator(api_version, kind, True)
    if validator is None:
        return []
    found: list[str] = []

    def visit(errors: Iterable[jsonschema.ValidationError]) -> None:
        for error in errors:
            if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
                known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
                base = _path(error.absolute_path)
                for key in error.instance:
                    if key not in known and join_path(base, key) not in found:
                        found.append(join_path(base, key))
            if error.context:
                visit(error.context)

    visit(validator.iter_errors(dict(obj)))
    return sorted(found)
