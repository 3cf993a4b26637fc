"""check_structural: the schemas a real API server refuses to accept in a CRD."""

from __future__ import annotations

from typing import Any

import pytest

from modelops_local.schema import check_structural

Obj = dict[str, Any]


def root(**props: Any) -> Obj:
    return {"type": "object", "properties": {"spec": {"type": "object", "properties": props}}}


def test_a_structural_schema_passes() -> None:
    schema = root(
        replicas={"type": "integer", "default": 1, "minimum": 0},
        cpu={
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": "^[0-9]+m?$",
        },
        labels={"type": "object", "additionalProperties": {"type": "string"}},
        extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        ports={
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        },
        steps={
            "type": "array",
            "items": {"type": "integer"},
            "x-kubernetes-validations": [{"rule": "self.isSorted()", "message": "must increase"}],
        },
    )
    schema["properties"]["metadata"] = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 40}},
    }
    assert check_structural(schema) == []


NON_STRUCTURAL: list[tuple[str, Obj, str]] = [
    (
        "field without type",
        root(a={"description": "no type"}),
        "properties[spec].properties[a].type: Required value",
    ),
    ("$ref", root(a={"type": "object", "$ref": "#/x"}), "$ref: Forbidden"),
    (
        "properties with additionalProperties",
        root(
            a={
                "type": "object",
                "properties": {"b": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            }
        ),
        "additionalProperties and properties are mutual exclusive",
    ),
    ("array without items", root(a={"type": "array"}), "items: Required value"),
    (
        "type inside anyOf",
        root(a={"type": "string", "anyOf": [{"type": "integer"}]}),
        "anyOf[0].type: Forbidden",
    ),
    (
        "metadata beyond name",
        {
            "type": "object",
            "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}},
        },
        "only name and generateName",
    ),
    (
        "uniqueItems",
        root(a={"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
        "uniqueItems",
    ),
    (
        "rule that does not compile",
        root(a={"type": "string", "x-kubernetes-validations": [{"rule": "self =="}]}),
        "Syntax error",
    ),
    (
        "rule with an unknown function",
        root(a={"type": "string", "x-kubernetes-validations": [{"rule": "self.bogus()"}]}),
        "undeclared reference to 'bogus'",
    ),
    (
        "map list key not required",
        root(
            a={
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            }
        ),
        "list map keys must be required or have a default",
    ),
    (
        "bad reason",
        root(a={"type": "string", "x-kubernetes-validations": [{"rule": "true", "reason": "Nope"}]}),
        'reason: Unsupported value: "Nope"',
    ),
    ("root not an object", {"type": "string"}, 'must be "object" at the root'),
    (
        "bad map type",
        root(a={"type": "object", "x-kubernetes-map-type": "merged"}),
        'Unsupported value: "merged"',
    ),
    (
        "default with an unknown field",
        root(a={"type": "object", "default": {"b": 1}, "properties": {"c": {"type": "string"}}}),
        "properties[spec].properties[a].default.b: Invalid value: must not have unknown fields",
    ),
    (
        "default of the wrong type",
        root(a={"type": "integer", "default": "1"}),
        'properties[spec].properties[a].default: Invalid value: "string": . in body must be of type integer',
    ),
    (
        "default that breaks the field's own rule",
        root(a={"type": "integer", "default": 0, "x-kubernetes-validations": [{"rule": "self > 0"}]}),
        'properties[spec].properties[a].default: Invalid value: "integer": failed rule: self > 0',
    ),
    (
        # The server runs rules on `default: {}` as it is: nested defaults are not applied first.
        "empty default object and a rule reading a defaulted field",
        root(
            a={
                "type": "object",
                "default": {},
                "properties": {"mode": {"type": "string", "default": "x"}},
                "x-kubernetes-validations": [{"rule": "self.mode != 'y'"}],
            }
        ),
        "no such key: mode evaluating rule: self.mode != 'y'",
    ),
    (
        "rule naming a field the schema does not have",
        root(
            replicas={"type": "integer"}, x={"type": "string", "x-kubernetes-validations": [{"rule": "true"}]}
        )
        | {"x-kubernetes-validations": [{"rule": "self.spec.replcas > 0"}]},
        "undefined field 'replcas'",
    ),
    (
        "macro variable field typo",
        root(
            items={
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                "x-kubernetes-validations": [{"rule": "self.all(i, i.nme != '')"}],
            }
        ),
        "undefined field 'nme'",
    ),
    (
        "transition rule inside an atomic list",
        root(
            items={
                "type": "array",
                "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]},
            }
        ),
        "oldSelf cannot be used on the uncorrelatable portion of the schema",
    ),
    (
        "fieldPath to nowhere",
        root(
            a={
                "type": "object",
                "properties": {"b": {"type": "string"}},
                "x-kubernetes-validations": [{"rule": "true", "fieldPath": ".c"}],
            }
        ),
        "fieldPath must be a valid path",
    ),
    (
        # A 3 MiB request fits ~1.5M integers, so a quadratic rule is far beyond the server's 10M budget.
        "quadratic rule over an unbounded list",
        root(
            steps={
                "type": "array",
                "items": {"type": "integer"},
                "x-kubernetes-validations": [{"rule": "self.all(s, self.exists_one(t, t == s))"}],
            }
        ),
        "estimated rule cost exceeds budget by factor of more than 100x",
    ),
    (
        "regex on unbounded strings in every item of an unbounded list",
        root(
            names={
                "type": "array",
                "items": {
                    "type": "string",
                    "x-kubernetes-validations": [{"rule": "self.matches('^[a-z]+$')"}],
                },
            }
        ),
        "estimated rule cost total for entire OpenAPIv3 schema exceeds budget",
    ),
    (
        "junctor names a field the schema does not declare",
        root(
            a={
                "type": "object",
                "properties": {"b": {"type": "string"}},
                "anyOf": [{"required": ["c"], "properties": {"c": {"minLength": 1}}}],
            }
        ),
        "properties[c]: Required value: must be specified outside of the junctor too",
    ),
]


@pytest.mark.parametrize(("what", "schema", "phrase"), NON_STRUCTURAL, ids=[n[0] for n in NON_STRUCTURAL])
def test_non_structural_schemas_are_named(what: str, schema: Obj, phrase: str) -> None:
    problems = check_structural(schema)
    assert any(phrase in p for p in problems), problems


def test_a_default_that_is_valid_passes() -> None:
    schema = root(
        a={
            "type": "object",
            "default": {"mode": "x"},
            "properties": {"mode": {"type": "string", "default": "x"}},
            "x-kubernetes-validations": [{"rule": "self.mode != 'y'"}],
        }
    )
    assert check_structural(schema) == []


def test_rules_inside_all_of_are_allowed() -> None:
    schema = root(
        n={
            "type": "integer",
            "allOf": [{"x-kubernetes-validations": [{"rule": "self % 2 == 0"}], "minimum": 0}],
        }
    )
    assert check_structural(schema) == []


def test_field_checks_leave_dynamic_parts_alone() -> None:
    schema = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "dash-name": {"type": "string"},
                },
            },
        },
        "x-kubernetes-validations": [
            {"rule": "self.metadata.name.size() < 50 && self.spec.labels.team != ''"},
            {"rule": "!has(self.spec.free.anything) || self.spec.dash__dash__name != ''"},
        ],
    }
    assert check_structural(schema) == []


