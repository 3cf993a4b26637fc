"""Validation of incoming objects: object names, CRD schemas for custom resources, built-in schemas.

Custom resources go through `modelops_local.schema` (structural schema, pruning, defaulting, CEL), shared with
the CRD tests, so the server and the tests judge objects by the same code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import modelops_local.schema as schema_module

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


def validate_custom(
    schema: Mapping[str, Any] | None, obj: dict[str, Any], old: dict[str, Any] | None
) -> Result:
    if schema is None:
        return Result(obj)
    validated = schema_module.validate_custom_resource(schema, obj, old)
    causes: list[Cause] = []
    for err in validated.errors:
        causes.append((str(err.type), str(err.field), str(err.message)))
    return Result(dict(validated.obj), causes, list(validated.unknown_fields))


def validate_builtin_object(obj: dict[str, Any]) -> list[Cause]:
    return [(str(e.type), str(e.field), str(e.message)) for e in schema_module.validate_builtin(obj)]
