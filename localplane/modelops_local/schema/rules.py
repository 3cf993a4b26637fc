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
from .cel import Memo, Program, evaluate, program, to_cel
from .cellib import CelOptional
from .correlation import ABSENT, correlated_items, json_equal
from .errors import FieldError, join_key, join_path
from .normalize import normalized

__all__ = ["validate_rules"]

Schema = Mapping[str, Any]
_IMMUTABLE_RULES = {"self == oldSelf", "oldSelf == self"}
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


def _field_path(path: str, field_path: str, schema: Schema) -> str:
    """Where a rule with `fieldPath` reports: properties as `.name`, map keys as `[key]` (as ValidFieldPath)."""
    current: Schema | None = schema
    for part in field_path_parts(field_path) or []:
        if isinstance(part, int):
            path = join_path(path, part)
            current = _sub(current, "items")
        elif current is not None and _sub(current, "properties") is not None:
            path = join_path(path, part)
            current = _sub(_sub(current, "properties"), part)
        elif current is not None and _sub(current, "additionalProperties") is not None:
            path = join_key(path, part)
            current = _sub(current, "additionalProperties")
        else:
            path = join_path(path, part)
            current = None
    return path


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
    *,
    ratchet: bool = False,
    memo: Memo | None = None,
) -> None:
    stype = str(schema.get("type", ""))
    source = str(rule.get("rule", ""))
    compiled = program(source)
    if isinstance(compiled, str):
        out.append(fe.invalid(path, stype, f"rule compile error: {compiled}"))
        return
    if ratchet and " ".join(source.split()) in _IMMUTABLE_RULES:
        # The immutability idiom on an unchanged value holds; this is every status update's common case.
        return
    optional_old = bool(rule.get("optionalOldSelf"))
    if compiled.uses_old_self and old is ABSENT and not optional_old:
        return
    activation: dict[str, Any] = {"self": to_cel(value, schema, memo)}
    if compiled.uses_old_self:
        old_cel = None if old is ABSENT else to_cel(old, schema, memo)
        if optional_old:
            activation["oldSelf"] = CelOptional(old_cel, old is not ABSENT)
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
    if ratchet and not compiled.uses_old_self:
        # Validation ratcheting: the value is unchanged since it was stored, so a rule that now fails
        # on it does not block the update. Evaluation errors above are not ratcheted, as on the server.
        return
    error_path = path
    field_path = rule.get("fieldPath")
    if field_path:
        error_path = _field_path(path, str(field_path), schema)
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
    text = str(result).strip()
    if not text or "\n" in text:
        return None
    return text


def _walk(
    value: Any,
    old: Any,
    rules_schema: Schema | None,
    schema: Schema | None,
    path: str,
    out: list[FieldError],
    *,
    root: bool,
    unchanged: bool,
    memo: Memo,
    ratcheting: bool = True,
) -> None:
    """`rules_schema` supplies the rules (it differs from `schema` only inside allOf branches)."""
    if rules_schema is None or schema is None or value is None:
        return
    rules = rules_schema.get("x-kubernetes-validations")
    if isinstance(rules, list) and rules:
        self_value = _root_view(value) if root and isinstance(value, Mapping) else value
        old_value = _root_view(old) if root and isinstance(old, Mapping) else old
        for rule in rules:
            if isinstance(rule, Mapping):
                _run_rule(
                    rule,
                    schema,
                    self_value,
                    old_value,
                    path,
                    out,
                    ratchet=unchanged,
                    memo=memo,
                )
    for branch in rules_schema.get("allOf") or []:
        if isinstance(branch, Mapping):
            _walk(
                value,
                old,
                branch,
                schema,
                path,
                out,
                root=root,
                unchanged=unchanged,
                memo=memo,
                ratcheting=ratcheting,
            )
    if isinstance(value, Mapping):
        props = _sub(schema, "properties") or {}
        addl = _sub(schema, "additionalProperties")
        rule_props = _sub(rules_schema, "properties") or {}
        rule_addl = _sub(rules_schema, "additionalProperties")
        for key, child in value.items():
            if root and key == "metadata":
                continue
            old_child = old.get(key, ABSENT) if isinstance(old, Mapping) else ABSENT
            child_unchanged = ratcheting and old_child is not ABSENT and json_equal(child, old_child)
            if key in props:
                _walk(
                    child,
                    old_child,
                    rule_props.get(key),
                    props[key],
                    join_path(path, key),
                    out,
                    root=_embedded(props[key]),
                    unchanged=child_unchanged,
                    memo=memo,
                    ratcheting=ratcheting,
                )
            elif addl is not None:
                _walk(
                    child,
                    old_child,
                    rule_addl,
                    addl,
                    join_key(path, key),
                    out,
                    root=_embedded(addl),
                    unchanged=child_unchanged,
                    memo=memo,
                    ratcheting=ratcheting,
                )
    elif isinstance(value, list):
        items = _sub(schema, "items")
        rule_items = _sub(rules_schema, "items")
        correlated = correlated_items(schema, value, old)
        is_map_list = schema.get("x-kubernetes-list-type") == "map"
        for i, item in enumerate(value):
            old_item = correlated[i]
            # Items of lists that do not correlate are ratcheted with their list.
            item_unchanged = (
                (ratcheting and old_item is not ABSENT and json_equal(item, old_item))
                if is_map_list
                else unchanged
            )
            _walk(
                item,
                old_item,
                rule_items,
                items,
                join_path(path, i),
                out,
                root=_embedded(items),
                unchanged=item_unchanged,
                memo=memo,
                ratcheting=ratcheting,
            )


def _embedded(schema: Schema | None) -> bool:
    return bool(schema and schema.get("x-kubernetes-embedded-resource"))


def validate_rules(
    schema: Schema, obj: Any, old: Any | None = None, *, ratcheting: bool = True
) -> list[FieldError]:
    """Errors of every x-kubernetes-validations rule in `schema` applied to `obj` (and `old` on update).

    `ratcheting=False` reports errors on unchanged values too (the server does so for CRD defaults).
    """
    out: list[FieldError] = []
    schema = normalized(schema)
    old_value = ABSENT if old is None else old
    unchanged = ratcheting and old_value is not ABSENT and json_equal(obj, old_value)
    _walk(
        obj,
        old_value,
        schema,
        schema,
        "",
        out,
        root=True,
        unchanged=unchanged,
        memo={},
        ratcheting=ratcheting,
    )
    return out
