"""Pruning, defaulting and OpenAPI keyword validation of custom resources, worded as kube-apiserver words it."""

from __future__ import annotations

from typing import Any

import pytest

from modelops_local.schema import FieldError, Validated, apply_defaults, validate_custom_resource

Obj = dict[str, Any]


def crd_schema(spec: Obj, **root: Any) -> Obj:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
        **root,
    }


def resource(spec: Any, **extra: Any) -> Obj:
    return {"apiVersion": "example.dev/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec, **extra}


def check(spec_schema: Obj, spec: Any, old: Any = None) -> Validated:
    old_obj = resource(old) if old is not None else None
    return validate_custom_resource(crd_schema(spec_schema), resource(spec), old_obj)


def messages(result: Validated) -> list[str]:
    return [str(e) for e in result.errors]


# --- pruning ---------------------------------------------------------------------------------------

PRUNING: list[tuple[str, Obj, Any, Any, list[str]]] = [
    (
        "unknown field dropped and reported",
        {"type": "object", "properties": {"a": {"type": "string"}}},
        {"a": "x", "b": 1},
        {"a": "x"},
        ["spec.b"],
    ),
    (
        "nested and inside arrays",
        {
            "type": "object",
            "properties": {
                "list": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"n": {"type": "integer"}}},
                }
            },
        },
        {"list": [{"n": 1, "x": 2}, {"n": 2}]},
        {"list": [{"n": 1}, {"n": 2}]},
        ["spec.list[0].x"],
    ),
    (
        "preserve-unknown-fields keeps everything below",
        {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        {"free": {"form": [1, 2]}},
        {"free": {"form": [1, 2]}},
        [],
    ),
    (
        "preserve-unknown-fields still prunes inside known properties",
        {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}},
        },
        {"other": 1, "known": {"a": "x", "b": "y"}},
        {"other": 1, "known": {"a": "x"}},
        ["spec.known.b"],
    ),
    (
        "additionalProperties schema keeps keys and prunes their values",
        {
            "type": "object",
            "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}},
        },
        {"k1": {"v": "a", "junk": 1}},
        {"k1": {"v": "a"}},
        ["spec.k1.junk"],
    ),
    (
        "additionalProperties true keeps any key",
        {"type": "object", "additionalProperties": True},
        {"any": {"thing": 1}},
        {"any": {"thing": 1}},
        [],
    ),
    (
        "embedded resource keeps apiVersion, kind, metadata",
        {
            "type": "object",
            "properties": {
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}},
                }
            },
        },
        {
            "template": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c", "bogus": 1},
                "spec": {"a": "x", "b": "y"},
            }
        },
        {
            "template": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c"},
                "spec": {"a": "x"},
            }
        },
        ["spec.template.metadata.bogus", "spec.template.spec.b"],
    ),
]


@pytest.mark.parametrize(
    ("what", "schema", "spec", "stored", "unknown"), PRUNING, ids=[p[0] for p in PRUNING]
)
def test_pruning(what: str, schema: Obj, spec: Any, stored: Any, unknown: list[str]) -> None:
    result = check(schema, spec)
    assert result.errors == []
    assert result.obj["spec"] == stored
    assert result.unknown_fields == unknown


def test_root_keeps_type_meta_and_drops_unknown_metadata_and_top_level_fields() -> None:
    schema = crd_schema({"type": "object"})
    obj = resource({}, extra=1)
    obj["metadata"] = {"name": "t", "namespace": "ns", "labels": {"a": "b"}, "nonsense": True}
    result = validate_custom_resource(schema, obj)
    assert result.obj == {
        "apiVersion": "example.dev/v1",
        "kind": "Thing",
        "metadata": {"name": "t", "namespace": "ns", "labels": {"a": "b"}},
        "spec": {},
    }
    assert sorted(result.unknown_fields) == ["extra", "metadata.nonsense"]


