"""Field errors worded the way the Kubernetes API server words them.

Users compare our local API server's rejections with a real cluster's, and tests match on the text, so
both the cause type and the detail follow k8s.io/apimachinery/pkg/util/validation/field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "FieldError",
    "Validated",
    "duplicate",
    "forbidden",
    "format_value",
    "go_float",
    "invalid",
    "join_key",
    "join_path",
    "json_type",
    "not_supported",
    "required",
    "too_long",
    "too_many",
    "type_invalid",
]

# What field.ErrorType.String() prints in front of the detail.
_TYPE_TEXT = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "FieldValueNotFound": "Not found",
    "InternalError": "Internal error",
}
# These print no bad value, only the type text (and the detail).
_NO_VALUE = {"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong", "InternalError"}


@dataclass(frozen=True)
class FieldError:
    field: str
    type: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass
class Validated:
    obj: dict[str, Any]
    errors: list[FieldError]
    unknown_fields: list[str] = field(default_factory=list)


def _go_value(value: Any) -> str:
    """Go's %#v of a decoded JSON value, which the server prints for maps and lists."""
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(str(k))}:{_go_value(v)}" for k, v in sorted(value.items()))
        return "map[string]interface {}{" + inner + "}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(_go_value(v) for v in value) + "}"
    return repr(value)


def go_float(value: float) -> str:
    """Go's %v of a float64 (strconv 'g', shortest): 1.5, 100000, 1e+06, 1.5e-05."""
    if value == 0:
        return "0"
    if value != value or value in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    sign = "-" if value < 0 else ""
    digits_tuple = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(str(d) for d in digits_tuple.digits)
    exponent = int(digits_tuple.exponent)
    point = len(digits) + exponent  # digits before the decimal point
    exp = point - 1
    if exp < -4 or exp >= 6:  # shortest formatting decides with precision 6
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def format_value(value: Any) -> str:
    """The bad value as ErrorBody prints it: strings quoted, scalars plain, null as "null"."""
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return _go_value(value)


def _make(path: str, type_: str, value: Any, detail: str, *, show_value: bool = True) -> FieldError:
    text = _TYPE_TEXT[type_]
    if show_value and type_ not in _NO_VALUE:
        text = f"{text}: {format_value(value)}"
    if detail:
        text = f"{text}: {detail}"
    return FieldError(field=path or "<nil>", type=type_, message=text)


def required(path: str, detail: str = "") -> FieldError:
    return _make(path, "FieldValueRequired", None, detail)


def forbidden(path: str, detail: str) -> FieldError:
    return _make(path, "FieldValueForbidden", None, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return _make(path, "FieldValueInvalid", value, detail)


def type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return _make(path, "FieldValueTypeInvalid", value, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return _make(path, "FieldValueDuplicate", value, "")


def not_supported(path: str, value: Any, allowed: list[Any]) -> FieldError:
    quoted = [json.dumps(v if isinstance(v, str) else json.dumps(v)) for v in allowed]
    return _make(path, "FieldValueNotSupported", value, "supported values: " + ", ".join(quoted))


def too_long(path: str, max_length: int) -> FieldError:
    unit = "byte" if max_length == 1 else "bytes"
    return _make(path, "FieldValueTooLong", None, f"may not be more than {max_length} {unit}")


def too_many(path: str, actual: int, maximum: int) -> FieldError:
    return _make(path, "FieldValueTooMany", actual, f"must have at most {maximum} items")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def json_type(value: Any) -> str:
    """The JSON type name the server reports for a decoded value (a whole float decodes as an integer).

    The server decodes a JSON number that does not fit an int64 as a float64, and kube-openapi calls a
    float an integer only when it is whole and within +-2^53 (swag.IsFloat64AJSONInteger).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if INT64_MIN <= value <= INT64_MAX else "number"
    if isinstance(value, float):
        return "integer" if value.is_integer() and abs(value) <= 2**53 else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def join_key(base: str, key: str) -> str:
    """field.Path.Key: a map key in brackets, unquoted ("spec.labels[team]")."""
    return f"{base}[{key}]"


def join_path(base: str, key: str | int) -> str:
    """field.Path rendering: children joined by dots, list indices in brackets."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key
