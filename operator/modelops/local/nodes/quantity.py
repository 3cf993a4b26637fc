"""Kubernetes resource quantities ("500m", "1Gi", "1e3") as exact numbers.

The scheduler compares requests with allocatable, and the kubelet exposes limits through the
downward API; both need the API machinery's parsing rules, not float arithmetic.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

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
_RE = re.compile(r"^([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")


def parse_quantity(value: str | int | float) -> Decimal:
    """The exact value of a quantity; raises ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"quantity {value!r} is a boolean; write a number such as 1, 500m or 1Gi")
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = str(value).strip()
    m = _RE.match(text)
    if not m or m.group(1) in {".", "+", "-", ""}:
        raise ValueError(
            f"quantity {value!r} is not valid; use a number with an optional suffix "
            "(m, k, M, G, Ki, Mi, Gi, ...) or exponent (1e3)"
        )
    try:
        number = Decimal(m.group(1))
    except InvalidOperation as e:
        raise ValueError(f"quantity {value!r} has an invalid number part") from e
    suffix = m.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix[:1] in {"e", "E"}:
        return number.scaleb(int(suffix[1:]))
    return number * _DECIMAL[suffix]


def to_int_ceil(value: Decimal, unit: Decimal = Decimal(1)) -> int:
    """`value / unit` rounded up, the downward API's rule for resourceFieldRef divisors."""
    return int((value / unit).to_integral_value(rounding=ROUND_CEILING))
