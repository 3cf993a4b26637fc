"""A lower bound of the CEL cost the API server estimates for a rule when a CRD is created.

kube-apiserver refuses a CRD whose rule could cost more than 10M units in the worst case
("estimated rule cost exceeds budget"), or whose rules together, each multiplied by how many times it
may run, could cost more than 100M. The worst case comes from sizes: a list without maxItems may hold
as many items as a 3 MiB request fits, a string without maxLength as many characters. A rule that runs
fine on every object in the local server can so be refused by a real one.

This estimator follows cel-go's model (comprehensions cost their range size times their body, string
functions a tenth of the string length) but counts only what certainly costs, so it reports a rule only
when the server would refuse it too; it does not find every rule the server would refuse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lark

from .cel import MACROS, FieldChecker, program

__all__ = ["CRD_COST_LIMIT", "RULE_COST_LIMIT", "cardinality", "estimate_rule_cost", "max_size"]

RULE_COST_LIMIT = 10_000_000  # apiextensions StaticEstimatedCostLimit
CRD_COST_LIMIT = 100_000_000  # apiextensions StaticEstimatedCRDCostLimit
_MAX_REQUEST_BYTES = 3 * 1024 * 1024
# Functions whose cost grows with the length of the string they read.
_STRING_TRAVERSAL = {
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "lowerAscii",
    "upperAscii",
    "trim",
    "split",
    "replace",
    "find",
    "findAll",
    "reverse",
}
# Functions whose cost grows with the size of the list they read.
_LIST_TRAVERSAL = {"isSorted", "sum", "min", "max", "indexOf", "lastIndexOf", "join"}

Schema = Mapping[str, Any]


def _min_size(schema: Schema | None) -> int:
    """Smallest JSON encoding of a value of this schema (estimateMinSizeJSON)."""
    if not schema:
        return 1
    stype = schema.get("type")
    if stype == "boolean":
        return 4
    if stype == "string":
        min_length = schema.get("minLength")
        return 2 + (min_length if isinstance(min_length, int) else 0)
    if stype in ("array", "object"):
        return 2
    return 1


def max_size(schema: Schema | None) -> int | None:
    """Most elements (lists, maps) or characters (strings) the server assumes; None if not a container."""
    if not schema:
        return None
    stype = schema.get("type")
    if stype == "array":
        bound = schema.get("maxItems")
        if isinstance(bound, int):
            return bound
        items = schema.get("items")
        return (_MAX_REQUEST_BYTES - 2) // (_min_size(items if isinstance(items, Mapping) else None) + 1)
    if stype == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        bound = schema.get("maxProperties")
        if isinstance(bound, int):
            return bound
        # A map entry needs at least a key (""), a colon, a comma and the value.
        return (_MAX_REQUEST_BYTES - 2) // (_min_size(schema["additionalProperties"]) + 4)
    if stype == "string":
        bound = schema.get("maxLength")
        return bound if isinstance(bound, int) else _MAX_REQUEST_BYTES - 2
    return None


def cardinality(path_schemas: list[Schema]) -> int:
    """How many times a rule may run: the product of the sizes of the lists and maps above it."""
    total = 1
    for schema in path_schemas:
        size = max_size(schema)
        if size is not None and schema.get("type") != "string":
            total *= max(size, 1)
    return total


class _Estimator(FieldChecker):
    def cost(self, node: Any, env: dict[str, Schema | None]) -> float:
        if not isinstance(node, lark.Tree):
            return 0.0
        if node.data == "member_dot_arg":
            method = str(node.children[1])
            target = node.children[0]
            args = (
                node.children[2].children
                if len(node.children) > 2 and isinstance(node.children[2], lark.Tree)
                else []
            )
            base = self.cost(target, env)
            if method in MACROS and args:
                range_schema = self.resolve(target, env)
                size = max_size(range_schema) if range_schema and range_schema.get("type") != "string" else 0
                var = self._ident_name(args[0])
                inner = dict(env)
                if var is not None:
                    inner[var] = self._element_schema(range_schema)
                body = sum(self.cost(arg, inner) for arg in args[1:])
                return base + (size or 0) * (1.0 + body)
            call = 1.0 + sum(self.cost(arg, env) for arg in args)
            if method in _STRING_TRAVERSAL and _converted_to_string(target):
                return math.inf
            if method in _STRING_TRAVERSAL:
                resolved = self.resolve(target, env)
                if resolved and resolved.get("type") == "string":
                    call += math.ceil(0.1 * (max_size(resolved) or 0))
            elif method in _LIST_TRAVERSAL:
                resolved = self.resolve(target, env)
                if resolved and resolved.get("type") == "array":
                    call += math.ceil(0.1 * (max_size(resolved) or 0))
            return base + call
        if node.data == "ident_arg":
            return 1.0 + sum(self.cost(child, env) for child in node.children if isinstance(child, lark.Tree))
        if node.data == "addition" and any(
            isinstance(c, lark.Tree) and c.data == "addition_add" for c in node.children
        ):
            left = [
                c.children[0] for c in node.children if isinstance(c, lark.Tree) and c.data == "addition_add"
            ]
            right = [c for c in node.children if isinstance(c, lark.Tree) and c.data != "addition_add"]
            if any(_converted_to_string(operand) for operand in left + right):
                # cel-go cannot bound the length of string(x), so a concatenation with it has no bound.
                return math.inf
        return sum(self.cost(child, env) for child in node.children if isinstance(child, lark.Tree))


def _converted_to_string(node: Any) -> bool:
    """Whether `node` is (through single-child wrappers) a call of string(...)."""
    while isinstance(node, lark.Tree):
        if node.data == "ident_arg":
            return str(node.children[0]) == "string"
        trees = [c for c in node.children if isinstance(c, lark.Tree)]
        if len(node.children) != 1 or not trees:
            return False
        node = trees[0]
    return False


def estimate_rule_cost(rule: str, schema: Schema, *, root: bool = False) -> float:
    """A lower bound of the server's estimated cost of `rule` placed at `schema`; 0 if it does not compile."""
    compiled = program(rule)
    if isinstance(compiled, str):
        return 0.0
    return _Estimator(schema, root).cost(compiled.ast, {})
