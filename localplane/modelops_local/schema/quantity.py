"""Kubernetes resource.Quantity parsing.

Resource requests ("500m", "1Gi", "2e3") are compared by the scheduler and by CEL rules; both need the
exact decimal value the API server would compute, so this is a Decimal, never a float.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["SYNTAX_ERROR", "format_quantity", "parse_quantity"]

# resource.ErrFormatWrong, word for word: the API server and CEL's quantity() report it so.
SYNTAX_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
# Same grammar as k8s.io/apimachinery/pkg/api/resource: a signed decimal number with at least one digit,
# then one suffix (binary SI, decimal SI, or a decimal exponent).
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)


def parse_quantity(value: str | int | float) -> Decimal:
    """Return the exact value of a Kubernetes quantity; ValueError names the accepted syntax."""
    if isinstance(value, bool):
        raise ValueError(f"quantity must be a string or a number, not {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise ValueError(f"quantity must be a string or a number, not {type(value).__name__}")
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise ValueError(f"{SYNTAX_ERROR}: {value!r} (e.g. 500m, 1Gi, 2e3)")
    try:
        number = Decimal(match.group("num"))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"invalid quantity {value!r}") from exc
    suffix = match.group("suffix") or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number.scaleb(int(suffix[1:]))


def format_quantity(value: Decimal) -> str:
    """A canonical-enough string for a quantity: integers plain, fractions in milli units when exact."""
    if value == value.to_integral_value():
        return str(int(value))
    milli = value * 1000
    if milli == milli.to_integral_value():
        return f"{int(milli)}m"
    return str(value.normalize())
