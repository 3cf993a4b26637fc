"""Every generated rule set passes `promtool check rules`, and every alert is unit-tested with promtool.

Each alert gets synthetic series in which it must stay silent (the healthy stretch, a pending stretch,
another object's bad series next door) and then fire with the labels and rendered annotations a user
would see. Rules come from the same builders the operator uses, for a sample TrainingJob and
InferenceService with default and with custom thresholds, and from the chart's PrometheusRule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from promkit import CHART, expected_alert, find_rule, run_helm, run_promtool, unit_test

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import alerts

NS = "team-a"
JOB = "train-a"
SVC = "web"


def training_spec(**alert_overrides: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate(
        {
            "model": {"architecture": "mlp"},
            "dataset": {"builtin": "digits"},
            "resources": {"gpus": 1},
            "backup": {"schedule": "@daily", "destination": {"claimName": "backups"}},
            "alerts": alert_overrides,
        }
    )


def serving_spec(**alert_overrides: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate(
        {"modelRef": {"model": "digits", "version": 1}, "maxReplicas": 4, "alerts": alert_overrides}
    )


DEFAULT_TRAINING = alerts.training_rule_groups(JOB, NS, training_spec())
CUSTOM_TRAINING = alerts.training_rule_groups(
    JOB, NS, training_spec(stalledAfter="2m", maxRestarts=1, gpuMemoryPercent=80, pendingFor="1m")
)
DEFAULT_SERVING = alerts.serving_rule_groups(SVC, NS, serving_spec())
CUSTOM_SERVING = alerts.serving_rule_groups(SVC, NS, serving_spec(p99LatencyMs=3000, errorRatePercent=20))


def chart_rule_groups() -> list[dict[str, Any]]:
    """The chart's PrometheusRule groups, rendered by the real helm."""
    done = run_helm(
        "template",
        "mo",
        str(CHART),
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    )
    assert done.returncode == 0, done.stderr
    return list(yaml.safe_load(done.stdout)["spec"]["groups"])


@dataclass
class Case:
    """An alert's synthetic series: silent at each of `silent`, firing at `fire` with these labels and value."""

    id: str
    alert: str
    series: list[tuple[str, str]]
    fire: str
    labels: dict[str, str]
    value: float
    silent: list[str] = field(default_factory=list)
    interval: str = "1m"


def tj(metric: str, **labels: str) -> str:
    return (
        metric
        + "{"
        + ",".join(f'{k}="{v}"' for k, v in {"namespace": NS, "name": JOB, **labels}.items())
        + "}"
    )


def pod(metric: str, p: str = f"{JOB}-0", **labels: str) -> str:
    return (
        metric + "{" + ",".join(f'{k}="{v}"' for k, v in {"namespace": NS, "pod": p, **labels}.items()) + "}"
    )


def svc(metric: str, **labels: str) -> str:
    return metric + "{" + ",".join(f'{k}="{v}"' for k, v in {"namespace": NS, **labels}.items()) + "}"


OBJ = {"namespace": NS, "name": JOB}
POD0 = {"namespace": NS, "pod": f"{JOB}-0"}
BUCKETS = ("0.05", "0.1", "0.5", "1", "2.5", "+Inf")


def latency_series(seconds_bucket: str, per_minute: int) -> list[tuple[str, str]]:
    """Every request of the service lands in `seconds_bucket`: the buckets below stay 0."""
    out = []
    reached = False
    for le in BUCKETS:
        reached = reached or le == seconds_bucket
        values = f"0+{per_minute}x40" if reached else "0x40"
        out.append((svc(f"{alerts.METRIC_LATENCY}_bucket", model=SVC, code="200", le=le), values))
    return out