def test_input_is_not_modified() -> None:
    spec = {"a": "x", "b": 1}
    validate_custom_resource(
        crd_schema({"type": "object", "properties": {"a": {"type": "string"}}}), resource(spec)
    )
    assert spec == {"a": "x", "b": 1}


# --- defaulting ------------------------------------------------------------------------------------

DEFAULTS: list[tuple[str, Obj, Any, Any]] = [
    (
        "absent field gets its default",
        {"type": "object", "properties": {"replicas": {"type": "integer", "default": 1}}},
        {},
        {"replicas": 1},
    ),
    (
        "present value wins",
        {"type": "object", "properties": {"replicas": {"type": "integer", "default": 1}}},
        {"replicas": 3},
        {"replicas": 3},
    ),
    (
        "nested defaults only where the parent exists",
        {
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"b": {"type": "string", "default": "x"}}},
                "c": {"type": "object", "properties": {"d": {"type": "string", "default": "y"}}},
            },
        },
        {"a": {}},
        {"a": {"b": "x"}},
    ),
    (
        "a defaulted object is itself defaulted",
        {
            "type": "object",
            "properties": {
                "a": {
                    "type": "object",
                    "default": {},
                    "properties": {"b": {"type": "string", "default": "x"}},
                }
            },
        },
        {},
        {"a": {"b": "x"}},
    ),
    (
        "defaults inside array items",
        {
            "type": "object",
            "properties": {
                "ports": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "port": {"type": "integer"},
                            "protocol": {"type": "string", "default": "TCP"},
                        },
                    },
                }
            },
        },
        {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]},
        {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
    ),
    (
        "defaults inside map values",
        {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"weight": {"type": "integer", "default": 1}},
            },
        },
        {"a": {}, "b": {"weight": 5}},
        {"a": {"weight": 1}, "b": {"weight": 5}},
    ),
    (
        "null on a non-nullable field is defaulted",
        {"type": "object", "properties": {"mode": {"type": "string", "default": "auto"}}},
        {"mode": None},
        {"mode": "auto"},
    ),
    (
        "null on a non-nullable field without default is dropped",
        {"type": "object", "properties": {"mode": {"type": "string"}}},
        {"mode": None},
        {},
    ),
    (
        "null on a nullable field is kept and not defaulted",
        {"type": "object", "properties": {"mode": {"type": "string", "nullable": True, "default": "auto"}}},
        {"mode": None},
        {"mode": None},
    ),
]


@pytest.mark.parametrize(("what", "schema", "spec", "stored"), DEFAULTS, ids=[d[0] for d in DEFAULTS])
def test_defaulting(what: str, schema: Obj, spec: Any, stored: Any) -> None:
    result = check(schema, spec)
    assert result.errors == []
    assert result.obj["spec"] == stored


def test_apply_defaults_returns_a_copy() -> None:
    schema = crd_schema({"type": "object", "properties": {"n": {"type": "integer", "default": 2}}})
    obj = resource({})
    defaulted = apply_defaults(schema, obj)
    assert defaulted["spec"] == {"n": 2}
    assert obj["spec"] == {}


def test_defaults_are_validated_like_user_input() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "default": 1, "maximum": 0}}}
    assert messages(check(schema, {})) == [
        "spec.n: Invalid value: 1: spec.n in body should be less than or equal to 0"
    ]


# --- keywords --------------------------------------------------------------------------------------

