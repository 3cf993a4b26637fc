"""The alert rules of one TrainingJob or InferenceService, as Prometheus rule groups, and their holder.

Rules are per object, not per namespace: each object's thresholds come from its own `spec.alerts`, the
rule object is owned by it (deleted with it by the garbage collector), and an edit of one job never
rewrites the rules of another. The cost, one small rule group per object, is what Prometheus handles
well; a namespace-wide group would need every threshold as a label join instead of a constant.

The holder is a `PrometheusRule` (monitoring.coreos.com/v1) when Prometheus Operator is installed,
else a ConfigMap with the same groups under `rules.yaml`, ready for a sidecar or `promtool`.

Which series the rules read, and the labels they assume (see docs/alerts.md):
- the operator's own metrics (`modelops_trainingjob_*`, `modelops_inferenceservice_*`,
  `modelops_backup_*`) with labels `namespace`, `name` (and `kind`), scraped with `honor_labels`;
- the training worker's `modelops_training_*` and DCGM exporter's `DCGM_FI_DEV_*`, by `namespace` and
  `pod` (training pods are named `<job>-<rank>`, so the pod regex cannot match another job's pods);
- the serving worker's `modelops_serving_*`, by `namespace` and `model` (the InferenceService's name);
- an LLM engine's `modelops_llm_*` (modelops.api.llmconfig), by `namespace` and `model`: the CPU
  engines export them; for vLLM the InferenceService's rule object also records them from `vllm:*`
  (`builders.vllm.recording_rules`, the one mapping), so the same alerts read every engine.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping
from typing import Any

import yaml

import modelops.builders as builders
from modelops import API_VERSION
from modelops.api.alerting import duration_seconds
from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.llmconfig import METRIC_LLM_TTFT, METRIC_LLM_WAITING
from modelops.api.serveconfig import METRIC_LATENCY, METRIC_REQUESTS
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import llm, vllm

PROMETHEUS_RULE_API_VERSION = "monitoring.coreos.com/v1"
PROMETHEUS_RULE_PLURAL = "prometheusrules"
RULES_KEY = "rules.yaml"
LABEL_ALERTS_FOR = "modelops.dev/alerts-for"

DEFAULT_RUNBOOK_BASE_URL = "https://github.com/modelops/modelops/blob/main/docs/runbooks/"
ENV_RUNBOOK_BASE_URL = "MODELOPS_RUNBOOK_BASE_URL"
ENV_RULE_LABELS = "MODELOPS_ALERT_RULE_LABELS"
DEFAULT_P99_LATENCY_MS = 1000
DEFAULT_TTFT_P99_MS = 2000

# Every alert any rule set can raise, generated here or in the chart, with its severity. Each has a
# runbook docs/runbooks/<name>.md (a test keeps the two in step).
SEVERITIES: dict[str, str] = {
    "ModelopsTrainingJobFailed": "critical",
    "ModelopsTrainingStalled": "warning",
    "ModelopsTrainingLossNotFinite": "critical",
    "ModelopsTrainingRestartsHigh": "warning",
    "ModelopsTrainingGPUIdle": "warning",
    "ModelopsTrainingGPUMemoryNearFull": "warning",
    "ModelopsBackupFailed": "warning",
    "ModelopsBackupTooOld": "warning",
    "ModelopsInferenceErrorRateHigh": "critical",
    "ModelopsInferenceLatencyHigh": "warning",
    "ModelopsInferenceReplicasAtMax": "warning",
    "ModelopsInferenceServiceDegraded": "warning",
    "ModelopsCanaryRolledBack": "warning",
    "ModelopsLLMTimeToFirstTokenHigh": "warning",
    "ModelopsLLMQueueBacklog": "warning",
    "ModelopsReconcileErrors": "warning",
    "ModelopsReconcileQueueBacklog": "warning",
    "ModelopsTuningTrialsFailing": "warning",
}


@dataclasses.dataclass(frozen=True)
class Options:
    """What the operator's deployment, not the object, decides about the rules."""

    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL
    # Extra labels on the rule object, e.g. the `release: prometheus` a ruleSelector asks for.
    rule_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Options:
        """From MODELOPS_RUNBOOK_BASE_URL and MODELOPS_ALERT_RULE_LABELS (`k=v,k2=v2`)."""
        env = os.environ if environ is None else environ
        labels: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in env.get(ENV_RULE_LABELS, "").split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(
                    f"{ENV_RULE_LABELS}: {item!r} is not key=value; write e.g. release=prometheus"
                )
            labels[key.strip()] = value.strip()
        base = env.get(ENV_RUNBOOK_BASE_URL) or DEFAULT_RUNBOOK_BASE_URL
        return cls(runbook_base_url=base if base.endswith("/") else base + "/", rule_labels=labels)


