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
from decimal import Decimal
from importlib import resources
from typing import Any

import jsonschema
import referencing

from . import errors as fe
from .errors import FieldError, join_key, join_path
from .names import label_value_errors, qualified_name_errors
from .objectmeta import validate_meta
from .quantity import SYNTAX_ERROR, parse_quantity

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
    if kind == "CustomResourceDefinition":
        meta = obj.get("metadata")
        if isinstance(meta, Mapping):
            validate_meta(meta, "metadata", out, require_name=False, check_name=False)
    elif not any(e.type == "FieldValueTypeInvalid" for e in out):
        _semantic(obj, "", out)
    return out


# ---------------------------------------------------------------------------------------------------
# What the server checks beyond the schema, where our manifests can go wrong: label syntax in every
# ObjectMeta and selector, and resource quantities (syntax, sign, requests within limits, extended
# resources such as nvidia.com/gpu requested as whole numbers equal to their limits).


def _is_extended(resource: str) -> bool:
    """Not IsOvercommitAllowed: extended resources (nvidia.com/gpu) and hugepages."""
    native = "/" not in resource or "kubernetes.io/" in resource
    return not native or resource.startswith("hugepages-")


_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_TEMPLATE_KEYS = ("template", "jobTemplate")


def _semantic(value: Any, path: str, out: list[FieldError], parent: str = "", grandparent: str = "") -> None:
    """Walk only the places where these types sit in built-in kinds, so free-form content (a CRD's schema,
    a ConfigMap) is never mistaken for ObjectMeta or resource requirements."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            child_path = join_path(path, str(key))
            if not isinstance(child, Mapping | list):
                continue
            if key == "metadata" and isinstance(child, Mapping):
                if path == "" or parent in _TEMPLATE_KEYS or grandparent == "volumeClaimTemplates":
                    validate_meta(child, child_path, out, require_name=False, check_name=False)
                continue
            if key == "matchLabels" and isinstance(child, Mapping) and parent.endswith("elector"):
                _labels(child, child_path, out)
                continue
            if key == "resources" and isinstance(child, Mapping) and grandparent in _CONTAINER_LISTS:
                _resources(child, child_path, out)
                continue
            _semantic(child, child_path, out, str(key), parent)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            # List items keep the list's name as their parent's parent: containers[0].resources.
            _semantic(item, join_path(path, i), out, f"{parent}[]", parent)


def _labels(labels: Mapping[str, Any], path: str, out: list[FieldError]) -> None:
    for key, val in labels.items():
        for problem in qualified_name_errors(str(key)):
            out.append(fe.invalid(path, key, problem))
        if isinstance(val, str):
            for problem in label_value_errors(val):
                out.append(fe.invalid(path, val, problem))


def _quantities(section: Any, path: str, out: list[FieldError]) -> dict[str, Decimal]:
    parsed: dict[str, Decimal] = {}
    if not isinstance(section, Mapping):
        return parsed
    for name, raw in section.items():
        at = join_key(path, str(name))
        try:
            quantity = parse_quantity(raw)
        except ValueError:
            out.append(fe.invalid(at, raw, SYNTAX_ERROR))
            continue
        if quantity < 0:
            out.append(fe.invalid(at, raw, "must be greater than or equal to 0"))
        elif _is_extended(str(name)) and quantity != quantity.to_integral_value():
            out.append(fe.invalid(at, raw, "must be an integer"))
        parsed[str(name)] = quantity
    return parsed


def _resources(resources: Mapping[str, Any], path: str, out: list[FieldError]) -> None:
    limits = _quantities(resources.get("limits"), join_path(path, "limits"), out)
    requests = _quantities(resources.get("requests"), join_path(path, "requests"), out)
    raw_limits: Mapping[str, Any] = (
        resources["limits"] if isinstance(resources.get("limits"), Mapping) else {}
    )
    raw_requests: Mapping[str, Any] = (
        resources["requests"] if isinstance(resources.get("requests"), Mapping) else {}
    )
    for name, quantity in requests.items():
        at = join_key(join_path(path, "requests"), name)
        raw = raw_requests[name]
        if name in limits:
            limit = raw_limits[name]
            if _is_extended(name) and quantity != limits[name]:
                out.append(fe.invalid(at, raw, f"must be equal to {name} limit of {limit}"))
            elif quantity > limits[name]:
                out.append(fe.invalid(at, raw, f"must be less than or equal to {name} limit of {limit}"))
        elif _is_extended(name):
            out.append(
                fe.required(join_path(path, "limits"), "Limit must be set for non overcommitable resources")
            )


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