S = {"type": "string"}
KEYWORDS: list[tuple[str, Obj, Any, list[str]]] = [
    (
        "type integer",
        {"type": "integer"},
        "3",
        ['spec.v: Invalid value: "string": spec.v in body must be of type integer: "string"'],
    ),
    ("integer accepts a whole float", {"type": "integer"}, 3.0, []),
    (
        "integer refuses a fraction",
        {"type": "integer"},
        3.5,
        ['spec.v: Invalid value: "number": spec.v in body must be of type integer: "number"'],
    ),
    ("number accepts an integer", {"type": "number"}, 3, []),
    (
        "boolean is not an integer",
        {"type": "integer"},
        True,
        ['spec.v: Invalid value: "boolean": spec.v in body must be of type integer: "boolean"'],
    ),
    (
        "object",
        {"type": "object"},
        [],
        ['spec.v: Invalid value: "array": spec.v in body must be of type object: "array"'],
    ),
    (
        "minimum",
        {"type": "integer", "minimum": 0},
        -1,
        ["spec.v: Invalid value: -1: spec.v in body should be greater than or equal to 0"],
    ),
    (
        "exclusiveMinimum",
        {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
        0,
        ["spec.v: Invalid value: 0: spec.v in body should be greater than 0"],
    ),
    (
        "maximum",
        {"type": "number", "maximum": 1},
        1.5,
        ["spec.v: Invalid value: 1.5: spec.v in body should be less than or equal to 1"],
    ),
    (
        "exclusiveMaximum",
        {"type": "integer", "maximum": 10, "exclusiveMaximum": True},
        10,
        ["spec.v: Invalid value: 10: spec.v in body should be less than 10"],
    ),
    (
        "large maximum with a float value prints as Go does",
        {"type": "number", "maximum": 1000000},
        1500000.5,
        ["spec.v: Invalid value: 1.5000005e+06: spec.v in body should be less than or equal to 1e+06"],
    ),
    (
        "integer value against a fractional maximum truncates it, as kube-openapi",
        {"type": "integer", "maximum": 2.5},
        3,
        ["spec.v: Invalid value: 3: spec.v in body should be less than or equal to 2"],
    ),
    (
        "multipleOf",
        {"type": "integer", "multipleOf": 4},
        6,
        ["spec.v: Invalid value: 6: spec.v in body should be a multiple of 4"],
    ),
    (
        "maxLength",
        {"type": "string", "maxLength": 3},
        "abcd",
        ["spec.v: Too long: may not be more than 3 bytes"],
    ),
    (
        "minLength",
        {"type": "string", "minLength": 2},
        "a",
        ['spec.v: Invalid value: "a": spec.v in body should be at least 2 chars long'],
    ),
    (
        "pattern",
        {"type": "string", "pattern": "^[a-z]+$"},
        "ABC",
        ["spec.v: Invalid value: \"ABC\": spec.v in body should match '^[a-z]+$'"],
    ),
    (
        "enum",
        {"type": "string", "enum": ["a", "b"]},
        "x",
        ['spec.v: Unsupported value: "x": supported values: "a", "b"'],
    ),
    ("enum match", {"type": "string", "enum": ["a", "b"]}, "b", []),
    (
        "format date-time",
        {"type": "string", "format": "date-time"},
        "yesterday",
        ['spec.v: Invalid value: "yesterday": spec.v in body must be of type date-time: "yesterday"'],
    ),
    ("format date-time ok", {"type": "string", "format": "date-time"}, "2024-05-01T10:00:00Z", []),
    (
        "format ipv4",
        {"type": "string", "format": "ipv4"},
        "300.1.1.1",
        ['spec.v: Invalid value: "300.1.1.1": spec.v in body must be of type ipv4: "300.1.1.1"'],
    ),
    ("unknown format is ignored", {"type": "string", "format": "int64"}, "x", []),
    (
        "maxItems",
        {"type": "array", "items": S, "maxItems": 1},
        ["a", "b"],
        ["spec.v: Too many: 2: must have at most 1 items"],
    ),
    (
        "minItems",
        {"type": "array", "items": S, "minItems": 1},
        [],
        ["spec.v: Invalid value: 0: spec.v in body should have at least 1 items"],
    ),
    (
        "items",
        {"type": "array", "items": {"type": "integer"}},
        [1, "2"],
        ['spec.v[1]: Invalid value: "string": spec.v[1] in body must be of type integer: "string"'],
    ),
    (
        "maxProperties",
        {"type": "object", "additionalProperties": S, "maxProperties": 1},
        {"a": "1", "b": "2"},
        ["spec.v: Too many: 2: must have at most 1 items"],
    ),
    (
        "minProperties",
        {"type": "object", "additionalProperties": S, "minProperties": 1},
        {},
        ["spec.v: Invalid value: 0: spec.v in body should have at least 1 properties"],
    ),
    (
        "required",
        {"type": "object", "required": ["name"], "properties": {"name": S}},
        {},
        ["spec.v.name: Required value"],
    ),
    (
        "not nullable null in a list",
        {"type": "array", "items": S},
        [None],
        ['spec.v[0]: Invalid value: "null": spec.v[0] in body must be of type string: "null"'],
    ),
    ("nullable", {"type": "array", "items": {"type": "string", "nullable": True}}, [None], []),
    ("int-or-string int", {"x-kubernetes-int-or-string": True}, 8080, []),
    ("int-or-string string", {"x-kubernetes-int-or-string": True}, "http", []),
    (
        "int-or-string refuses a bool",
        {"x-kubernetes-int-or-string": True},
        True,
        ['spec.v: Invalid value: "boolean": spec.v in body must be of type integer,string: "boolean"'],
    ),
    (
        "int-or-string pattern applies to strings only",
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": "^[0-9]+m?$",
        },
        "lots",
        ["spec.v: Invalid value: \"lots\": spec.v in body should match '^[0-9]+m?$'"],
    ),
    (
        "allOf",
        {"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 5}]},
        9,
        ["spec.v: Invalid value: 9: spec.v in body should be less than or equal to 5"],
    ),
    (
        "list-type set duplicates",
        {"type": "array", "items": S, "x-kubernetes-list-type": "set"},
        ["a", "b", "a"],
        ['spec.v[2]: Duplicate value: "a"'],
    ),
    (
        "list-type map duplicate keys",
        {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": S, "v": S}},
        },
        [{"name": "a", "v": "1"}, {"name": "a", "v": "2"}],
        ['spec.v[1]: Duplicate value: map[string]interface {}{"name":"a"}'],
    ),
    (
        "list-type map with two keys allows a repeated single key",
        {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["port", "protocol"],
            "items": {
                "type": "object",
                "required": ["port"],
                "properties": {"port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}},
            },
        },
        [{"port": 53}, {"port": 53, "protocol": "UDP"}],
        [],
    ),
]


@pytest.mark.parametrize(("what", "schema", "value", "expected"), KEYWORDS, ids=[k[0] for k in KEYWORDS])
def test_keywords(what: str, schema: Obj, value: Any, expected: list[str]) -> None:
    result = check({"type": "object", "properties": {"v": schema}}, {"v": value})
    got = [m for m in messages(result) if not m.startswith('<nil>: Invalid value: "null": some validation')]
    assert got == expected


def test_error_causes_carry_the_kubernetes_cause_type() -> None:
    schema = {
        "type": "object",
        "required": ["a"],
        "properties": {
            "a": S,
            "b": {"type": "integer"},
            "c": {"type": "string", "enum": ["x"]},
            "d": {"type": "string", "maxLength": 1},
            "e": {"type": "integer", "minimum": 0},
        },
    }
    result = check(schema, {"b": "no", "c": "y", "d": "long", "e": -1})
    types = {e.field: e.type for e in result.errors}
    assert types == {
        "spec.a": "FieldValueRequired",
        "spec.b": "FieldValueTypeInvalid",
        "spec.c": "FieldValueNotSupported",
        "spec.d": "FieldValueTooLong",
        "spec.e": "FieldValueInvalid",
    }
    assert str(result.errors[0]) == f"{result.errors[0].field}: {result.errors[0].message}"


def test_field_error_is_a_value() -> None:
    error = FieldError("spec.x", "FieldValueRequired", "Required value")
    assert str(error) == "spec.x: Required value"
    assert error == FieldError("spec.x", "FieldValueRequired", "Required value")


# --- metadata --------------------------------------------------------------------------------------

METADATA: list[tuple[str, Obj, list[str]]] = [
    ("valid name", {"name": "my-model.v1"}, []),
    ("generateName only", {"generateName": "train-"}, []),
    (
        "neither",
        {"namespace": "default"},
        ["metadata.name: Required value: name or generateName is required"],
    ),
    (
        "uppercase name",
        {"name": "My_Model"},
        [
            'metadata.name: Invalid value: "My_Model": a lowercase RFC 1123 subdomain must consist of lower case '
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
            "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
            "[a-z0-9])?)*')"
        ],
    ),
    (
        "too long",
        {"name": "a" * 254},
        [f'metadata.name: Invalid value: "{"a" * 254}": must be no more than 253 characters'],
    ),
    (
        "generateName with a bad prefix",
        {"generateName": "Train_"},
        [
            'metadata.generateName: Invalid value: "Train_": a lowercase RFC 1123 subdomain must consist of lower '
            "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
            "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
            "[a-z0-9])?)*')"
        ],
    ),
    (
        "bad label value",
        {"name": "ok", "labels": {"app": "no spaces"}},
        [
            'metadata.labels: Invalid value: "no spaces": a valid label must be an empty string or consist of '
            "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
            "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
            "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ],
    ),
    (
        "namespace not a DNS label",
        {"name": "ok", "namespace": "Team_A"},
        [
            'metadata.namespace: Invalid value: "Team_A": a lowercase RFC 1123 label must consist of lower case '
            "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. "
            "'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        ],
    ),
    (
        "owner reference without uid, two controllers",
        {
            "name": "ok",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": True},
                {"apiVersion": "v1", "kind": "B", "name": "b", "controller": True},
            ],
        },
        [
            'metadata.ownerReferences.uid: Invalid value: "": uid must not be empty',
            'metadata.ownerReferences: Invalid value: []interface {}{map[string]interface {}{"apiVersion":'
            '"v1", "controller":true, "kind":"A", "name":"a", "uid":"1"}, '
            'map[string]interface {}{"apiVersion":"v1", "controller":true, "kind":"B", '
            '"name":"b"}}: Only one reference can have Controller set to true. Found "true" in '
            "references for A/a and B/b",
        ],
    ),
    (
        "annotations over 256 KiB",
        {"name": "ok", "annotations": {"big": "x" * (256 * 1024)}},
        ["metadata.annotations: Too long: may not be more than 262144 bytes"],
    ),
]


@pytest.mark.parametrize(("what", "meta", "expected"), METADATA, ids=[m[0] for m in METADATA])
def test_metadata_name_is_a_dns_subdomain(what: str, meta: Obj, expected: list[str]) -> None:
    obj = resource({})
    obj["metadata"] = meta
    result = validate_custom_resource(crd_schema({"type": "object"}), obj)
    assert [m for m in messages(result) if m.startswith("metadata")] == expected


def test_schema_constraints_on_metadata_name_apply() -> None:
    schema = crd_schema({"type": "object"})
    schema["properties"]["metadata"] = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 5}},
    }
    obj = resource({})
    obj["metadata"] = {"name": "toolong"}
    assert "metadata.name: Too long: may not be more than 5 bytes" in messages(
        validate_custom_resource(schema, obj)
    )