def rule_name(kind: str, name: str) -> str:
    """The PrometheusRule or ConfigMap of an object (kind in the name: a job and a service may share one)."""
    return f"{name}-{kind.lower()}-alerts"


def _q(value: str) -> str:
    """A PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pods_regex(job: str) -> str:
    """RE2 for the job's pods `<job>-<rank>`; PromQL regexes are anchored, so `<job>-x-0` never matches."""
    return job.replace(".", "\\.") + "-[0-9]+"


def _seconds(duration: str) -> str:
    return f"{duration_seconds(duration):g}"


def _rule(
    alert: str,
    expr: str,
    *,
    for_: str | None,
    labels: Mapping[str, str],
    summary: str,
    description: str,
    options: Options,
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": alert, "expr": expr}
    if for_ and duration_seconds(for_) > 0:
        rule["for"] = for_
    rule["labels"] = {"severity": SEVERITIES[alert], **labels}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{options.runbook_base_url}{alert}.md",
    }
    return rule


def training_rule_groups(
    name: str, namespace: str, spec: TrainingJobSpec, options: Options | None = None
) -> list[dict[str, Any]]:
    """The rule groups of a TrainingJob; empty when its alerts are disabled."""
    a, opts = spec.alerts, options or Options()
    if not a.enabled:
        return []
    obj = f"namespace={_q(namespace)},name={_q(name)}"
    pods = f"namespace={_q(namespace)},pod=~{_q(_pods_regex(name))}"
    who = f"TrainingJob {namespace}/{name}"
    labels = {"namespace": namespace, "trainingjob": name}

    def rule(alert: str, expr: str, for_: str | None, summary: str, description: str) -> dict[str, Any]:
        return _rule(
            alert, expr, for_=for_, labels=labels, summary=summary, description=description, options=opts
        )

    loss = f"modelops_training_loss{{{pods}}}"
    rules = [
        rule(
            "ModelopsTrainingJobFailed",
            f'modelops_trainingjob_phase{{{obj},phase="Failed"}} == 1',
            None,
            f"{who} failed",
            f"{who} is in phase Failed. `kubectl describe trainingjob -n {namespace} {name}` shows "
            "status.failure with the reason and the pod that failed.",
        ),
        rule(
            "ModelopsTrainingStalled",
            f"time() - max by (namespace, pod) (modelops_training_last_progress_timestamp_seconds{{{pods}}})"
            f" > {_seconds(a.stalled_after)}",
            None,
            f"{who} made no progress for {a.stalled_after}",
            f"Pod {{{{ $labels.pod }}}} of {who} completed no optimizer step for "
            f"{{{{ $value | humanizeDuration }}}} (threshold spec.alerts.stalledAfter = {a.stalled_after}).",
        ),
        rule(
            "ModelopsTrainingLossNotFinite",
            f"({loss} != {loss}) or (abs({loss}) == +Inf)",
            a.pending_for,
            f"{who} has a loss that is NaN or infinite",
            f"Pod {{{{ $labels.pod }}}} of {who} reports training loss {{{{ $value }}}}: the run diverged and "
            "further steps are wasted GPU time.",
        ),
        rule(
            "ModelopsTrainingRestartsHigh",
            f"modelops_trainingjob_restarts{{{obj}}} >= {a.max_restarts}",
            None,
            f"{who} restarted {a.max_restarts} times or more",
            f"{who} recreated its pods {{{{ $value }}}} times after failures "
            f"(threshold spec.alerts.maxRestarts = {a.max_restarts}).",
        ),
    ]
    if spec.resources.gpus > 0:
        rules += [
            rule(
                "ModelopsTrainingGPUIdle",
                f"avg by (namespace, pod) (DCGM_FI_DEV_GPU_UTIL{{{pods}}}) < {a.gpu_idle_percent}",
                a.gpu_idle_after,
                f"GPUs of {who} are allocated but idle",
                f"The GPUs of pod {{{{ $labels.pod }}}} of {who} averaged {{{{ $value }}}}% utilisation for "
                f"{a.gpu_idle_after} (under spec.alerts.gpuIdlePercent = {a.gpu_idle_percent}).",
            ),
            rule(
                "ModelopsTrainingGPUMemoryNearFull",
                f"max by (namespace, pod, gpu) (DCGM_FI_DEV_FB_USED{{{pods}}} / "
                f"(DCGM_FI_DEV_FB_USED{{{pods}}} + DCGM_FI_DEV_FB_FREE{{{pods}}})) * 100 "
                f">= {a.gpu_memory_percent}",
                a.pending_for,
                f"GPU memory of {who} is nearly full",
                f"GPU {{{{ $labels.gpu }}}} of pod {{{{ $labels.pod }}}} of {who} uses "
                f'{{{{ $value | printf "%.1f" }}}}% of its memory '
                f"(threshold spec.alerts.gpuMemoryPercent = {a.gpu_memory_percent}); an OOM is near.",
            ),
        ]
    if spec.backup is not None:
        rules += backup_rules("TrainingJob", name, namespace, a.backup_max_age, labels, opts)
    return [{"name": f"modelops.trainingjob.{namespace}.{name}", "rules": rules}]


