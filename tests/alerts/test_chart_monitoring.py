"""The chart's monitoring extras: the operator's PrometheusRule and the Grafana dashboard ConfigMap."""

from __future__ import annotations

import json
from typing import Any

import yaml
from promkit import CHART, run_helm

from modelops.builders import alerts
from modelops_local.schema import validate_builtin

ENABLED = [
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.prometheusRule.labels.release=kube-prometheus-stack",
    "--set",
    "metrics.grafanaDashboard.enabled=true",
]


def render(*extra: str) -> list[dict[str, Any]]:
    done = run_helm("template", "mo", str(CHART), "--namespace", "monitoring-test", *extra)
    assert done.returncode == 0, done.stderr
    return [m for m in yaml.safe_load_all(done.stdout) if m]


def test_helm_lint_strict_is_clean_with_both_enabled() -> None:
    done = run_helm("lint", "--strict", str(CHART), *ENABLED)
    assert done.returncode == 0, done.stdout + done.stderr


def test_off_by_default() -> None:
    kinds = {(m["kind"], m["metadata"]["name"]) for m in render()}
    assert ("PrometheusRule", "mo-modelops") not in kinds
    assert ("ConfigMap", "mo-modelops-dashboard") not in kinds


def test_the_dashboard_configmap_is_what_grafanas_sidecar_loads() -> None:
    cm = next(m for m in render(*ENABLED) if m["kind"] == "ConfigMap")
    assert validate_builtin(cm) == []
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelops"
    shipped = json.loads((CHART / "dashboards" / "modelops.json").read_text())
    assert json.loads(cm["data"]["modelops.json"]) == shipped
    assert shipped["uid"] == "modelops-overview" and shipped["panels"]


def test_the_prometheusrule_carries_the_ruleselector_labels_and_known_alerts() -> None:
    rule = next(m for m in render(*ENABLED) if m["kind"] == "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "monitoring-test"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    for r in rules:
        assert r["labels"]["severity"] == alerts.SEVERITIES[r["alert"]]
        assert r["annotations"]["runbook_url"] == f"{alerts.DEFAULT_RUNBOOK_BASE_URL}{r['alert']}.md"
        assert {"summary", "description"} <= set(r["annotations"])


def test_a_runbook_url_without_a_trailing_slash_is_refused() -> None:
    done = run_helm(
        "template", "mo", str(CHART), "--set", "metrics.prometheusRule.runbookBaseUrl=https://wiki/runbooks"
    )
    assert done.returncode != 0 and "runbookBaseUrl" in done.stderr