TRAINING_CASES = [
    Case(
        "failed",
        "ModelopsTrainingJobFailed",
        [
            (tj("modelops_trainingjob_phase", phase="Running"), "1 1 0 0 0"),
            (tj("modelops_trainingjob_phase", phase="Failed"), "0 0 1 1 1"),
            # Another job's failure is not this job's alert.
            (svc("modelops_trainingjob_phase", name="train-b", phase="Failed"), "1 1 1 1 1"),
        ],
        fire="3m",
        labels={**OBJ, "phase": "Failed"},
        value=1,
        silent=["1m"],
    ),
    Case(
        "stalled",
        "ModelopsTrainingStalled",
        [
            # Steps every minute until minute 10, then none: stalled once 15m pass without one.
            (pod("modelops_training_last_progress_timestamp_seconds"), "0+60x10 600x30"),
            # Pods of other jobs (train-ab, train-a-x) never progress: their alerts are not this job's.
            (pod("modelops_training_last_progress_timestamp_seconds", p="train-ab-0"), "0x40"),
            (pod("modelops_training_last_progress_timestamp_seconds", p="train-a-x-0"), "0x40"),
        ],
        fire="30m",
        labels=POD0,
        value=1200,
        silent=["10m", "24m"],
    ),
    Case(
        "loss-not-finite",
        "ModelopsTrainingLossNotFinite",
        [(pod("modelops_training_loss"), "0.5 0.4 0.3 NaN NaN NaN NaN NaN NaN NaN NaN NaN")],
        fire="9m",
        labels=POD0,
        value=float("nan"),
        silent=["2m", "6m"],
    ),
    Case(
        "loss-infinite",
        "ModelopsTrainingLossNotFinite",
        [(pod("modelops_training_loss"), "0.5 Inf Inf Inf Inf Inf Inf Inf Inf")],
        fire="7m",
        labels=POD0,
        value=float("inf"),
        silent=["0m", "3m"],
    ),
    Case(
        "restarts",
        "ModelopsTrainingRestartsHigh",
        [(tj("modelops_trainingjob_restarts"), "0 1 2 3 3")],
        fire="3m",
        labels=OBJ,
        value=3,
        silent=["2m"],
    ),
    Case(
        "gpu-idle",
        "ModelopsTrainingGPUIdle",
        [(pod("DCGM_FI_DEV_GPU_UTIL", gpu="0", UUID="GPU-1"), "90x10 1x50")],
        fire="45m",
        labels=POD0,
        value=1,
        silent=["10m", "35m"],
    ),
    Case(
        "gpu-memory",
        "ModelopsTrainingGPUMemoryNearFull",
        [
            (pod("DCGM_FI_DEV_FB_USED", gpu="0"), "1000x5 7800x20"),
            (pod("DCGM_FI_DEV_FB_FREE", gpu="0"), "7000x5 200x20"),
        ],
        fire="12m",
        labels={**POD0, "gpu": "0"},
        value=97.5,
        silent=["5m", "9m"],
    ),
    Case(
        "backup-failed",
        "ModelopsBackupFailed",
        [(tj("modelops_backup_failing", kind="TrainingJob"), "0 0 1 1")],
        fire="2m",
        labels={**OBJ, "kind": "TrainingJob"},
        value=1,
        silent=["1m"],
    ),
    Case(
        "backup-too-old",
        "ModelopsBackupTooOld",
        [(tj("modelops_backup_last_success_timestamp_seconds", kind="TrainingJob"), "0x60")],
        fire="49h",
        labels={**OBJ, "kind": "TrainingJob"},
        value=49 * 3600,
        silent=["47h"],
        interval="1h",
    ),
]

SERVING_CASES = [
    Case(
        "error-rate",
        "ModelopsInferenceErrorRateHigh",
        [
            (svc(alerts.METRIC_REQUESTS, model=SVC, version="1", code="200"), "0+100x40"),
            # 1 error a minute (1%), then 20 a minute (16.7%) from minute 10.
            (svc(alerts.METRIC_REQUESTS, model=SVC, version="1", code="500"), "0+1x10 10+20x30"),
        ],
        fire="25m",
        labels={"namespace": NS, "model": SVC},
        value=100 * 20 / 120,
        silent=["9m", "17m"],
    ),
    Case(
        "latency",
        "ModelopsInferenceLatencyHigh",
        latency_series("2.5", 60),
        fire="20m",
        labels={"namespace": NS, "model": SVC},
        value=(1 + 1.5 * 0.99) * 1000,
    ),
    Case(
        "degraded",
        "ModelopsInferenceServiceDegraded",
        [
            (svc("modelops_inferenceservice_phase", name=SVC, phase="Ready"), "1 1 0x10"),
            (svc("modelops_inferenceservice_phase", name=SVC, phase="Degraded"), "0 0 1x10"),
        ],
        fire="8m",
        labels={"namespace": NS, "name": SVC, "phase": "Degraded"},
        value=1,
        silent=["1m", "5m"],
    ),
    Case(
        "rolled-back",
        "ModelopsCanaryRolledBack",
        [(svc("modelops_inferenceservice_last_rollback_timestamp_seconds", name=SVC), "_ _ 120x80")],
        fire="3m",
        labels={"namespace": NS, "name": SVC},
        value=60,
        silent=["1m", "70m"],
    ),
    Case(
        "at-max",
        "ModelopsInferenceReplicasAtMax",
        [(svc("modelops_inferenceservice_replicas", name=SVC), "1 2 4x40")],
        fire="35m",
        labels={"namespace": NS, "name": SVC},
        value=4,
        silent=["1m", "20m"],
    ),
]


