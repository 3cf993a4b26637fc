"""Structural-schema validation, pruning, defaulting and CEL rules, as kube-apiserver 1.33 applies them.

Shared by the local API server (which must accept and reject what a real cluster would) and by the CRD
tests (which run our CRDs' rules on good and bad objects). The entry points:

- `validate_custom_resource(schema, obj, old=None)`: prune, default, validate (keywords, list types,
  ObjectMeta, CEL with ratcheting on update) -> `Validated(obj, errors, unknown_fields)`.
- `validate_builtin(obj)` / `builtin_unknown_fields(obj)`: built-in kinds against the 1.33 schemas.
- `check_structural(schema)`: why a real server would refuse the CRD (non-structural, defaults, rule
  compile errors and field typos, rule cost).
- `compile_rule(rule, schema=None)`, `validate_rules(schema, obj, old=None)`, `apply_defaults`,
  `prune`, `parse_quantity`.

Errors are `FieldError(field, type, message)` worded as the server words them, so `str(error)` reads
like the line kubectl prints.
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
