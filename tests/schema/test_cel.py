"""x-kubernetes-validations: every macro and library function users write, transition rules, messages."""

from __future__ import annotations

from typing import Any

import pytest

from modelops_local.schema import compile_rule, validate_custom_resource, validate_rules

Obj = dict[str, Any]

SPEC_SCHEMA: Obj = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "replicas": {"type": "integer"},
        "ratio": {"type": "number"},
        "steps": {"type": "array", "items": {"type": "integer"}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "memory": {"type": "string"},
        "cpu": {"x-kubernetes-int-or-string": True},
        "url": {"type": "string"},
        "when": {"type": "string", "format": "date-time"},
        "timeout": {"type": "string", "format": "duration"},
        "dash-name": {"type": "string"},
        "namespace": {"type": "string"},
    },
}
SPEC: Obj = {
    "name": "Digits-Model",
    "replicas": 3,
    "ratio": 0.5,
    "steps": [10, 50, 100],
    "tags": ["b", "a"],
    "labels": {"team": "ml"},
    "memory": "1536Mi",
    "cpu": "500m",
    "url": "https://models.example.com:8443/v2/digits?x=1",
    "when": "2024-05-01T10:00:00Z",
    "timeout": "90s",
    "dash-name": "d",
    "namespace": "ns",
}

# (rule, holds for SPEC)
RULES: list[tuple[str, bool]] = [
    ("has(self.name)", True),
    ("has(self.missing)", False),
    ("self.steps.all(s, s > 0)", True),
    ("self.steps.exists(s, s > 60)", True),
    ("self.steps.exists_one(s, s >= 50)", False),
    ("self.steps.map(s, s * 2) == [20, 100, 200]", True),
    ("self.steps.filter(s, s > 20) == [50, 100]", True),
    ("size(self.steps) == 3 && self.steps.size() == 3", True),
    ("size(self.name) == 12", True),
    ("self.name.matches('^[A-Z]')", True),
    ("self.name.startsWith('Dig') && self.name.endsWith('Model')", True),
    ("self.name.contains('its')", True),
    ("'team' in self.labels", True),
    ("'b' in self.tags", True),
    ("self.steps.isSorted()", True),
    ("self.tags.isSorted()", False),
    ("self.steps.sum() == 160", True),
    ("self.steps.min() == 10 && self.steps.max() == 100", True),
    ("self.tags.indexOf('a') == 1 && self.tags.indexOf('z') == -1", True),
    ("self.steps.lastIndexOf(100) == 2", True),
    ("self.name.lowerAscii() == 'digits-model'", True),
    ("self.name.upperAscii() == 'DIGITS-MODEL'", True),
    ("'  x '.trim() == 'x'", True),
    ("self.name.split('-') == ['Digits', 'Model']", True),
    ("'a,b,c'.split(',', 2) == ['a', 'b,c'] && 'abc'.split('') == ['a', 'b', 'c']", True),
    ("'ÄbC'.lowerAscii() == 'Äbc'", True),
    ("self.tags.join(',') == 'b,a'", True),
    ("self.name.indexOf('-') == 6", True),
    ("self.name.replace('-', '_') == 'Digits_Model'", True),
    ("self.name.substring(0, 6) == 'Digits'", True),
    ("self.name.find('[0-9]+') == ''", True),
    ("isURL(self.url) && !isURL('not a url')", True),
    ("url(self.url).getScheme() == 'https'", True),
    ("url(self.url).getHostname() == 'models.example.com'", True),
    ("url(self.url).getPort() == '8443'", True),
    ("url(self.url).getEscapedPath() == '/v2/digits'", True),
    ("isQuantity(self.memory) && !isQuantity('1.5 Gi')", True),
    ("quantity(self.memory).isGreaterThan(quantity('1Gi'))", True),
    ("quantity(self.memory).isLessThan(quantity('1Gi'))", False),
    ("quantity(self.cpu).compareTo(quantity('0.5')) == 0", True),
    ("quantity('2e3').asInteger() == 2000", True),
    ("quantity('1Ki').asInteger() == 1024", True),
    ("quantity(self.cpu).isInteger() == false", True),
    ("quantity('1').add(quantity('500m')).isGreaterThan(quantity(self.cpu))", True),
    ("self.ratio > 0.25", True),
    ("self.replicas > 2 ? true : false", True),
    ("type(self.replicas) == int && type(self.ratio) == double", True),
    ("self.when < timestamp('2025-01-01T00:00:00Z')", True),
    ("self.timeout > duration('1m')", True),
    ("self.dash__dash__name == 'd'", True),
    ("self.__namespace__ == 'ns'", True),
    ("!format.dns1123Label().validate('ok-name').hasValue()", True),
    ("format.dns1123Label().validate(self.name).hasValue()", True),
    ("optional.of(1).orValue(2) == 1 && optional.none().orValue(2) == 2", True),
    ("int('3') + 1 == 4 && string(self.replicas) == '3'", True),
]