def test_bounded_lists_and_strings_keep_rules_within_budget() -> None:
    schema = root(
        steps={
            "type": "array",
            "maxItems": 20,
            "items": {"type": "integer"},
            "x-kubernetes-validations": [{"rule": "self.all(s, self.exists_one(t, t == s))"}],
        },
        names={
            "type": "array",
            "maxItems": 100,
            "items": {
                "type": "string",
                "maxLength": 63,
                "x-kubernetes-validations": [{"rule": "self.matches('^[a-z]+$')"}],
            },
        },
        unbounded={
            "type": "array",
            "items": {"type": "integer"},
            "x-kubernetes-validations": [{"rule": "self.all(x, x > 0) && self.isSorted()"}],
        },
    )
    assert check_structural(schema) == []


def test_concatenating_string_conversions_has_no_cost_bound() -> None:
    # cel-go cannot bound string(x), so the server refuses such a messageExpression; format() is fine.
    worker = {
        "type": "object",
        "properties": {"min": {"type": "integer", "maximum": 10}, "max": {"type": "integer", "maximum": 20}},
        "x-kubernetes-validations": [
            {"rule": "self.min <= self.max", "messageExpression": "'min ' + string(self.min) + ' is too big'"}
        ],
    }
    assert check_structural(root(worker=worker)) == [
        "properties[spec].properties[worker].x-kubernetes-validations[0].messageExpression: Forbidden: estimated "
        "messageExpression cost exceeds budget by factor of more than 100x (try simplifying the rule, or adding "
        "maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)",
        "properties[spec].properties[worker].x-kubernetes-validations[0].messageExpression: Forbidden: "
        "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
        "<root>: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds "
        "budget by factor of more than 100x (try simplifying the rule, or adding maxItems, maxProperties, and "
        "maxLength where arrays, maps, and strings are declared)",
    ]
    worker["x-kubernetes-validations"][0]["messageExpression"] = "'min %d is too big'.format([self.min])"
    assert check_structural(root(worker=worker)) == []


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"metadata": {"type": "object", "properties": [1, 2]}}},
        root(
            a={
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": [5],
                "items": {"type": "object", "properties": [1], "required": 5},
            }
        ),
        root(
            a={
                "type": "object",
                "properties": {"b": [1]},
                "x-kubernetes-validations": [{"rule": "self.b.c == 1"}],
            }
        ),
    ],
)
def test_a_malformed_schema_is_reported_not_raised(schema: Obj) -> None:
    problems = check_structural(schema)
    assert problems
    assert not any("Internal error" in p for p in problems)
