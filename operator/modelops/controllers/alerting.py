"""What the alerting controller decides for one object: which rule object to write, which to remove, what to say.

Pure: `plan(kind, body, prometheus_operator=...)` from the object and whether the cluster serves
`monitoring.coreos.com/v1` PrometheusRules. The kopf handlers in `alerting_handlers` carry it out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pydantic

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import alerts

KINDS = ("TrainingJob", "InferenceService")
CONFIGMAP = "ConfigMap"
PROMETHEUS_RULE = "PrometheusRule"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Apply `manifest` (if any), delete the rule objects of the kinds in `delete`, write `status`."""

    manifest: dict[str, Any] | None
    delete: tuple[str, ...]
    status: dict[str, Any]
    event: tuple[str, str, str] | None  # (type, reason, message) when where the rules live changed


def groups_for(kind: str, body: Mapping[str, Any], options: alerts.Options) -> list[dict[str, Any]] | None:
    """The object's rule groups; None when its spec does not parse (its reconcile reports that)."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    try:
        if kind == "TrainingJob":
            return alerts.training_rule_groups(
                name, namespace, TrainingJobSpec.model_validate(dict(body.get("spec") or {})), options
            )
        if kind == "InferenceService":
            st = body.get("status") or {}
            runtimes = [str((st.get(t) or {}).get("runtime") or "") for t in ("stable", "canary")]
            return alerts.serving_rule_groups(
                name,
                namespace,
                InferenceServiceSpec.model_validate(dict(body.get("spec") or {})),
                options,
                runtimes=[r for r in runtimes if r],
            )
    except pydantic.ValidationError:
        return None
    raise ValueError(f"no alert rules for kind {kind}")


def plan(
    kind: str, body: Mapping[str, Any], *, prometheus_operator: bool, options: alerts.Options
) -> Plan | None:
    """What to do for one object; None when there is nothing to decide (an unusable spec)."""
    groups = groups_for(kind, body, options)
    if groups is None:
        return None
    before = dict((body.get("status") or {}).get("alerting") or {})
    was = before.get("ruleKind")
    name = alerts.rule_name(kind, body["metadata"]["name"])
    if not groups:
        status = {
            "ruleKind": None,
            "name": None,
            "rules": 0,
            "message": "Alerts are disabled (spec.alerts.enabled is false); no rules are generated.",
        }
        delete = (was,) if was else ()
        event = (
            ("Normal", "AlertRulesRemoved", f"Removed {was} {name}: alerts are disabled.") if was else None
        )
        return Plan(None, delete, status, event)
    count = alerts.count_rules(groups)
    if prometheus_operator:
        manifest = alerts.prometheus_rule(body, groups, options)
        message = f"{count} alert rules in PrometheusRule {name}."
        rule_kind = PROMETHEUS_RULE
    else:
        manifest = alerts.rules_configmap(body, groups, options)
        message = (
            f"Prometheus Operator is not installed (no monitoring.coreos.com/v1 PrometheusRule): {count} "
            f"alert rules are in ConfigMap {name}, key {alerts.RULES_KEY}, a Prometheus rule file; mount it "
            "into Prometheus' rule_files or install Prometheus Operator (the operator switches within minutes)."
        )
        rule_kind = CONFIGMAP
    status = {"ruleKind": rule_kind, "name": name, "rules": count, "message": message}
    delete = (was,) if was and was != rule_kind else ()
    applied = ("Normal", "AlertRulesApplied", message) if was != rule_kind else None
    return Plan(manifest, delete, status, applied)


def changed(body: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether status.alerting differs from what is written (a timer writes only on change)."""
    before = dict((body.get("status") or {}).get("alerting") or {})
    return any(before.get(k) != v for k, v in status.items())


def foreign(existing: Mapping[str, Any] | None, owner: Mapping[str, Any]) -> bool:
    """Whether an object already at the rule object's name belongs to someone else (never taken over)."""
    if existing is None:
        return False
    uid = owner["metadata"]["uid"]
    refs = (existing.get("metadata") or {}).get("ownerReferences") or []
    return not any(ref.get("uid") == uid for ref in refs)


def conflict(kind: str, body: Mapping[str, Any], rule_kind: str) -> Plan:
    """The plan when the name is taken: nothing written, the status and a Warning say what to do."""
    name = alerts.rule_name(kind, body["metadata"]["name"])
    message = (
        f"{rule_kind} {name} exists and is not owned by this {kind}; no alert rules were written. Rename or "
        "delete that object; the operator retries within minutes."
    )
    status = {"ruleKind": None, "name": name, "rules": 0, "message": message}
    before = dict((body.get("status") or {}).get("alerting") or {})
    event = ("Warning", "AlertRulesNameConflict", message) if before.get("message") != message else None
    return Plan(None, (), status, event)