def backup_rules(
    kind: str, name: str, namespace: str, max_age: str, labels: Mapping[str, str], options: Options
) -> list[dict[str, Any]]:
    """Backup failed, backup too old: for one object with a backup policy."""
    obj = f"kind={_q(kind)},namespace={_q(namespace)},name={_q(name)}"
    who = f"{kind} {namespace}/{name}"
    return [
        _rule(
            "ModelopsBackupFailed",
            f"modelops_backup_failing{{{obj}}} == 1",
            for_=None,
            labels=labels,
            summary=f"The last backup of {who} failed",
            description=f"The newest backup attempt of {who} failed after its last success; "
            "status.backup.lastFailure has the reason.",
            options=options,
        ),
        _rule(
            "ModelopsBackupTooOld",
            f"time() - modelops_backup_last_success_timestamp_seconds{{{obj}}} > {_seconds(max_age)}",
            for_=None,
            labels=labels,
            summary=f"The newest backup of {who} is older than {max_age}",
            description=f"The last successful backup of {who} is {{{{ $value | humanizeDuration }}}} old "
            f"(threshold {max_age}).",
            options=options,
        ),
    ]


def serving_rule_groups(
    name: str,
    namespace: str,
    spec: InferenceServiceSpec,
    options: Options | None = None,
    runtimes: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The rule groups of an InferenceService; empty when its alerts are disabled.

    `runtimes` are those its status names (stable and canary): an LLM engine adds the LLM alerts, vLLM
    also the recording rules that give its series the contract's names."""
    a, opts = spec.alerts, options or Options()
    if not a.enabled:
        return []
    obj = f"namespace={_q(namespace)},name={_q(name)}"
    model = f"namespace={_q(namespace)},model={_q(name)}"
    who = f"InferenceService {namespace}/{name}"
    labels = {"namespace": namespace, "inferenceservice": name}
    slo_ms = p99_slo_ms(spec)

    def rule(alert: str, expr: str, for_: str | None, summary: str, description: str) -> dict[str, Any]:
        return _rule(
            alert, expr, for_=for_, labels=labels, summary=summary, description=description, options=opts
        )

    w = a.window
    rules = [
        rule(
            "ModelopsInferenceErrorRateHigh",
            f'sum by (namespace, model) (rate({METRIC_REQUESTS}{{{model},code=~"5.."}}[{w}])) / '
            f"sum by (namespace, model) (rate({METRIC_REQUESTS}{{{model}}}[{w}])) * 100 "
            f"> {a.error_rate_percent:g}",
            a.pending_for,
            f"{who} answers too many requests with 5xx",
            f'{{{{ $value | printf "%.2f" }}}}% of the requests to {who} failed over {w} '
            f"(threshold spec.alerts.errorRatePercent = {a.error_rate_percent:g}).",
        ),
        rule(
            "ModelopsInferenceLatencyHigh",
            f"histogram_quantile(0.99, sum by (namespace, model, le) "
            f"(rate({METRIC_LATENCY}_bucket{{{model}}}[{w}]))) * 1000 > {slo_ms}",
            a.pending_for,
            f"p99 latency of {who} is above its {slo_ms} ms SLO",
            f'The p99 latency of {who} is {{{{ $value | printf "%.0f" }}}} ms over {w}, above the '
            f"SLO of {slo_ms} ms.",
        ),
        rule(
            "ModelopsInferenceServiceDegraded",
            f'modelops_inferenceservice_phase{{{obj},phase=~"Degraded|Failed"}} == 1',
            a.pending_for,
            f"{who} is degraded",
            f"{who} is in phase {{{{ $labels.phase }}}}: it does not serve the intended version with "
            f"enough ready pods. `kubectl describe inferenceservice -n {namespace} {name}` says why.",
        ),
        rule(
            "ModelopsCanaryRolledBack",
            f"time() - modelops_inferenceservice_last_rollback_timestamp_seconds{{{obj}}} "
            f"< {_seconds(a.rollback_alert_for)}",
            None,
            f"A canary of {who} was rolled back",
            f"The canary of {who} failed its analysis and was rolled back "
            f"{{{{ $value | humanizeDuration }}}} ago; status.rolloutHistory has the reason.",
        ),
    ]
    if spec.max_replicas > spec.min_replicas:
        rules.append(
            rule(
                "ModelopsInferenceReplicasAtMax",
                f"modelops_inferenceservice_replicas{{{obj}}} >= {spec.max_replicas}",
                a.replicas_at_max_after,
                f"{who} is at its maximum of {spec.max_replicas} replicas",
                f"{who} has run {{{{ $value }}}} replicas, spec.maxReplicas, for {a.replicas_at_max_after}: "
                "the autoscaler cannot add capacity and latency will grow with load.",
            )
        )
    is_llm = spec.llm is not None or any(r in llm.ENGINES for r in runtimes)
    if is_llm:
        rules += llm_rules(name, namespace, spec, opts)
    groups = [{"name": f"modelops.inferenceservice.{namespace}.{name}", "rules": rules}]
    uses_vllm = llm.VLLM in runtimes or (spec.llm is not None and spec.llm.engine == llm.VLLM)
    if uses_vllm:
        pods = f"{name.replace('.', '[.]')}-(stable|canary)-.*"
        groups.insert(
            0,
            {
                "name": f"modelops.inferenceservice.{namespace}.{name}.vllm",
                "rules": vllm.recording_rules(name, namespace, pods),
            },
        )
    return groups


def llm_rules(
    name: str, namespace: str, spec: InferenceServiceSpec, options: Options
) -> list[dict[str, Any]]:
    """Time to first token above its SLO, and a backed-up queue, for an InferenceService serving an LLM."""
    a = spec.alerts
    model = f"namespace={_q(namespace)},model={_q(name)}"
    who = f"InferenceService {namespace}/{name}"
    labels = {"namespace": namespace, "inferenceservice": name}
    slo = ttft_slo_ms(spec)
    w = a.window
    return [
        _rule(
            "ModelopsLLMTimeToFirstTokenHigh",
            f"histogram_quantile(0.99, sum by (namespace, model, le) "
            f"(rate({METRIC_LLM_TTFT}_bucket{{{model}}}[{w}]))) * 1000 > {slo}",
            for_=a.pending_for,
            labels=labels,
            summary=f"p99 time to first token of {who} is above its {slo} ms SLO",
            description=f'Clients of {who} wait {{{{ $value | printf "%.0f" }}}} ms (p99 over {w}) for the '
            f"first token, above the SLO of {slo} ms: the engine is saturated (see its waiting requests) or "
            "prompts got longer.",
            options=options,
        ),
        _rule(
            "ModelopsLLMQueueBacklog",
            f"avg by (namespace, model) ({METRIC_LLM_WAITING}{{{model}}}) > {a.waiting_per_pod}",
            for_=a.pending_for,
            labels=labels,
            summary=f"Requests to {who} queue up waiting for a free sequence",
            description=f'{{{{ $value | printf "%.1f" }}}} requests wait per pod of {who} on average '
            f"(threshold spec.alerts.waitingPerPod = {a.waiting_per_pod}): add replicas (spec.maxReplicas, "
            "autoscaling on waiting) or raise spec.llm.parallel.",
            options=options,
        ),
    ]


def ttft_slo_ms(spec: InferenceServiceSpec) -> int:
    """spec.alerts.ttftP99Ms, else the canary analysis' maxTtftP99Ms, else 2000."""
    if spec.alerts.ttft_p99_ms is not None:
        return spec.alerts.ttft_p99_ms
    if spec.canary is not None and spec.canary.analysis.max_ttft_p99_ms is not None:
        return spec.canary.analysis.max_ttft_p99_ms
    return DEFAULT_TTFT_P99_MS


def p99_slo_ms(spec: InferenceServiceSpec) -> int:
    """spec.alerts.p99LatencyMs, else the canary analysis' maxP99LatencyMs, else 1000."""
    if spec.alerts.p99_latency_ms is not None:
        return spec.alerts.p99_latency_ms
    if spec.canary is not None and spec.canary.analysis.max_p99_latency_ms is not None:
        return spec.canary.analysis.max_p99_latency_ms
    return DEFAULT_P99_LATENCY_MS


def count_rules(groups: list[dict[str, Any]]) -> int:
    """Alert rules (vLLM's recording rules are not alerts)."""
    return sum(1 for g in groups for r in g["rules"] if "alert" in r)


def _metadata(owner: Mapping[str, Any], name: str, extra: Mapping[str, str]) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": {
            **extra,
            **builders.MANAGED_BY,
            "app.kubernetes.io/component": "alerts",
            LABEL_ALERTS_FOR: f"{owner['kind'].lower()}.{meta['name']}",
        },
        "ownerReferences": [
            builders.owner_reference(
                owner["kind"], meta["name"], meta["uid"], owner.get("apiVersion", API_VERSION)
            )
        ],
    }


def prometheus_rule(
    owner: Mapping[str, Any], groups: list[dict[str, Any]], options: Options | None = None
) -> dict[str, Any]:
    """The PrometheusRule holding `groups`, owned by `owner` (an object as the API server sent it)."""
    opts = options or Options()
    return {
        "apiVersion": PROMETHEUS_RULE_API_VERSION,
        "kind": "PrometheusRule",
        "metadata": _metadata(owner, rule_name(owner["kind"], owner["metadata"]["name"]), opts.rule_labels),
        "spec": {"groups": groups},
    }


def rules_configmap(
    owner: Mapping[str, Any], groups: list[dict[str, Any]], options: Options | None = None
) -> dict[str, Any]:
    """The same groups as a ConfigMap (`rules.yaml`, a Prometheus rule file) when Prometheus Operator is absent."""
    opts = options or Options()
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, rule_name(owner["kind"], owner["metadata"]["name"]), opts.rule_labels),
        "data": {RULES_KEY: rules_file(groups)},
    }


def rules_file(groups: list[dict[str, Any]]) -> str:
    """A Prometheus rule file (what `promtool check rules` and `rule_files:` read)."""
    return yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000)