@pytest.mark.parametrize(("rule", "holds"), RULES, ids=[r[0] for r in RULES])
def test_rule_evaluates_like_the_api_server(rule: str, holds: bool) -> None:
    compile_rule(rule)
    schema = {**SPEC_SCHEMA, "x-kubernetes-validations": [{"rule": rule}]}
    errors = validate_rules(schema, SPEC)
    if holds:
        assert errors == []
    else:
        assert [str(e) for e in errors] == [f'<nil>: Invalid value: "object": failed rule: {rule}']


def crd(spec: Obj) -> Obj:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
    }


def obj(spec: Any) -> Obj:
    return {"apiVersion": "example.dev/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec}


def errors_of(spec_schema: Obj, spec: Any, old: Any = None) -> list[str]:
    result = validate_custom_resource(crd(spec_schema), obj(spec), obj(old) if old is not None else None)
    return [str(e) for e in result.errors]


RANGE = {
    "type": "object",
    "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
    "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "min must not exceed max"}],
}


def test_message_is_reported_at_the_rule_level() -> None:
    assert errors_of(RANGE, {"min": 3, "max": 1}) == [
        'spec: Invalid value: "object": min must not exceed max'
    ]
    assert errors_of(RANGE, {"min": 1, "max": 3}) == []


def test_rules_at_every_level_including_list_items_and_map_values() -> None:
    schema = {
        "type": "object",
        "properties": {
            "ranges": {"type": "array", "items": RANGE},
            "named": {"type": "object", "additionalProperties": RANGE},
            "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self != 'bad'"}]},
        },
    }
    spec = {
        "ranges": [{"min": 1, "max": 2}, {"min": 5, "max": 2}],
        "named": {"x": {"min": 9, "max": 0}},
        "name": "bad",
    }
    assert errors_of(schema, spec) == [
        'spec.ranges[1]: Invalid value: "object": min must not exceed max',
        # Map values are keys, not fields, for the CEL validator: field.Path.Key prints brackets.
        'spec.named[x]: Invalid value: "object": min must not exceed max',
        "spec.name: Invalid value: \"string\": failed rule: self != 'bad'",
    ]


def test_root_rule_sees_metadata_name_and_is_reported_at_nil() -> None:
    schema = crd({"type": "object"})
    schema["x-kubernetes-validations"] = [
        {"rule": "self.metadata.name.startsWith('t') && !has(self.metadata.labels)", "message": "root"}
    ]
    good = obj({})
    good["metadata"]["labels"] = {"hidden": "from-cel"}
    assert validate_custom_resource(schema, good).errors == []
    bad = obj({})
    bad["metadata"]["name"] = "x"
    assert [str(e) for e in validate_custom_resource(schema, bad).errors] == [
        '<nil>: Invalid value: "object": root'
    ]


def test_message_expression_reason_and_field_path() -> None:
    schema = {
        "type": "object",
        "properties": {"replicas": {"type": "integer"}, "max": {"type": "integer"}},
        "x-kubernetes-validations": [
            {
                "rule": "self.replicas <= self.max",
                "messageExpression": "'replicas ' + string(self.replicas) + ' exceeds max ' + string(self.max)",
                "message": "static",
                "fieldPath": ".replicas",
                "reason": "FieldValueForbidden",
            }
        ],
    }
    result = validate_custom_resource(crd(schema), obj({"replicas": 5, "max": 2}))
    assert [(e.field, e.type, e.message) for e in result.errors] == [
        ("spec.replicas", "FieldValueForbidden", "Forbidden: replicas 5 exceeds max 2")
    ]


def test_message_expression_that_fails_falls_back_to_the_message() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "x-kubernetes-validations": [
            {"rule": "self.n > 0", "messageExpression": "self.nope", "message": "n must be positive"}
        ],
    }
    assert errors_of(schema, {"n": 0}) == ['spec: Invalid value: "object": n must be positive']


