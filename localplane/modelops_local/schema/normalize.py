"""A well-formed view of a CRD schema, so that validation never trips over a malformed one.

The local API server may hold a CRD whose schema a real server would have refused (ours are checked
by `check_structural`, but anyone can apply a CRD). Validating objects against it must still answer
with field errors, not a traceback: malformed parts (a property that is not an object, a `type` that is
a list, ...) are dropped from the view the validators walk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["normalized"]

_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_STRING_LISTS = ("required", "x-kubernetes-list-map-keys")


def _normalize(schema: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            if isinstance(value, Mapping):
                out[key] = {str(k): _normalize(v) for k, v in value.items() if isinstance(v, Mapping)}
        elif key in ("items", "not"):
            if isinstance(value, Mapping):
                out[key] = _normalize(value)
        elif key == "additionalProperties":
            if isinstance(value, Mapping):
                out[key] = _normalize(value)
            elif isinstance(value, bool):
                out[key] = value
        elif key in _SCHEMA_LISTS:
            if isinstance(value, list):
                out[key] = [_normalize(v) for v in value if isinstance(v, Mapping)]
        elif key in _STRING_LISTS:
            if isinstance(value, list):
                out[key] = [str(v) for v in value if isinstance(v, str)]
        elif key == "type":
            if isinstance(value, str):
                out[key] = value
        elif key == "x-kubernetes-validations":
            if isinstance(value, list):
                out[key] = [v for v in value if isinstance(v, Mapping)]
        elif key == "enum":
            if isinstance(value, list):
                out[key] = value
        else:
            out[key] = value
    return out


def normalized(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The normalized schema. Not cached: callers may change a schema in place, and it costs ~0.4 ms
    for our largest CRD against several ms for the validation itself."""
    if not isinstance(schema, Mapping):
        return {}
    return _normalize(schema)
