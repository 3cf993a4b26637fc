"""The structural-schema rules a CRD's openAPIV3Schema must meet before the API server accepts the CRD.

Our CRDs are generated from pydantic models; a generator bug that emits a non-structural schema (a field
without a type, a `$ref`, properties next to additionalProperties) is refused by a real cluster at
install time. These checks catch it in the tests instead, with one readable line per problem.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from .cel import check_fields, program
from .cost import CRD_COST_LIMIT, RULE_COST_LIMIT, cardinality, estimate_rule_cost
from .errors import FieldError
from .normalize import normalized
from .regex import compile_re2
from .rules import field_path_parts, validate_rules
from .structural import prune, validate_schema

__all__ = ["check_structural"]

_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
_FORBIDDEN = ("$ref", "$schema", "definitions", "dependencies", "patternProperties", "id", "additionalItems")
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
# Inside allOf/anyOf/oneOf/not only value validations may appear, never structure or defaults.
_NOT_IN_JUNCTORS = (
    "type",
    "properties",
    "additionalProperties",
    "items",
    "default",
    "nullable",
    "description",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-list-map-keys",
)


def _where(path: str) -> str:
    return path or "<root>"


def check_structural(schema: Mapping[str, Any]) -> list[str]:
    """Problems that make `schema` non-structural or its CEL rules uncompilable; [] when it is fine."""
    problems: list[str] = []
    if not isinstance(schema, Mapping):
        return ["openAPIV3Schema must be an object"]
    if schema.get("type") != "object":
        problems.append('<root>.type: Required value: must be "object" at the root')
    costs: list[tuple[float, str]] = []
    try:
        _check(schema, "", problems, root=True, costs=costs)
    except Exception as exc:  # a malformed schema must come back as a problem, not a traceback
        problems.append(f"<root>: Internal error: the schema could not be checked: {exc!r}")
    total = sum(cost for cost, _ in costs)
    if total > CRD_COST_LIMIT:
        # As the server: the most expensive expressions are named, then the total.
        significant = [item for item in costs if item[0] > CRD_COST_LIMIT / 10]
        for _, at in sorted(significant, key=lambda item: -item[0])[:4]:
            problems.append(
                f"{at}: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire "
                "OpenAPIv3 schema"
            )
        problems.append(
            "<root>: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema "
            f"exceeds budget by factor of {_factor(total, CRD_COST_LIMIT)} ({_COST_HINT})"
        )
    return problems


_COST_HINT = (
    "try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and "
    "strings are declared"
)


def _factor(cost: float, limit: int) -> str:
    """How the server words the overshoot ("more than 100x" for quadratic rules)."""
    factor = cost / limit
    return "more than 100x" if factor > 100 else f"{factor:.1f}x"


def _check(
    schema: Mapping[str, Any],
    path: str,
    problems: list[str],
    *,
    root: bool = False,
    correlatable: bool = True,
    containers: tuple[Mapping[str, Any], ...] = (),
    costs: list[tuple[float, str]] | None = None,
) -> None:
    """`containers`: the lists and maps above this node, which multiply how often its rules run."""
    where = _where(path)
    costs = [] if costs is None else costs
    for key in _FORBIDDEN:
        if key in schema:
            problems.append(f"{where}.{key}: Forbidden: {key} is not allowed in a structural schema")
    stype = schema.get("type")
    int_or_string = bool(schema.get("x-kubernetes-int-or-string"))
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    embedded = bool(schema.get("x-kubernetes-embedded-resource"))
    if stype is None and not int_or_string and not preserve:
        problems.append(
            f"{where}.type: Required value: must not be empty for specified object fields "
            "(set a type, or x-kubernetes-int-or-string / x-kubernetes-preserve-unknown-fields)"
        )
    elif stype is not None and (not isinstance(stype, str) or stype not in _TYPES):
        problems.append(f"{where}.type: Unsupported value: {stype!r}: supported values: {sorted(_TYPES)}")
    if int_or_string and stype is not None:
        problems.append(f"{where}.type: Forbidden: must be empty with x-kubernetes-int-or-string")
    if embedded and stype != "object":
        problems.append(f'{where}.type: Required value: must be "object" with x-kubernetes-embedded-resource')
    if embedded and not preserve and not schema.get("properties"):
        problems.append(
            f"{where}.properties: Required value: must not be empty if x-kubernetes-embedded-resource is "
            "true without x-kubernetes-preserve-unknown-fields"
        )
    if preserve is False and "x-kubernetes-preserve-unknown-fields" in schema:
        problems.append(
            f"{where}.x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"
        )
    if schema.get("uniqueItems"):
        problems.append(
            f"{where}.uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
        )
    props = schema.get("properties")
    addl = schema.get("additionalProperties")
    if props is not None and not isinstance(props, Mapping):
        problems.append(f"{where}.properties: Invalid value: must be an object of field schemas")
    required = schema.get("required")
    if required is not None and not (
        isinstance(required, list) and all(isinstance(r, str) for r in required)
    ):
        problems.append(f"{where}.required: Invalid value: must be a list of field names")
    if props and addl is not None and addl is not False:
        problems.append(
            f"{where}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
        )
    if addl is False:
        problems.append(f"{where}.additionalProperties: Forbidden: must not be false (omit it instead)")
    if stype == "array" and not isinstance(schema.get("items"), Mapping):
        problems.append(f"{where}.items: Required value: must be specified for arrays")
    if isinstance(schema.get("items"), list):
        problems.append(f"{where}.items: Forbidden: items must be a schema object and not an array")
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            compile_re2(pattern)
        except re.error as exc:
            problems.append(f"{where}.pattern: Invalid value: {pattern!r}: {exc}")
    _check_list_type(schema, where, problems)
    _check_rules(
        schema,
        where,
        problems,
        root=root or bool(schema.get("x-kubernetes-embedded-resource")),
        correlatable=correlatable,
        times=cardinality(list(containers)),
        costs=costs,
    )
    if "default" in schema and root:
        problems.append(f"{where}.default: Forbidden: must not be set at the root")
    elif "default" in schema:
        _check_default(normalized(schema), where, problems)
    if isinstance(props, Mapping):
        for name, sub in props.items():
            child = f"{path}.properties[{name}]" if path else f"properties[{name}]"
            if root and name == "metadata" and isinstance(sub, Mapping):
                _check_root_metadata(sub, child, problems)
            if isinstance(sub, Mapping):
                _check(sub, child, problems, correlatable=correlatable, containers=containers, costs=costs)
            else:
                problems.append(f"{child}: Invalid value: must be a schema object")
    if isinstance(addl, Mapping):
        _check(
            addl,
            f"{path}.additionalProperties" if path else "additionalProperties",
            problems,
            correlatable=correlatable,
            containers=(*containers, schema),
            costs=costs,
        )
    items = schema.get("items")
    if isinstance(items, Mapping):
        # Only items of map lists correlate with their old version; elsewhere oldSelf has nothing to see.
        item_correlatable = correlatable and schema.get("x-kubernetes-list-type") == "map"
        _check(
            items,
            f"{path}.items" if path else "items",
            problems,
            correlatable=item_correlatable,
            containers=(*containers, schema),
            costs=costs,
        )
    for junctor in _JUNCTORS:
        value = schema.get(junctor)
        if int_or_string and _is_int_or_string_junctor(junctor, value):
            continue
        subs = [value] if isinstance(value, Mapping) else value if isinstance(value, list) else []
        for i, sub in enumerate(subs):
            if isinstance(sub, Mapping):
                _check_junctor(sub, schema, f"{where}.{junctor}[{i}]", problems)


_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]


def _is_int_or_string_junctor(junctor: str, value: Any) -> bool:
    """The one place types may appear in a junctor: the spelled-out form of x-kubernetes-int-or-string."""
    if junctor == "anyOf":
        return (
            isinstance(value, list)
            and [dict(v) for v in value if isinstance(v, Mapping)] == _INT_OR_STRING_ANY_OF
        )
    if junctor == "allOf" and isinstance(value, list) and value and isinstance(value[0], Mapping):
        first = value[0]
        return set(first) == {"anyOf"} and _is_int_or_string_junctor("anyOf", first["anyOf"])
    return False


def _check_root_metadata(meta: Mapping[str, Any], where: str, problems: list[str]) -> None:
    props = meta.get("properties")
    props = props if isinstance(props, Mapping) else {}
    extra = sorted(str(p) for p in set(props) - {"name", "generateName"})
    if extra:
        problems.append(
            f"{where}.properties: Forbidden: only name and generateName may be specified in metadata "
            f"(found {', '.join(extra)})"
        )
    for key in meta:
        if key not in ("type", "properties", "description"):
            problems.append(f"{where}.{key}: Forbidden: must not be specified for metadata")


def _check_junctor(
    schema: Mapping[str, Any], outer: Mapping[str, Any] | None, where: str, problems: list[str]
) -> None:
    """`outer` is the structural schema at the same place: junctors may only restrict what it declares."""
    for key in _NOT_IN_JUNCTORS:
        if key in schema:
            problems.append(f"{where}.{key}: Forbidden: must not be used inside {where.rsplit('.', 1)[-1]}")
    for junctor in _JUNCTORS:
        value = schema.get(junctor)
        subs = [value] if isinstance(value, Mapping) else value if isinstance(value, list) else []
        for i, sub in enumerate(subs):
            if isinstance(sub, Mapping):
                _check_junctor(sub, outer, f"{where}.{junctor}[{i}]", problems)
    props = schema.get("properties")
    outer_props = (outer or {}).get("properties") or {}
    if isinstance(props, Mapping):
        for name, sub in props.items():
            if name not in outer_props:
                problems.append(
                    f"{where}.properties[{name}]: Required value: must be specified outside of the junctor too"
                )
            if isinstance(sub, Mapping):
                inner_outer = outer_props.get(name)
                _check_junctor(
                    sub,
                    inner_outer if isinstance(inner_outer, Mapping) else None,
                    f"{where}.properties[{name}]",
                    problems,
                )
    items = schema.get("items")
    if isinstance(items, Mapping):
        outer_items = (outer or {}).get("items")
        if not isinstance(outer_items, Mapping):
            problems.append(f"{where}.items: Required value: must be specified outside of the junctor too")
        _check_junctor(
            items, outer_items if isinstance(outer_items, Mapping) else None, f"{where}.items", problems
        )


def _check_default(schema: Mapping[str, Any], where: str, problems: list[str]) -> None:
    """Defaults must survive pruning unchanged and pass the schema and its rules, as the server demands."""
    default = copy.deepcopy(schema["default"])
    unknown = prune(default, schema, root=False)
    for path in unknown:
        problems.append(
            f"{where}.default.{path}: Invalid value: must not have unknown fields (they would be pruned)"
        )
    errors: list[FieldError] = []
    validate_schema(default, schema, "", errors)
    if not errors:
        # As ValidateDefaults: the rules run on the default as it is (nested defaults are not applied
        # first), once as an update from itself and once as a create, without ratcheting.
        errors = validate_rules(schema, default, default, ratcheting=False)
        if not errors:
            errors = validate_rules(schema, default, None, ratcheting=False)
    for error in errors:
        at = f"{where}.default" + ("" if error.field == "<nil>" else f".{error.field}")
        problems.append(f"{at}: {error.message}")


def _check_list_type(schema: Mapping[str, Any], where: str, problems: list[str]) -> None:
    map_type = schema.get("x-kubernetes-map-type")
    if map_type is not None:
        if map_type not in ("granular", "atomic"):
            problems.append(
                f'{where}.x-kubernetes-map-type: Unsupported value: "{map_type}": '
                'supported values: "atomic", "granular"'
            )
        if schema.get("type") != "object":
            problems.append(
                f"{where}.x-kubernetes-map-type: Invalid value: must only be used for type object"
            )
    list_type = schema.get("x-kubernetes-list-type")
    if list_type is None:
        if "x-kubernetes-list-map-keys" in schema:
            problems.append(
                f"{where}.x-kubernetes-list-map-keys: Forbidden: requires x-kubernetes-list-type to be map"
            )
        return
    if schema.get("type") != "array":
        problems.append(f"{where}.x-kubernetes-list-type: Invalid value: must only be used for type array")
    if list_type not in ("atomic", "set", "map"):
        problems.append(
            f'{where}.x-kubernetes-list-type: Unsupported value: "{list_type}": '
            'supported values: "atomic", "set", "map"'
        )
    raw_items = schema.get("items")
    items: Mapping[str, Any] = raw_items if isinstance(raw_items, Mapping) else {}
    if list_type == "map":
        raw_keys = schema.get("x-kubernetes-list-map-keys")
        keys = [str(k) for k in raw_keys] if isinstance(raw_keys, list) else []
        if not keys:
            problems.append(
                f"{where}.x-kubernetes-list-map-keys: Required value: must not be empty if "
                "x-kubernetes-list-type is map"
            )
        if items.get("type") != "object":
            problems.append(f'{where}.items.type: Invalid value: must be "object" for a map list')
        raw_props = items.get("properties")
        item_props: Mapping[str, Any] = raw_props if isinstance(raw_props, Mapping) else {}
        for key in keys:
            sub = item_props.get(key)
            if not isinstance(sub, Mapping):
                problems.append(
                    f'{where}.x-kubernetes-list-map-keys: Invalid value: "{key}": entries must all be names '
                    "of item properties"
                )
            elif key not in _string_list(items.get("required")) and "default" not in sub:
                problems.append(
                    f"{where}.items.properties[{key}]: Required value: list map keys must be required or "
                    "have a default"
                )
            elif sub.get("type") not in ("string", "integer", "number", "boolean"):
                problems.append(f"{where}.items.properties[{key}].type: Invalid value: must be a scalar type")
    if (
        list_type == "set"
        and items.get("type") == "object"
        and items.get("x-kubernetes-map-type") != "atomic"
    ):
        problems.append(
            f'{where}.items.type: Invalid value: "object": must be scalar or atomic when '
            "x-kubernetes-list-type is set"
        )


def _check_rules(
    schema: Mapping[str, Any],
    where: str,
    problems: list[str],
    *,
    root: bool,
    correlatable: bool,
    times: int = 1,
    costs: list[tuple[float, str]] | None = None,
) -> None:
    rules = schema.get("x-kubernetes-validations")
    if rules is None:
        return
    schema = normalized(schema)  # malformed siblings must not trip the field and cost checks
    if not isinstance(rules, list):
        problems.append(f"{where}.x-kubernetes-validations: Invalid value: must be a list")
        return
    for i, rule in enumerate(rules):
        at = f"{where}.x-kubernetes-validations[{i}]"
        if not isinstance(rule, Mapping) or not rule.get("rule"):
            problems.append(f"{at}.rule: Required value")
            continue
        if not isinstance(rule["rule"], str):
            problems.append(f"{at}.rule: Invalid value: {rule['rule']!r}: must be a string")
            continue
        compiled = program(str(rule["rule"]))
        if isinstance(compiled, str):
            problems.append(f"{at}.rule: Invalid value: {rule['rule']!r}: {compiled}")
        else:
            cost = estimate_rule_cost(str(rule["rule"]), schema, root=root)
            if cost > RULE_COST_LIMIT:
                problems.append(
                    f"{at}.rule: Forbidden: estimated rule cost exceeds budget by factor of "
                    f"{_factor(cost, RULE_COST_LIMIT)} ({_COST_HINT})"
                )
            if costs is not None:
                costs.append((cost * times, f"{at}.rule"))
            fields = check_fields(str(rule["rule"]), schema, root=root)
            if fields:
                problems.append(
                    f"{at}.rule: Invalid value: {rule['rule']!r}: compilation failed: {'; '.join(fields)}"
                )
            if rule.get("optionalOldSelf") and not compiled.uses_old_self:
                problems.append(f"{at}.optionalOldSelf: Forbidden: may only be set for transition rules")
            if compiled.uses_old_self and not correlatable:
                problems.append(
                    f"{at}.rule: Forbidden: oldSelf cannot be used on the uncorrelatable portion of the schema "
                    "(items of lists that are not x-kubernetes-list-type map)"
                )
        if rule.get("messageExpression"):
            source = str(rule["messageExpression"])
            compiled_message = program(source)
            if isinstance(compiled_message, str):
                problems.append(f"{at}.messageExpression: Invalid value: {source!r}: {compiled_message}")
            else:
                message_cost = estimate_rule_cost(source, schema, root=root)
                if message_cost > RULE_COST_LIMIT:
                    problems.append(
                        f"{at}.messageExpression: Forbidden: estimated messageExpression cost exceeds budget by "
                        f"factor of {_factor(message_cost, RULE_COST_LIMIT)} ({_COST_HINT})"
                    )
                if costs is not None:
                    costs.append((message_cost * times, f"{at}.messageExpression"))
                fields = check_fields(source, schema, root=root)
                if fields:
                    problems.append(
                        f"{at}.messageExpression: Invalid value: {source!r}: compilation failed: "
                        + "; ".join(fields)
                    )
        field_path = rule.get("fieldPath")
        if field_path and not _field_path_exists(str(field_path), schema):
            problems.append(f"{at}.fieldPath: Invalid value: {field_path!r}: fieldPath must be a valid path")
        message = rule.get("message")
        if isinstance(message, str) and (not message.strip() or "\n" in message):
            problems.append(f"{at}.message: Invalid value: must be non-empty and contain no line breaks")
        reason = rule.get("reason")
        if reason is not None and reason not in (
            "FieldValueInvalid",
            "FieldValueForbidden",
            "FieldValueRequired",
            "FieldValueDuplicate",
        ):
            problems.append(
                f'{at}.reason: Unsupported value: "{reason}": supported values: "FieldValueDuplicate", '
                '"FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"'
            )


def _field_path_exists(field_path: str, schema: Mapping[str, Any]) -> bool:
    parts = field_path_parts(field_path)
    if not parts:
        return False
    current: Mapping[str, Any] | None = schema
    for part in parts:
        if current is None or isinstance(part, int):
            return False
        props = current.get("properties")
        addl = current.get("additionalProperties")
        if isinstance(props, Mapping) and props:
            current = props.get(part) if isinstance(props.get(part), Mapping) else None
        elif isinstance(addl, Mapping):
            current = addl
        else:
            return False
    return current is not None


def _string_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