def test_field_path_with_brackets() -> None:
    schema = {
        "type": "object",
        "properties": {"a.b": {"type": "object", "properties": {"c": {"type": "string"}}}},
        "x-kubernetes-validations": [{"rule": "false", "message": "no", "fieldPath": "['a.b'].c"}],
    }
    assert errors_of(schema, {"a.b": {"c": "x"}}) == ['spec.a.b.c: Invalid value: "object": no']


IMMUTABLE = {
    "type": "object",
    "properties": {
        "model": {
            "type": "string",
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "model is immutable"}],
        },
        "replicas": {"type": "integer"},
    },
    "x-kubernetes-validations": [
        {"rule": "self.replicas >= oldSelf.replicas", "message": "replicas may not shrink"},
    ],
}


def test_transition_rules_do_not_run_on_create() -> None:
    assert errors_of(IMMUTABLE, {"model": "a", "replicas": 1}) == []


def test_transition_rules_run_on_update() -> None:
    assert errors_of(IMMUTABLE, {"model": "a", "replicas": 3}, old={"model": "a", "replicas": 2}) == []
    assert errors_of(IMMUTABLE, {"model": "b", "replicas": 1}, old={"model": "a", "replicas": 2}) == [
        # The server runs a level's own rules before its children's.
        'spec: Invalid value: "object": replicas may not shrink',
        'spec.model: Invalid value: "string": model is immutable',
    ]


def test_transition_rule_skipped_where_the_old_value_is_absent() -> None:
    assert errors_of(IMMUTABLE, {"model": "b", "replicas": 1}, old={"replicas": 1}) == []


def test_transition_rules_correlate_map_list_items_by_key() -> None:
    item = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": "self.size >= oldSelf.size", "message": "may not shrink"}],
    }
    schema = {
        "type": "object",
        "properties": {
            "volumes": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": item,
            }
        },
    }
    old = {"volumes": [{"name": "a", "size": 5}, {"name": "b", "size": 5}]}
    new = {"volumes": [{"name": "b", "size": 4}, {"name": "a", "size": 6}, {"name": "c", "size": 1}]}
    assert errors_of(schema, new, old=old) == ['spec.volumes[0]: Invalid value: "object": may not shrink']


def test_optional_old_self_runs_on_create_too() -> None:
    schema = {
        "type": "object",
        "properties": {"mode": {"type": "string"}},
        "x-kubernetes-validations": [
            {
                "rule": "oldSelf.hasValue() ? oldSelf.value().mode == self.mode : self.mode == 'initial'",
                "optionalOldSelf": True,
                "message": "starts initial, then fixed",
            }
        ],
    }
    assert errors_of(schema, {"mode": "initial"}) == []
    assert errors_of(schema, {"mode": "other"}) == [
        'spec: Invalid value: "object": starts initial, then fixed'
    ]
    assert errors_of(schema, {"mode": "other"}, old={"mode": "other"}) == []
    assert errors_of(schema, {"mode": "x"}, old={"mode": "other"}) == [
        'spec: Invalid value: "object": starts initial, then fixed'
    ]


def test_runtime_error_is_a_field_error_not_an_exception() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": "self.a / self.b > 1"}, {"rule": "self.missing == 1"}],
    }
    assert errors_of(schema, {"a": 1, "b": 0}) == [
        'spec: Invalid value: "object": division by zero evaluating rule: self.a / self.b > 1',
        'spec: Invalid value: "object": no such key: missing evaluating rule: self.missing == 1',
    ]


def test_int_or_string_reaches_rules_as_given() -> None:
    schema = {
        "type": "object",
        "properties": {"port": {"x-kubernetes-int-or-string": True}},
        "x-kubernetes-validations": [{"rule": "type(self.port) == string ? self.port != '' : self.port > 0"}],
    }
    assert errors_of(schema, {"port": 80}) == []
    assert errors_of(schema, {"port": "http"}) == []
    assert len(errors_of(schema, {"port": 0})) == 1


def test_rules_are_skipped_when_schema_errors_block_them() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": "self.n > 0"}],
    }
    assert errors_of(schema, {"n": "x"}) == [
        'spec.n: Invalid value: "string": spec.n in body must be of type integer: "string"',
        '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; '
        "correct the existing errors to complete validation",
    ]


def test_a_rule_that_does_not_compile_is_an_error_on_its_field() -> None:
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "self.x >"}]}
    (error,) = errors_of(schema, {})
    assert error.startswith('spec: Invalid value: "object": rule compile error: compilation failed: ERROR:')


