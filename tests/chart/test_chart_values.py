"""values.schema.json turns a bad value into an install-time error that names the value.

Without the schema, a typo (`replicas:` for `replicaCount:`) is silently ignored and a wrong type
renders a manifest the API server rejects with a message about the Deployment, not the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chartkit import CHART

SCHEMA = json.loads((CHART / "values.schema.json").read_text())

BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("negative-replicas", {"replicaCount": -1}, "/replicaCount"),
    ("replicas-as-string", {"replicaCount": "two"}, "/replicaCount"),
    # Standalone operator, no leader election: a second replica would reconcile everything twice.
    ("two-replicas", {"replicaCount": 2}, "/replicaCount"),
    ("unknown-top-level-key", {"replicas": 2}, "'replicas' not allowed"),
    ("unknown-nested-key", {"image": {"name": "x"}}, "'name' not allowed"),
    ("bad-pull-policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("bad-digest", {"image": {"digest": "latest"}}, "/image/digest"),
    ("port-out-of-range", {"operator": {"metricsPort": 70000}}, "/operator/metricsPort"),
    ("namespace-not-a-dns-label", {"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ("namespaces-not-a-list", {"watchNamespaces": "team-a"}, "/watchNamespaces"),
    ("bad-log-format", {"logFormat": "xml"}, "/logFormat"),
    ("bad-cpu-quantity", {"resources": {"requests": {"cpu": "lots"}}}, "/resources/requests/cpu"),
    ("unknown-resource", {"resources": {"limits": {"gpu": 1}}}, "'gpu' not allowed"),
    (
        "bad-toleration-effect",
        {"tolerations": [{"key": "k", "effect": "Sometimes"}]},
        "/tolerations/0/effect",
    ),
    ("env-without-name", {"operator": {"extraEnv": [{"value": "x"}]}}, "/operator/extraEnv/0"),
    ("annotation-not-a-string", {"podAnnotations": {"a": 1}}, "/podAnnotations/a"),
    ("bool-as-string", {"rbac": {"create": "yes"}}, "/rbac/create"),
]


@pytest.mark.parametrize(("values", "named"), [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_bad_values_are_rejected_naming_the_value(
    helm: Callable[..., Any], values: dict[str, Any], named: str
) -> None:
    result = helm("template", "mo", str(CHART), values=values)
    assert result.returncode != 0, f"helm accepted {values}"
    assert "don't meet the specifications of the schema" in result.stderr
    assert named in result.stderr, result.stderr


def test_bad_values_are_rejected_by_install_too(helm: Callable[..., Any]) -> None:
    # `helm install --dry-run=client` goes through the same validation without a cluster.
    result = helm("install", "mo", str(CHART), "--dry-run=client", values={"replicaCount": -1})
    assert result.returncode != 0
    assert "/replicaCount" in result.stderr


def _objects(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _objects(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _objects(schema["items"], f"{path}[]")


def test_schema_is_draft_07_and_closed_at_every_level() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    for path, node in _objects(SCHEMA, "values"):
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"


def test_every_value_is_described_and_typed() -> None:
    for path, node in _objects(SCHEMA, "values"):
        if path == "values":
            continue
        assert node.get("description"), f"{path} has no description"
        assert "type" in node, f"{path} has no type"


# Values that are Kubernetes objects whose fields are all optional: documented as a whole.
KUBERNETES_OBJECTS = {"resources.requests", "resources.limits", "affinity"}


def test_defaults_cover_every_schema_key_and_readme_lists_them() -> None:
    import yaml

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()

    def leaves(values: dict[str, Any], schema: dict[str, Any], prefix: str) -> Iterator[str]:
        for key, sub in schema["properties"].items():
            assert key in values, f"{prefix}{key} is in the schema but has no default in values.yaml"
            if f"{prefix}{key}" not in KUBERNETES_OBJECTS and "properties" in sub:
                yield from leaves(values[key], sub, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)` \|.*$", readme, flags=re.MULTILINE)}
    for key in leaves(defaults, SCHEMA, ""):
        assert key in rows, f"charts/modelops/README.md does not list `{key}`"
        description = _at(SCHEMA, key)["description"]
        assert description in rows[key], f"README row of `{key}` does not say: {description}"


def _at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = schema
    for part in dotted.split("."):
        node = node["properties"][part]
    return node