def promtool_tests(groups: list[dict[str, Any]], cases: list[Case]) -> list[dict[str, Any]]:
    tests = []
    for case in cases:
        rule = find_rule(groups, case.alert)
        checks: list[dict[str, Any]] = [
            {"eval_time": t, "alertname": case.alert, "exp_alerts": []} for t in case.silent
        ]
        checks.append(
            {
                "eval_time": case.fire,
                "alertname": case.alert,
                "exp_alerts": [expected_alert(rule, case.labels, case.value)],
            }
        )
        tests.append(
            {
                "name": case.id,
                "interval": case.interval,
                "input_series": [{"series": s, "values": v} for s, v in case.series],
                "alert_rule_test": checks,
            }
        )
    return tests


def assert_passes(done: Any) -> None:
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "groups",
    [DEFAULT_TRAINING, CUSTOM_TRAINING, DEFAULT_SERVING, CUSTOM_SERVING],
    ids=["training-defaults", "training-custom", "serving-defaults", "serving-custom"],
)
def test_promtool_check_rules_accepts_every_generated_rule_set(
    tmp_path: Path, groups: list[dict[str, Any]]
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(alerts.rules_file(groups))
    done = run_promtool("check", "rules", str(path))
    assert_passes(done)
    assert f"SUCCESS: {alerts.count_rules(groups)} rules found" in done.stdout


def test_promtool_check_rules_accepts_the_chart_rules(tmp_path: Path) -> None:
    groups = chart_rule_groups()
    path = tmp_path / "chart-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    assert_passes(run_promtool("check", "rules", str(path)))


def test_training_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    assert_passes(unit_test(tmp_path, DEFAULT_TRAINING, promtool_tests(DEFAULT_TRAINING, TRAINING_CASES)))


def test_serving_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    assert_passes(unit_test(tmp_path, DEFAULT_SERVING, promtool_tests(DEFAULT_SERVING, SERVING_CASES)))


def test_a_fast_service_raises_no_latency_alert(tmp_path: Path) -> None:
    tests = promtool_tests(DEFAULT_SERVING, [])
    tests.append(
        {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in latency_series("0.05", 60)],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "ModelopsInferenceLatencyHigh", "exp_alerts": []}
            ],
        }
    )
    assert_passes(unit_test(tmp_path, DEFAULT_SERVING, tests))


def test_custom_thresholds_move_when_alerts_fire(tmp_path: Path) -> None:
    """stalledAfter 2m, maxRestarts 1, gpuMemoryPercent 80 fire where the defaults stay silent."""
    cases = [
        Case(
            "stalled-2m",
            "ModelopsTrainingStalled",
            [(pod("modelops_training_last_progress_timestamp_seconds"), "0+60x10 600x30")],
            fire="13m",
            labels=POD0,
            value=180,
            silent=["10m", "12m"],
        ),
        Case(
            "one-restart",
            "ModelopsTrainingRestartsHigh",
            [(tj("modelops_trainingjob_restarts"), "0 1 1")],
            fire="1m",
            labels=OBJ,
            value=1,
            silent=["0m"],
        ),
        Case(
            "gpu-memory-85",
            "ModelopsTrainingGPUMemoryNearFull",
            [
                (pod("DCGM_FI_DEV_FB_USED", gpu="0"), "6800x10"),
                (pod("DCGM_FI_DEV_FB_FREE", gpu="0"), "1200x10"),
            ],
            fire="2m",
            labels={**POD0, "gpu": "0"},
            value=85,
            silent=["0m"],
        ),
    ]
    assert_passes(unit_test(tmp_path, CUSTOM_TRAINING, promtool_tests(CUSTOM_TRAINING, cases)))
    # The same series under the defaults: 12m without a step is under 15m, 1 restart under 3, 85% under 95%.
    silent = [
        {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for c in cases for s, v in c.series],
            "alert_rule_test": [{"eval_time": "12m", "alertname": c.alert, "exp_alerts": []} for c in cases],
        }
    ]
    assert_passes(unit_test(tmp_path, DEFAULT_TRAINING, silent, name="defaults"))