@pytest.mark.parametrize(
    ("rule", "phrase"),
    [
        ("self.x >", "Syntax error"),
        ("self.x.frobnicate()", "undeclared reference to 'frobnicate'"),
        ("selff.x == 1", "undeclared reference to 'selff'"),
        ("", "empty"),
    ],
)
def test_compile_rule_raises_with_the_compile_error(rule: str, phrase: str) -> None:
    with pytest.raises(ValueError, match="compilation failed") as caught:
        compile_rule(rule)
    assert phrase in str(caught.value)


def test_macro_variables_are_not_undeclared() -> None:
    compile_rule("self.items.all(item, item.tags.exists(t, t == 'x')) && self.m.map(k, k).size() > 0")


@pytest.mark.parametrize(
    ("rule", "holds"),
    [
        ("self.ratio <= 1", True),
        ("self.ratio == 1", False),
        ("1 < self.ratio", False),
        ("self.ratio in [0.5, 1]", True),
        ("self.replicas == 3.0", True),
        ("self.steps.exists(s, s == 50.0)", True),
        ("self.name == 1", False),
    ],
)
def test_numbers_compare_across_int_and_double_as_in_kubernetes(rule: str, holds: bool) -> None:
    schema = {**SPEC_SCHEMA, "x-kubernetes-validations": [{"rule": rule}]}
    assert (validate_rules(schema, SPEC) == []) is holds


def test_comparing_unrelated_types_is_a_runtime_error_naming_the_rule() -> None:
    schema = {**SPEC_SCHEMA, "x-kubernetes-validations": [{"rule": "self.name < 1"}]}
    (error,) = validate_rules(schema, SPEC)
    assert "call arguments did not match a supported operator, function or macro signature" in error.message
    assert error.message.endswith("for rule: self.name < 1")


def test_rules_inside_all_of_run_at_the_same_level() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "x-kubernetes-validations": [{"rule": "self >= 0"}]}},
        "allOf": [{"x-kubernetes-validations": [{"rule": "self.n % 2 == 0", "message": "n must be even"}]}],
    }
    assert errors_of(schema, {"n": 2}) == []
    assert errors_of(schema, {"n": 3}) == ['spec: Invalid value: "object": n must be even']


def test_rules_only_inside_all_of_are_not_run() -> None:
    # The server builds no CEL validator when no node outside allOf has rules (hasXValidations).
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "allOf": [{"x-kubernetes-validations": [{"rule": "self.n % 2 == 0", "message": "n must be even"}]}],
    }
    assert errors_of(schema, {"n": 3}) == []


def test_field_path_into_a_map_uses_the_key_notation() -> None:
    schema = {
        "type": "object",
        "properties": {"limits": {"type": "object", "additionalProperties": {"type": "string"}}},
        "x-kubernetes-validations": [
            {"rule": "!('gpu' in self.limits)", "message": "no gpu here", "fieldPath": ".limits.gpu"}
        ],
    }
    assert errors_of(schema, {"limits": {"gpu": "1"}}) == [
        'spec.limits[gpu]: Invalid value: "object": no gpu here'
    ]


RATCHETED = {
    "type": "object",
    "properties": {
        "name": {
            "type": "string",
            "x-kubernetes-validations": [{"rule": "self.size() <= 5", "message": "too long"}],
        },
        "other": {"type": "string"},
    },
}


def test_unchanged_values_are_ratcheted_on_update() -> None:
    # A stored object that a later, stricter CRD would refuse can still be updated elsewhere.
    old = {"name": "much-too-long", "other": "a"}
    assert errors_of(RATCHETED, {"name": "much-too-long", "other": "b"}, old=old) == []
    assert errors_of(RATCHETED, {"name": "still-too-long", "other": "a"}, old=old) == [
        'spec.name: Invalid value: "string": too long'
    ]
    assert errors_of(RATCHETED, {"name": "much-too-long"}) == ['spec.name: Invalid value: "string": too long']


def test_compile_rule_with_a_schema_catches_field_typos() -> None:
    compile_rule("self.replicas > 0", SPEC_SCHEMA)
    with pytest.raises(ValueError, match="undefined field 'replcas'"):
        compile_rule("self.replcas > 0", SPEC_SCHEMA)


