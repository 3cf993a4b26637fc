"""Running `x-kubernetes-validations` over an object, at every level of its schema.

This is the apiextensions CEL validator's walk: a rule sees `self` at its own level, transition rules
(those naming `oldSelf`) run only on update where the old value correlates (same key in an object, same
map key in a `map` list), and a failure is reported at the rule's level, or at its `fieldPath`, with
the message, messageExpression and reason worded as the server words them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from celpy import celtypes

from . import errors as fe
from .cel import CelOptional, Program, evaluate, program, to_cel
from .errors import FieldError, join_path

__all__ = ["validate_rules"]

Schema = Mapping[str, Any]
_ABSENT = object()
_FIELD_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['((?:[^'\\]|\\.)*)'\]|\[(\d+)\]")


def _sub(schema: Schema | None, key: str) -> Schema | None:
    value = schema.get(key) if schema else None
    return value if isinstance(value, Mapping) else None


def field_path_parts(field_path: str) -> list[str | int] | None:
    """Split a rule's fieldPath (".spec.a", "['a.b'].c", ".list[0]") into path steps; None if malformed."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(field_path):
        match = _FIELD_PATH_PART.match(field_path, pos)
        if match is None:
            return None
        if match.group(1) is not None:
            parts.append(match.group(1))
        elif match.group(2) is not None:
            parts.append(match.group(2).replace("\\'", "'"))
        else:
            parts.append(int(match.group(3)))
        pos = match.end()
    return parts


def _rule_error_string(rule: Mapping[str, Any]) -> str:
    message = str(rule.get("message") or "").strip()
    return message if message else str(rule.get("rule", "")).strip()


def _default_message(rule: Mapping[str, Any]) -> str:
    message = str(rule.get("message") or "").strip()
    return message if message else f"failed rule: {_rule_error_string(rule)}"


def _for_reason(path: str, stype: str, detail: str, reason: str | None) -> FieldError:
    if reason == "FieldValueForbidden":
        return fe.forbidden(path, detail)
    if reason == "FieldValueRequired":
        return fe.required(path, detail)
    if reason == "FieldValueDuplicate":
        return fe.duplicate(path, stype)
    return fe.invalid(path, stype, detail)


def _root_view(value: Mapping[str, Any]) -> dict[str, Any]:
    """At the resource root CEL sees only metadata.name and metadata.generateName."""
    view = dict(value)
    meta = view.get("metadata")
    if isinstance(meta, Mapping):
        view["metadata"] = {k: meta[k] for k in ("name", "generateName") if k in meta}
    return view


def _run_rule(
    rule: Mapping[str, Any],
    schema: Schema,
    value: Any,
    old: Any,
    path: str,
    out: list[FieldError],
) -> None:
    stype = str(schema.get("type", ""))
    source = str(rule.get("rule", ""))
    compiled = program(source)
    if isinstance(compiled, str):
        out.append(fe.invalid(path, stype, f"rule compile error: {compiled}"))
        return
    optional_old = bool(rule.get("optionalOldSelf"))
    if compiled.uses_old_self and old is _ABSENT and not optional_old:
        return
    activation: dict[str, Any] = {"self": to_cel(value, schema)}
    if compiled.uses_old_self:
        old_cel = None if old is _ABSENT else to_cel(old, schema)
        if optional_old:
            activation["oldSelf"] = CelOptional(old_cel, old is not _ABSENT)
        else:
            activation["oldSelf"] = old_cel
    result, error = evaluate(compiled, activation)
    if error is not None:
        if error.startswith("no such overload"):
            detail = (
                f"'{error}': call arguments did not match a supported operator, function or macro "
                f"signature for rule: {_rule_error_string(rule)}"
            )
        else:
            detail = f"{error} evaluating rule: {_rule_error_string(rule)}"
        out.append(fe.invalid(path, stype, detail))
        return
    if isinstance(result, celtypes.BoolType) and bool(result):
        return
    error_path = path
    field_path = rule.get("fieldPath")
    if field_path:
        parts = field_path_parts(str(field_path))
        for part in parts or []:
            error_path = join_path(error_path, part)
    detail = _default_message(rule)
    message_expression = rule.get("messageExpression")
    if message_expression:
        detail = _message_from_expression(str(message_expression), activation) or detail
    out.append(_for_reason(error_path, stype, detail, rule.get("reason")))


def _message_from_expression(source: str, activation: Mapping[str, Any]) -> str | None:
    """messageExpression's text, or None so the static message is used (as the server falls back)."""
    compiled = program(source)
    if not isinstance(compiled, Program):
        return None
    result, error = evaluate(compiled, activation)
    if error is not None or not isinstance(result, str):
        return None
    text = str(result)
    if not text.strip() or "\n" in text:
        return None
    return text


def _map_list_key(item: Any, keys: list[str], item_schema: Schema | None) -> tuple[Any, ...] | None:
    if not isinstance(item, Mapping):
        return None
    props = _sub(item_schema, "properties") or {}
    values = []
    for key in keys:
        if key in item:
            values.append(repr(item[key]))
        elif isinstance(props.get(key), Mapping) and "default" in props[key]:
            values.append(repr(props[key]["default"]))
        else:
            return None
    return tuple(values)


def _walk(value: Any, old: Any, schema: Schema | None, path: str, out: list[FieldError], root: bool) -> None:
    if schema is None or value is None:
        return
    rules = schema.get("x-kubernetes-validations")
    if isinstance(rules, list) and rules:
        self_value = _root_view(value) if root and isinstance(value, Mapping) else value
        old_value = _root_view(old) if root and isinstance(old, Mapping) else old
        for rule in rules:
            if isinstance(rule, Mapping):
                _run_rule(rule, schema, self_value, old_value, path, out)
    if isinstance(value, Mapping):
        props = _sub(schema, "properties") or {}
        addl = _sub(schema, "additionalProperties")
        for key, child in value.items():
            if root and key == "metadata":
                continue
            sub = props.get(key) if key in props else addl
            if not isinstance(sub, Mapping):
                continue
            old_child = old.get(key, _ABSENT) if isinstance(old, Mapping) else _ABSENT
            _walk(child, old_child, sub, join_path(path, key), out, False)
    elif isinstance(value, list):
        items = _sub(schema, "items")
        old_by_key: dict[tuple[Any, ...], Any] = {}
        keys = [str(k) for k in schema.get("x-kubernetes-list-map-keys") or []]
        correlate = schema.get("x-kubernetes-list-type") == "map" and isinstance(old, list) and keys
        if correlate:
            for candidate in old:
                key = _map_list_key(candidate, keys, items)
                if key is not None:
                    old_by_key[key] = candidate
        for i, item in enumerate(value):
            old_item: Any = _ABSENT
            if correlate:
                key = _map_list_key(item, keys, items)
                if key is not None:
                    old_item = old_by_key.get(key, _ABSENT)
            _walk(item, old_item, items, join_path(path, i), out, False)


def validate_rules(schema: Schema, obj: Any, old: Any | None = None) -> list[FieldError]:
    """Errors of every x-kubernetes-validations rule in `schema` applied to `obj` (and `old` on update)."""
    out: list[FieldError] = []
    _walk(obj, _ABSENT if old is None else old, schema, "", out, True)
    return out
