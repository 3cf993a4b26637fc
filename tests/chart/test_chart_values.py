"""values.schema.json turns a bad value into an install-time error that names the value.

Without the schema, a typo (`replicas:` for `replicaCount:`) is silently ignored and a wrong type
renders a manifest the API server rejects with a message about the Deployment, not the value.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from chartkit import CHART, ROOT

SCHEMA = json.loads((CHART / "values.schema.json").read_text())

BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("negative-replicas", {"replicaCount": -1}, "/replicaCount"),
    ("replicas-as-string", {"replicaCount": "two"}, "/replicaCount"),
    # Without leader election a second replica would reconcile everything twice.
    (
        "two-replicas-without-leader-election",
        {"replicaCount": 2, "leaderElection": {"enabled": False}},
        "/replicaCount",
    ),
    (
        "lease-duration-zero",
        {"leaderElection": {"leaseDurationSeconds": 0}},
        "/leaderElection/leaseDurationSeconds",
    ),
    ("lease-name-not-a-name", {"leaderElection": {"leaseName": "Op_Lease"}}, "/leaderElection/leaseName"),
    ("unknown-top-level-key", {"replicas": 2}, "'replicas' not allowed"),
    ("unknown-nested-key", {"image": {"name": "x"}}, "'name' not allowed"),
    ("bad-pull-policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("bad-digest", {"image": {"digest": "latest"}}, "/image/digest"),
    ("port-out-of-range", {"operator": {"metricsPort": 70000}}, "/operator/metricsPort"),
    ("namespace-not-a-dns-label", {"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ("namespaces-not-a-list", {"watchNamespaces": "team-a"}, "/watchNamespaces"),
    ("bad-log-format", {"logFormat": "xml"}, "/logFormat"),
    ("bad-cpu-quantity", {"resources": {"requests": {"cpu": "lots"}}}, "/resources/requests/cpu"),
    ("negative-cpu-string", {"resources": {"requests": {"cpu": "-1"}}}, "/resources/requests/cpu"),
    ("negative-memory-number", {"resources": {"limits": {"memory": -2}}}, "/resources/limits/memory"),
    ("negative-tmp-size", {"tmpSizeLimit": -1}, "/tmpSizeLimit"),
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


def _values_doc() -> Any:
    spec = importlib.util.spec_from_file_location(
        "chart_values_doc", ROOT / "scripts" / "chart_values_doc.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_chart_values_documents_every_value_as_the_chart_defines_it() -> None:
    # Regenerated from values.yaml and values.schema.json; a new value without a default or a
    # description fails here, and so does a page left behind by a change of the chart.
    doc = _values_doc()
    expected = doc.render()
    committed = (ROOT / "docs" / "chart-values.md").read_text()
    assert committed == expected, (
        "docs/chart-values.md is stale: run `python scripts/chart_values_doc.py --write`"
    )
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    keys = [path for path, _, _ in doc.leaves(SCHEMA, defaults)]
    # Every leaf of the defaults is a row (nothing in values.yaml escapes the schema or the page).
    for path in _default_leaves(defaults, ""):
        assert any(path == key or path.startswith(key + ".") for key in keys), f"{path} is not documented"
    assert "docs/chart-values.md" in (CHART / "README.md").read_text()


def _default_leaves(values: dict[str, Any], prefix: str) -> Iterator[str]:
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from _default_leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"
