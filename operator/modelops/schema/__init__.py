"""Structural-schema validation, pruning, defaulting and CEL rules, as kube-apiserver applies them.

Shared by the local API server (which must accept and reject what a real cluster would) and by the CRD
tests (which run our CRDs' rules on good and bad objects).
"""

from __future__ import annotations

from .builtin import builtin_unknown_fields, validate_builtin
from .cel import compile_rule
from .checks import check_structural
from .errors import FieldError, Validated
from .quantity import parse_quantity
from .rules import validate_rules
from .structural import apply_defaults, prune, validate_custom_resource

__all__ = [
    "FieldError",
    "Validated",
    "apply_defaults",
    "builtin_unknown_fields",
    "check_structural",
    "compile_rule",
    "parse_quantity",
    "prune",
    "validate_builtin",
    "validate_custom_resource",
    "validate_rules",
]
