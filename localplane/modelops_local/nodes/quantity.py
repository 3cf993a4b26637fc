"""Quantities for the nodes: the schema package's exact parser, plus the downward API's rounding.

The scheduler compares requests with allocatable, and the kubelet exposes limits through the
downward API; both need the API machinery's rules, shared with the API server's validation.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from modelops_local.schema.quantity import parse_quantity

__all__ = ["parse_quantity", "to_int_ceil"]


def to_int_ceil(value: Decimal, unit: Decimal = Decimal(1)) -> int:
    """`value / unit` rounded up, the downward API's rule for resourceFieldRef divisors."""
    return int((value / unit).to_integral_value(rounding=ROUND_CEILING))