@pytest.mark.parametrize(
    ("rule", "holds"),
    [
        (
            "'%s has %d replicas (%.1f%%)'.format([self.name, self.replicas, 50.0]) == 'Digits-Model has 3 replicas (50.0%)'",
            True,
        ),
        ("sets.contains(self.tags, ['a'])", True),
        ("sets.contains(self.tags, ['z'])", False),
        ("sets.equivalent(self.tags, ['a', 'b'])", True),
        ("sets.intersects(self.tags, ['z', 'b'])", True),
        ("isIP('10.0.0.1') && !isIP('10.0.0.300') && ip('::1').family() == 6", True),
        ("cidr('10.0.0.0/8').containsIP('10.1.2.3') && !cidr('10.0.0.0/8').containsIP('11.0.0.1')", True),
        ("isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.0/33') && cidr('10.0.0.0/8').prefixLength() == 8", True),
        ("self.name.find('[0-9]+') == '' && 'a1b22'.findAll('[0-9]+') == ['1', '22']", True),
        ("isSemver('1.2.3') && !isSemver('1.2') && semver('1.2.3').minor() == 2", True),
        (
            "semver('1.10.0').isGreaterThan(semver('1.9.9')) && semver('1.0.0-rc.1').isLessThan(semver('1.0.0'))",
            True,
        ),
        ("!format.dns1123LabelPrefix().validate('train-').hasValue()", True),
        ("format.date().validate('2024-13-01').hasValue()", True),
    ],
)
def test_kubernetes_extension_libraries(rule: str, holds: bool) -> None:
    compile_rule(rule, SPEC_SCHEMA)
    schema = {**SPEC_SCHEMA, "x-kubernetes-validations": [{"rule": rule}]}
    assert (validate_rules(schema, SPEC) == []) is holds


def test_message_expression_can_format() -> None:
    schema = {
        "type": "object",
        "properties": {"replicas": {"type": "integer"}},
        "x-kubernetes-validations": [
            {
                "rule": "self.replicas <= 2",
                "messageExpression": "'%d replicas, at most 2 allowed'.format([self.replicas])",
            }
        ],
    }
    assert errors_of(schema, {"replicas": 5}) == [
        'spec: Invalid value: "object": 5 replicas, at most 2 allowed'
    ]


@pytest.mark.parametrize(
    ("rule", "holds"),
    [
        ("self.?labels.?team.orValue('none') == 'ml'", True),
        ("self.?missing.orValue(7) == 7", True),
        ("!self.?missing.hasValue() && self.?name.value() == 'Digits-Model'", True),
        ("optional.ofNonZeroValue('').hasValue()", False),
        ("optional.of(1) != optional.none() && optional.none() == optional.none()", True),
        ("'a.?b' == 'a' + '.?b'", True),
    ],
)
def test_optional_field_selection(rule: str, holds: bool) -> None:
    schema = {**SPEC_SCHEMA, "properties": {**SPEC_SCHEMA["properties"], "missing": {"type": "integer"}}}
    compile_rule(rule, schema)
    assert (validate_rules({**schema, "x-kubernetes-validations": [{"rule": rule}]}, SPEC) == []) is holds


def test_optional_selection_of_an_undeclared_field_does_not_compile() -> None:
    with pytest.raises(ValueError, match="undefined field 'nope'"):
        compile_rule("self.?labels.?team.orValue('') == '' && self.?nope.hasValue()", SPEC_SCHEMA)


def test_null_fields_are_absent_to_rules() -> None:
    schema = {
        "type": "object",
        "properties": {"note": {"type": "string", "nullable": True}},
        "x-kubernetes-validations": [{"rule": "!has(self.note)", "message": "note is set"}],
    }
    assert errors_of(schema, {"note": None}) == []
    assert errors_of(schema, {"note": "x"}) == ['spec: Invalid value: "object": note is set']


def test_invalid_quantity_in_a_rule_is_reported_as_the_server_words_it() -> None:
    schema = {**SPEC_SCHEMA, "x-kubernetes-validations": [{"rule": "quantity(self.name).isInteger()"}]}
    (error,) = validate_rules(schema, SPEC)
    assert error.message == (
        'Invalid value: "object": quantities must match the regular expression '
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' evaluating rule: quantity(self.name).isInteger()"
    )


def test_ratcheting_keeps_evaluation_errors() -> None:
    # A rule that cannot evaluate on an unchanged stored value still blocks updates on a real server,
    # while one that merely fails on it is ratcheted.
    schema = {
        "type": "object",
        "properties": {
            "a": {
                "type": "object",
                "properties": {"b": {"type": "string"}, "c": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.b != 'x'"}, {"rule": "self.c > 0"}],
            },
            "n": {"type": "integer"},
        },
    }
    stored = {"a": {"b": "x"}, "n": 1}
    assert errors_of(schema, {"a": {"b": "x"}, "n": 2}, old=stored) == [
        'spec.a: Invalid value: "object": no such key: c evaluating rule: self.c > 0'
    ]
