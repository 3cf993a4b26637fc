"""Alert rules of TrainingJobs and InferenceServices, where they are written, and the series they read.

Pure functions with plain dicts: the rule builders, the alerting controller's plan, the per-object
gauges of the operator, and the dashboard's and rules' references to metrics that really exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelops.api.alerting import duration_seconds
from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import alerts
from modelops.controllers import alerting
from modelops.controllers.metrics import OperatorMetrics, object_state
from modelops_local.schema import validate_builtin

ROOT = Path(__file__).resolve().parents[2]
NS = "team-a"


def tj_spec(**extra: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate(
        {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}, **extra}
    )


def isvc_spec(**extra: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"modelRef": {"model": "digits", "version": 1}, **extra})


def names(groups: list[dict[str, Any]]) -> set[str]:
    return {r["alert"] for g in groups for r in g["rules"]}


def body(kind: str, name: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "uid": "uid-1"},
        "spec": spec,
        "status": status or {},
    }


TJ_SPEC = {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}}
IS_SPEC = {"modelRef": {"model": "digits", "version": 1}, "maxReplicas": 3}

# ------------------------------------------------------------------------------------------ builders


def test_every_rule_names_its_resource_and_links_its_runbook() -> None:
    groups = alerts.training_rule_groups(
        "train-a",
        NS,
        tj_spec(resources={"gpus": 2}, backup={"schedule": "@daily", "destination": {"claimName": "b"}}),
    ) + alerts.serving_rule_groups("web", NS, isvc_spec(maxReplicas=4))
    assert len(names(groups)) == alerts.count_rules(groups) == 13
    for group in groups:
        for rule in group["rules"]:
            who = "train-a" if "trainingjob" in group["name"] else "web"
            assert f"{NS}/{who}" in rule["annotations"]["summary"], rule
            assert f"{NS}/{who}" in rule["annotations"]["description"], rule
            assert (
                rule["annotations"]["runbook_url"] == f"{alerts.DEFAULT_RUNBOOK_BASE_URL}{rule['alert']}.md"
            )
            assert rule["labels"]["severity"] == alerts.SEVERITIES[rule["alert"]]
            assert rule["labels"]["namespace"] == NS


def test_gpu_backup_and_autoscaling_rules_only_where_they_can_mean_something() -> None:
    plain = names(alerts.training_rule_groups("j", NS, tj_spec()))
    assert plain == {
        "ModelopsTrainingJobFailed",
        "ModelopsTrainingStalled",
        "ModelopsTrainingLossNotFinite",
        "ModelopsTrainingRestartsHigh",
    }
    gpu = names(alerts.training_rule_groups("j", NS, tj_spec(resources={"gpus": 1})))
    assert gpu - plain == {"ModelopsTrainingGPUIdle", "ModelopsTrainingGPUMemoryNearFull"}
    backed_up = tj_spec(backup={"schedule": "@daily", "destination": {"claimName": "b"}})
    assert names(alerts.training_rule_groups("j", NS, backed_up)) - plain == {
        "ModelopsBackupFailed",
        "ModelopsBackupTooOld",
    }
    # min == max: always "at max", so no such alert.
    assert "ModelopsInferenceReplicasAtMax" not in names(alerts.serving_rule_groups("s", NS, isvc_spec()))
    assert "ModelopsInferenceReplicasAtMax" in names(
        alerts.serving_rule_groups("s", NS, isvc_spec(maxReplicas=2))
    )


def test_disabled_alerts_generate_nothing() -> None:
    assert alerts.training_rule_groups("j", NS, tj_spec(alerts={"enabled": False})) == []
    assert alerts.serving_rule_groups("s", NS, isvc_spec(alerts={"enabled": False})) == []


def rule(groups: list[dict[str, Any]], alert: str) -> dict[str, Any]:
    return next(r for g in groups for r in g["rules"] if r["alert"] == alert)


def test_thresholds_come_from_the_spec() -> None:
    spec = tj_spec(
        resources={"gpus": 1},
        alerts={"stalledAfter": "1h30m", "maxRestarts": 7, "gpuIdlePercent": 12, "gpuIdleAfter": "2h"},
    )
    groups = alerts.training_rule_groups("j", NS, spec)
    assert rule(groups, "ModelopsTrainingStalled")["expr"].endswith("> 5400")
    assert rule(groups, "ModelopsTrainingRestartsHigh")["expr"].endswith(">= 7")
    idle = rule(groups, "ModelopsTrainingGPUIdle")
    assert idle["expr"].endswith("< 12") and idle["for"] == "2h"
    # A job's pods are `<job>-<rank>`: the anchored regex cannot match job "j-x"'s pods "j-x-0".
    assert 'pod=~"j-[0-9]+"' in idle["expr"]


def test_the_latency_slo_is_the_alerts_then_the_canarys_then_one_second() -> None:
    assert alerts.p99_slo_ms(isvc_spec()) == 1000
    canary = {"modelRef": {"model": "digits", "version": 2}, "analysis": {"maxP99LatencyMs": 250}}
    assert alerts.p99_slo_ms(isvc_spec(canary=canary)) == 250
    assert alerts.p99_slo_ms(isvc_spec(canary=canary, alerts={"p99LatencyMs": 80})) == 80
    groups = alerts.serving_rule_groups("s", NS, isvc_spec(alerts={"p99LatencyMs": 80, "pendingFor": "0s"}))
    latency = rule(groups, "ModelopsInferenceLatencyHigh")
    assert latency["expr"].endswith("* 1000 > 80") and "for" not in latency


@pytest.mark.parametrize("bad", ["15", "m", "1.5h", "-5m", "5 m"])
def test_a_bad_duration_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"stalledAfter|stalled_after"):
        tj_spec(alerts={"stalledAfter": bad})


def test_durations() -> None:
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("500ms") == 0.5
    assert duration_seconds("2d") == 172800
    with pytest.raises(ValueError, match=r"e\.g\. 15m"):
        duration_seconds("soon")


def test_options_from_the_environment() -> None:
    opts = alerts.Options.from_environ(
        {alerts.ENV_RUNBOOK_BASE_URL: "https://wiki/rb", alerts.ENV_RULE_LABELS: "release=prom, team = ml"}
    )
    assert opts.runbook_base_url == "https://wiki/rb/"
    assert dict(opts.rule_labels) == {"release": "prom", "team": "ml"}
    with pytest.raises(ValueError, match=rf"{alerts.ENV_RULE_LABELS}.*key=value"):
        alerts.Options.from_environ({alerts.ENV_RULE_LABELS: "release"})


def test_the_configmap_and_the_prometheusrule_hold_the_same_groups_and_are_owned() -> None:
    owner = body("TrainingJob", "train-a", TJ_SPEC)
    groups = alerts.training_rule_groups("train-a", NS, tj_spec())
    opts = alerts.Options(rule_labels={"release": "prom"})
    cm = alerts.rules_configmap(owner, groups, opts)
    pr = alerts.prometheus_rule(owner, groups, opts)
    assert validate_builtin(cm) == []
    import yaml

    assert (
        yaml.safe_load(cm["data"][alerts.RULES_KEY]) == {"groups": groups} == {"groups": pr["spec"]["groups"]}
    )
    for manifest in (cm, pr):
        meta = manifest["metadata"]
        assert meta["name"] == "train-a-trainingjob-alerts" and meta["namespace"] == NS
        assert meta["labels"]["release"] == "prom"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "modelops.dev/v1alpha1",
                "kind": "TrainingJob",
                "name": "train-a",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    # A TrainingJob and an InferenceService may share a name; their rule objects may not.
    assert alerts.rule_name("TrainingJob", "x") != alerts.rule_name("InferenceService", "x")


# ------------------------------------------------------------------------------------------ the plan


def test_without_prometheus_operator_the_rules_go_to_a_configmap_and_the_status_says_so() -> None:
    plan = alerting.plan(
        "TrainingJob", body("TrainingJob", "j", TJ_SPEC), prometheus_operator=False, options=alerts.Options()
    )
    assert plan is not None and plan.manifest is not None
    assert plan.manifest["kind"] == "ConfigMap" and plan.delete == ()
    assert plan.status["ruleKind"] == "ConfigMap" and plan.status["rules"] == 4
    assert "Prometheus Operator is not installed" in plan.status["message"]
    assert plan.event is not None and plan.event[:2] == ("Normal", "AlertRulesApplied")


def test_prometheus_operator_installed_later_moves_the_rules_and_removes_the_configmap() -> None:
    before = {"alerting": {"ruleKind": "ConfigMap", "name": "s-inferenceservice-alerts", "rules": 4}}
    plan = alerting.plan(
        "InferenceService",
        body("InferenceService", "s", IS_SPEC, before),
        prometheus_operator=True,
        options=alerts.Options(),
    )
    assert plan is not None and plan.manifest is not None
    assert plan.manifest["kind"] == "PrometheusRule" and plan.delete == ("ConfigMap",)
    assert plan.status == {
        "ruleKind": "PrometheusRule",
        "name": "s-inferenceservice-alerts",
        "rules": 5,
        "message": "5 alert rules in PrometheusRule s-inferenceservice-alerts.",
    }


def test_an_unchanged_object_is_reapplied_quietly() -> None:
    first = alerting.plan(
        "TrainingJob", body("TrainingJob", "j", TJ_SPEC), prometheus_operator=False, options=alerts.Options()
    )
    assert first is not None
    again_body = body("TrainingJob", "j", TJ_SPEC, {"alerting": first.status})
    again = alerting.plan("TrainingJob", again_body, prometheus_operator=False, options=alerts.Options())
    assert again is not None and again.manifest == first.manifest
    assert again.event is None and again.delete == ()
    assert not alerting.changed(again_body, again.status)


def test_disabling_alerts_deletes_the_rule_object() -> None:
    spec = {**TJ_SPEC, "alerts": {"enabled": False}}
    st = {"alerting": {"ruleKind": "PrometheusRule", "name": "j-trainingjob-alerts", "rules": 4}}
    plan = alerting.plan(
        "TrainingJob", body("TrainingJob", "j", spec, st), prometheus_operator=True, options=alerts.Options()
    )
    assert plan is not None and plan.manifest is None and plan.delete == ("PrometheusRule",)
    assert plan.status["ruleKind"] is None and "spec.alerts.enabled" in plan.status["message"]


def test_a_name_taken_by_someone_elses_object_is_never_taken_over() -> None:
    owner = body("TrainingJob", "j", TJ_SPEC)
    theirs = {"metadata": {"name": "j-trainingjob-alerts", "ownerReferences": [{"uid": "someone-else"}]}}
    ours = {"metadata": {"name": "j-trainingjob-alerts", "ownerReferences": [{"uid": "uid-1"}]}}
    assert alerting.foreign(theirs, owner) and alerting.foreign({"metadata": {}}, owner)
    assert not alerting.foreign(ours, owner) and not alerting.foreign(None, owner)
    plan = alerting.conflict("TrainingJob", owner, "ConfigMap")
    assert plan.manifest is None and plan.delete == ()
    assert plan.status["ruleKind"] is None and plan.status["name"] == "j-trainingjob-alerts"
    assert "is not owned by this TrainingJob" in plan.status["message"]
    assert plan.event is not None and plan.event[:2] == ("Warning", "AlertRulesNameConflict")
    # Said once: the next look at the same conflict posts nothing new.
    again = alerting.conflict(
        "TrainingJob", body("TrainingJob", "j", TJ_SPEC, {"alerting": plan.status}), "ConfigMap"
    )
    assert again.event is None


def test_an_unusable_spec_is_left_to_the_kinds_reconcile() -> None:
    bad = body("TrainingJob", "j", {"model": {"architecture": "mlp"}, "bogus": 1})
    assert alerting.plan("TrainingJob", bad, prometheus_operator=False, options=alerts.Options()) is None


# ------------------------------------------------------------------------------------------ metrics


def scrape(metrics: OperatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(scraped: dict[Any, float], metric: str, **labels: str) -> float | None:
    return scraped.get((metric, tuple(sorted(labels.items()))))


class FakeIndex(dict[object, list[dict[str, Any]]]):
    """The shape of a kopf index: key -> the values of the objects under it."""


def index_of(kind: str, *objects: dict[str, Any]) -> FakeIndex:
    idx = FakeIndex()
    for obj in objects:
        idx[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = [object_state(kind, obj)]
    return idx


def test_object_gauges_come_from_status() -> None:
    metrics = OperatorMetrics()
    failed = body("TrainingJob", "bad", TJ_SPEC, {"phase": "Failed", "restarts": 2})
    backed = body(
        "TrainingJob",
        "backed",
        {**TJ_SPEC, "backup": {"schedule": "@daily"}},
        {
            "phase": "Running",
            "backup": {
                "lastSuccessTime": "2026-01-01T00:00:00Z",
                "lastFailure": {"time": "2026-01-02T00:00:00Z", "reason": "BackupCopyFailed"},
            },
        },
    )
    served = body(
        "InferenceService",
        "web",
        IS_SPEC,
        {
            "phase": "Ready",
            "replicas": 3,
            "rolloutHistory": [
                {
                    "modelVersion": "a",
                    "startTime": "2026-01-01T00:00:00Z",
                    "endTime": "2026-01-01T00:10:00Z",
                    "outcome": "RolledBack",
                },
                {
                    "modelVersion": "b",
                    "startTime": "2026-01-03T00:00:00Z",
                    "endTime": "2026-01-03T00:05:00Z",
                    "outcome": "RolledBack",
                },
                {"modelVersion": "c", "startTime": "2026-01-04T00:00:00Z", "outcome": "Promoted"},
            ],
        },
    )
    metrics.track_states("TrainingJob", index_of("TrainingJob", failed, backed))
    metrics.track_states("InferenceService", index_of("InferenceService", served))
    got = scrape(metrics)
    assert sample(got, "modelops_trainingjob_phase", namespace=NS, name="bad", phase="Failed") == 1
    assert sample(got, "modelops_trainingjob_phase", namespace=NS, name="bad", phase="Running") is None
    assert sample(got, "modelops_trainingjob_restarts", namespace=NS, name="bad") == 2
    assert sample(got, "modelops_backup_failing", kind="TrainingJob", namespace=NS, name="backed") == 1
    assert (
        sample(
            got,
            "modelops_backup_last_success_timestamp_seconds",
            kind="TrainingJob",
            namespace=NS,
            name="backed",
        )
        == 1767225600
    )
    # No backup policy, no backup series (an alert on it would be noise).
    assert sample(got, "modelops_backup_failing", kind="TrainingJob", namespace=NS, name="bad") is None
    assert sample(got, "modelops_inferenceservice_replicas", namespace=NS, name="web") == 3
    assert sample(got, "modelops_inferenceservice_phase", namespace=NS, name="web", phase="Ready") == 1
    # The newest rollback's end (2026-01-03T00:05:00Z).
    assert (
        sample(got, "modelops_inferenceservice_last_rollback_timestamp_seconds", namespace=NS, name="web")
        == 1767398700
    )


def test_a_success_after_the_failure_clears_the_backup_failure() -> None:
    spec = {**TJ_SPEC, "backup": {"schedule": "@daily"}}
    status = {
        "backup": {"lastSuccessTime": "2026-01-03T00:00:00Z", "lastFailure": {"time": "2026-01-02T00:00:00Z"}}
    }
    assert object_state("TrainingJob", body("TrainingJob", "j", spec, status))["backupFailing"] is False
    never = {"backup": {"lastFailure": {"time": "2026-01-02T00:00:00Z"}}}
    assert object_state("TrainingJob", body("TrainingJob", "j", spec, never))["backupFailing"] is True


def test_queue_depth_counts_objects_with_an_unfinished_kopf_handler() -> None:
    waiting = body("TrainingJob", "a", TJ_SPEC)
    waiting["metadata"]["annotations"] = {
        "modelops.dev/reconcile": json.dumps(
            {"started": "2026-01-01T00:00:00", "retries": 2, "delayed": "x"}
        ),
        "modelops.dev/last-handled-configuration": "{}",
    }
    done = body("TrainingJob", "b", TJ_SPEC)
    done["metadata"]["annotations"] = {"modelops.dev/last-handled-configuration": json.dumps({"spec": {}})}
    metrics = OperatorMetrics()
    metrics.track_states("TrainingJob", index_of("TrainingJob", waiting, done))
    assert sample(scrape(metrics), "modelops_reconcile_queue_depth", kind="TrainingJob") == 1


def test_in_flight_reconciles_are_counted_while_they_run() -> None:
    metrics = OperatorMetrics()
    with metrics.timed("TrainingJob"):
        assert sample(scrape(metrics), "modelops_reconcile_inflight", kind="TrainingJob") == 1
    assert sample(scrape(metrics), "modelops_reconcile_inflight", kind="TrainingJob") == 0


# ------------------------------------------------------------------------- references to real metrics


def exported_names() -> set[str]:
    """Every series name the operator, the training worker and the serving worker export."""
    from modelops_worker.metrics import TrainingMetrics
    from modelops_worker.serve.metrics import ServeMetrics

    metrics = OperatorMetrics()
    metrics.reconciled("TrainingJob", "ready")
    metrics.failed("TrainingJob", "ApiException")
    with metrics.timed("TrainingJob"):
        pass
    metrics.track_objects("TrainingJob", {"Running": ["uid"]})
    tj = body(
        "TrainingJob",
        "j",
        {**TJ_SPEC, "backup": {"schedule": "@daily"}},
        {"backup": {"lastSuccessTime": "2026-01-01T00:00:00Z"}},
    )
    isvc = body(
        "InferenceService",
        "s",
        IS_SPEC,
        {"rolloutHistory": [{"startTime": "2026-01-01T00:00:00Z", "outcome": "RolledBack"}]},
    )
    metrics.track_states("TrainingJob", index_of("TrainingJob", tj))
    metrics.track_states("InferenceService", index_of("InferenceService", isvc))
    metrics.track_states("TuningJob", index_of("TuningJob", body("TuningJob", "t", {}, {"trialsFailed": 1})))
    serve = ServeMetrics("s", "1")
    serve.observe(200, 0.01)
    serve.batch_size.observe(4)
    found: set[str] = set()
    for registry in (metrics.registry, TrainingMetrics().registry, serve.registry):
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            found |= {s.name for s in family.samples}
    return found


# NVIDIA's DCGM exporter, the source of GPU series (not ours to export).
EXTERNAL = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"}
_METRIC = re.compile(r"\b(modelops_[a-z0-9_]+|DCGM_[A-Z0-9_]+|process_[a-z0-9_]+)\b")


def referenced(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in _METRIC.findall(e)}


def dashboard_exprs() -> Iterator[str]:
    dashboard = json.loads((ROOT / "charts/modelops/dashboards/modelops.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if isinstance(variable.get("query"), dict):
            yield variable["query"]["query"]


def test_the_dashboard_refers_only_to_metrics_that_exist() -> None:
    used = referenced(list(dashboard_exprs()))
    assert used - exported_names() - EXTERNAL == set()
    # And it shows what the operator's alerts are about.
    assert {"modelops_reconcile_queue_depth", "modelops_reconcile_inflight", "modelops_training_loss"} <= used


def test_the_generated_rules_refer_only_to_metrics_that_exist() -> None:
    groups = alerts.training_rule_groups(
        "j",
        NS,
        tj_spec(resources={"gpus": 1}, backup={"schedule": "@daily", "destination": {"claimName": "b"}}),
    ) + alerts.serving_rule_groups("s", NS, isvc_spec(maxReplicas=3))
    chart = (ROOT / "charts/modelops/templates/prometheusrule.yaml").read_text()
    used = referenced([r["expr"] for g in groups for r in g["rules"]] + re.findall(r"expr: (.*)", chart))
    assert used - exported_names() - EXTERNAL == set()
    assert used >= EXTERNAL


def test_every_alert_has_a_runbook_that_names_it() -> None:
    chart = (ROOT / "charts/modelops/templates/prometheusrule.yaml").read_text()
    assert set(re.findall(r"- alert: (\w+)", chart)) <= set(alerts.SEVERITIES)
    guide = (ROOT / "docs/alerts.md").read_text()
    for alert in alerts.SEVERITIES:
        runbook = ROOT / "docs/runbooks" / f"{alert}.md"
        assert runbook.is_file(), f"no runbook for {alert}"
        assert runbook.read_text().startswith(f"# {alert}\n"), runbook
        assert f"runbooks/{alert}.md" in guide, f"docs/alerts.md does not list {alert}"
