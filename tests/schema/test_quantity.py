"""Kubernetes Quantity parsing: the values the scheduler compares and CEL rules see."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelops_local.schema import parse_quantity

CASES = [
    ("500m", Decimal("0.5")),
    ("1", Decimal(1)),
    ("1.5", Decimal("1.5")),
    ("1Gi", Decimal(2**30)),
    ("1536Mi", Decimal(1536 * 2**20)),
    ("2Ki", Decimal(2048)),
    ("1k", Decimal(1000)),
    ("2e3", Decimal(2000)),
    ("1E", Decimal(10**18)),
    ("1E3", Decimal(1000)),
    ("100n", Decimal("1E-7")),
    ("+5", Decimal(5)),
    ("-1m", Decimal("-0.001")),
    (".5", Decimal("0.5")),
    (4, Decimal(4)),
    (0.25, Decimal("0.25")),
]


@pytest.mark.parametrize(("text", "value"), CASES, ids=[str(c[0]) for c in CASES])
def test_parse_quantity(text: str | int | float, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1.5 Gi", "1GB", "Gi", "1e", "1..5", "abc", "1Mi2"])
def test_invalid_quantities_name_the_syntax(text: str) -> None:
    with pytest.raises(ValueError, match="quantities must match"):
        parse_quantity(text)