def test_a_custom_latency_slo_and_error_rate_keep_a_slow_service_quiet(tmp_path: Path) -> None:
    series = [
        *latency_series("2.5", 60),
        (svc(alerts.METRIC_REQUESTS, model=SVC, version="1", code="200"), "0+100x40"),
        (svc(alerts.METRIC_REQUESTS, model=SVC, version="1", code="500"), "0+20x40"),
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [
                {"eval_time": "25m", "alertname": "ModelopsInferenceLatencyHigh", "exp_alerts": []},
                {"eval_time": "25m", "alertname": "ModelopsInferenceErrorRateHigh", "exp_alerts": []},
            ],
        }
    ]
    assert_passes(unit_test(tmp_path, CUSTOM_SERVING, tests))


def test_chart_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    groups = chart_rule_groups()
    mv = {"kind": "ModelVersion", "namespace": NS, "name": "digits-1"}
    cases = [
        Case(
            "reconcile-errors",
            "ModelopsReconcileErrors",
            [('modelops_reconcile_errors_total{kind="TrainingJob",reason="ApiException"}', "0x5 1+1x20")],
            fire="14m",
            labels={"kind": "TrainingJob"},
            value=9,  # 0 at minute 4, 9 at minute 14
            silent=["5m", "9m"],
        ),
        Case(
            "backlog",
            "ModelopsReconcileQueueBacklog",
            [('modelops_reconcile_queue_depth{kind="InferenceService"}', "3x5 12x30")],
            fire="25m",
            labels={"kind": "InferenceService"},
            value=12,
            silent=["4m", "15m"],
        ),
        Case(
            "mv-backup-failed",
            "ModelopsBackupFailed",
            [
                (svc("modelops_backup_failing", kind="ModelVersion", name="digits-1"), "0 1"),
                # TrainingJobs' backups have their own per-object rules: not this one's.
                (tj("modelops_backup_failing", kind="TrainingJob"), "1 1"),
            ],
            fire="1m",
            labels=mv,
            value=1,
            silent=["0m"],
        ),
        Case(
            "mv-backup-too-old",
            "ModelopsBackupTooOld",
            [
                (
                    svc(
                        "modelops_backup_last_success_timestamp_seconds", kind="ModelVersion", name="digits-1"
                    ),
                    "0x60",
                )
            ],
            fire="49h",
            labels=mv,
            value=49 * 3600,
            silent=["47h"],
            interval="1h",
        ),
    ]
    assert_passes(unit_test(tmp_path, groups, promtool_tests(groups, cases)))


def test_a_search_failing_as_many_trials_as_it_tolerates_raises_an_alert(tmp_path: Path) -> None:
    groups = chart_rule_groups()
    search = {"namespace": NS, "name": "digits-search"}
    labels = f'namespace="{NS}",name="digits-search"'
    other = f'namespace="{NS}",name="healthy-search"'
    case = Case(
        "tuning-trials-failing",
        "ModelopsTuningTrialsFailing",
        [
            (f"modelops_tuningjob_trials_failed{{{labels}}}", "0 1 2 3 3"),
            (f"modelops_tuningjob_max_failed_trials{{{labels}}}", "3x5"),
            # A search that tolerates no failure and has none stays quiet.
            (f"modelops_tuningjob_trials_failed{{{other}}}", "0x5"),
            (f"modelops_tuningjob_max_failed_trials{{{other}}}", "0x5"),
        ],
        fire="3m",
        labels=search,
        value=3,
        silent=["0m", "1m", "2m"],
    )
    assert_passes(unit_test(tmp_path, groups, promtool_tests(groups, [case])))


def test_every_alert_has_a_test_here() -> None:
    tested = {c.alert for c in TRAINING_CASES + SERVING_CASES} | {
        "ModelopsReconcileErrors",
        "ModelopsReconcileQueueBacklog",
        "ModelopsTuningTrialsFailing",
        # Unit-tested in test_llm_rules_promtool.py, on the CPU engines' series and on vLLM's.
        "ModelopsLLMTimeToFirstTokenHigh",
        "ModelopsLLMQueueBacklog",
    }
    assert tested == set(alerts.SEVERITIES)