def test_embedded_resource_needs_kind_and_api_version() -> None:
    schema = {
        "type": "object",
        "properties": {
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "x-kubernetes-preserve-unknown-fields": True,
            }
        },
    }
    result = check(schema, {"template": {"metadata": {"name": "x"}}})
    assert "spec.template.apiVersion: Required value: must not be empty" in messages(result)
    assert "spec.template.kind: Required value: must not be empty" in messages(result)


def test_schema_errors_on_unchanged_values_are_ratcheted_on_update() -> None:
    schema = {
        "type": "object",
        "required": ["owner"],
        "properties": {
            "owner": {"type": "string"},
            "replicas": {"type": "integer", "maximum": 3},
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": S, "port": {"type": "integer", "maximum": 1000}},
                },
            },
        },
    }
    stored = {
        "owner": "me",
        "replicas": 10,
        "ports": [{"name": "a", "port": 8080}, {"name": "b", "port": 80}],
    }
    update = {
        "owner": "you",
        "replicas": 10,
        "ports": [{"name": "b", "port": 81}, {"name": "a", "port": 8080}],
    }
    assert messages(check(schema, update, old=stored)) == []
    changed = {**update, "replicas": 11, "ports": [{"name": "a", "port": 9090}]}
    assert messages(check(schema, changed, old=stored)) == [
        "spec.ports[0].port: Invalid value: 9090: spec.ports[0].port in body should be less than or equal to 1000",
        "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 3",
    ]
    assert len(messages(check(schema, update))) == 2, "without an old object nothing is ratcheted"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"spec": "not a schema"}},
        {"type": ["object"], "properties": 5},
        {"type": "object", "properties": {"spec": {"type": "object", "required": "name", "items": [1]}}},
        {"type": "object", "properties": {"spec": {"type": "integer", "minimum": "0", "maxLength": "x"}}},
    ],
)
def test_a_malformed_crd_schema_yields_errors_not_exceptions(schema: Obj) -> None:
    # The local API server may hold a CRD a real server would have refused; requests must still get answers.
    result = validate_custom_resource(schema, resource({"a": 1}))
    assert isinstance(result, Validated)
    assert result.obj["metadata"] == {"name": "t"}


def test_several_errors_come_in_the_servers_order() -> None:
    # The order a 1.3x server prints: fields sorted at each level, a level's required fields last.
    schema = {
        "type": "object",
        "required": ["release"],
        "properties": {
            "release": {"type": "string", "pattern": "^v[0-9]+$"},
            "frontend": {"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 1}}},
            "queue": {"type": "object", "properties": {"depth": {"type": "integer", "maximum": 100}}},
            "disk": {
                "type": "object",
                "properties": {
                    "size": {"type": "string", "pattern": "^[0-9]+Gi$"},
                    "tier": {"type": "string", "enum": ["fast", "slow"]},
                },
            },
        },
    }
    spec = {
        "release": "1",
        "frontend": {"replicas": 0},
        "queue": {"depth": 500},
        "disk": {"tier": "x", "size": "1G"},
    }
    assert messages(check(schema, spec)) == [
        "spec.disk.size: Invalid value: \"1G\": spec.disk.size in body should match '^[0-9]+Gi$'",
        'spec.disk.tier: Unsupported value: "x": supported values: "fast", "slow"',
        "spec.frontend.replicas: Invalid value: 0: spec.frontend.replicas in body should be greater than or equal to 1",
        "spec.queue.depth: Invalid value: 500: spec.queue.depth in body should be less than or equal to 100",
        "spec.release: Invalid value: \"1\": spec.release in body should match '^v[0-9]+$'",
    ]


def test_a_number_beyond_int64_is_a_float_to_the_server_so_not_an_integer() -> None:
    """The server decodes it as a float64, which kube-openapi does not count as an integer (and CEL
    must not crash on it)."""
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1}},
        "x-kubernetes-validations": [{"rule": "!has(self.n) || self.n > 0"}],
    }
    for value in (2**63, 2**64, -(2**63) - 1, 9007199254740994.0):
        errors = [str(e) for e in validate_custom_resource(schema, {"n": value}).errors]
        assert any(e.startswith('n: Invalid value: "number": n in body must be of type') for e in errors)
    assert not [e for e in validate_custom_resource(schema, {"n": 2**63 - 1}).errors if e.field == "n"]
