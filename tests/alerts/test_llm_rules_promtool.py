"""The LLM alerts and vLLM's recording rules, checked and unit-tested with the real promtool.

An InferenceService serving an LLM gets two more alerts (time to first token above its SLO, a
backed-up queue) over the contract's `modelops_llm_*` series. One served by vLLM also gets recording
rules that give vLLM's own series (`vllm:*`, `http_requests_total`) those names: the tests here feed
promtool vLLM's series as vLLM names and labels them (docs.vllm.ai "Production Metrics") and expect the
same alerts, with the same labels, as for our CPU engines, so the mapping is proven end to end by
Prometheus' own rule engine. Each alert also has a stretch where it must stay silent, and another
InferenceService's bad series next door that must not count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promkit import find_rule, run_promtool, unit_test
from test_rules_promtool import Case, assert_passes, promtool_tests, svc

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.llmconfig import METRIC_LLM_TTFT, METRIC_LLM_WAITING
from modelops.builders import alerts

NS = "team-a"
CHAT = "chat"  # served by llama.cpp: exports modelops_llm_* itself
QWEN = "qwen"  # served by vLLM: recorded from vllm:*
BUCKETS = ("0.1", "0.5", "1", "2.5", "5", "+Inf")


def llm_spec(**over: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"modelRef": {"model": "m", "version": 1}, "llm": {}, **over})


CPU_GROUPS = alerts.serving_rule_groups(CHAT, NS, llm_spec(), runtimes=["llamacpp"])
VLLM_GROUPS = alerts.serving_rule_groups(
    QWEN, NS, llm_spec(resources={"gpus": 1}, alerts={"ttftP99Ms": 1000}), runtimes=["vllm"]
)


def buckets(metric: str, seconds_bucket: str, per_minute: int, **labels: str) -> list[tuple[str, str]]:
    """Every observation of `metric` lands in `seconds_bucket` (cumulative buckets below stay 0)."""
    out = []
    reached = False
    for le in BUCKETS:
        reached = reached or le == seconds_bucket
        values = f"0+{per_minute}x40" if reached else "0x40"
        out.append((svc(f"{metric}_bucket", le=le, **labels), values))
    return out


def p99(lower: float, upper: float) -> float:
    """Prometheus' p99 when every observation is in the bucket (lower, upper], in ms."""
    return (lower + (upper - lower) * 0.99) * 1000


CPU_CASES = [
    Case(
        "ttft-slow",
        "ModelopsLLMTimeToFirstTokenHigh",
        # Another service's slow first tokens are not this one's alert.
        buckets(METRIC_LLM_TTFT, "2.5", 30, model=CHAT, pod="chat-stable-a")
        + buckets(METRIC_LLM_TTFT, "5", 30, model="other", pod="other-stable-a"),
        fire="20m",
        labels={"namespace": NS, "model": CHAT},
        value=p99(1.0, 2.5),
    ),
    Case(
        "queue",
        "ModelopsLLMQueueBacklog",
        [
            (svc(METRIC_LLM_WAITING, model=CHAT, pod="chat-stable-a"), "0 0 12x20"),
            (svc(METRIC_LLM_WAITING, model=CHAT, pod="chat-stable-b"), "0 0 10x20"),
        ],
        silent=["1m", "5m"],  # backed up since 2m: pending for 5m
        fire="10m",
        labels={"namespace": NS, "model": CHAT},
        value=11,
    ),
]

VLLM_POD = {"pod": "qwen-stable-7d9f-abcde", "model_name": "qwen"}
VLLM_CASES = [
    Case(
        "vllm-ttft",
        "ModelopsLLMTimeToFirstTokenHigh",
        buckets("vllm:time_to_first_token_seconds", "2.5", 30, **VLLM_POD)
        # Another InferenceService's vLLM pods in the namespace: never recorded as this one's.
        + buckets("vllm:time_to_first_token_seconds", "5", 30, pod="llama-stable-1-x", model_name="llama"),
        fire="20m",
        labels={"namespace": NS, "model": QWEN},
        value=p99(1.0, 2.5),
    ),
    Case(
        "vllm-queue",
        "ModelopsLLMQueueBacklog",
        [
            (svc("vllm:num_requests_waiting", **VLLM_POD), "0 0 20x20"),
            (svc("vllm:num_requests_waiting", pod="qwen-canary-5c-x", model_name="qwen"), "0 0 4x20"),
        ],
        silent=["1m"],
        fire="10m",
        labels={"namespace": NS, "model": QWEN},
        value=12,
    ),
    Case(
        "vllm-5xx",
        "ModelopsInferenceErrorRateHigh",
        [
            (
                svc(
                    "http_requests_total",
                    handler="/v1/chat/completions",
                    status="2xx",
                    method="POST",
                    **VLLM_POD,
                ),
                "0+54x30",
            ),
            (
                svc(
                    "http_requests_total",
                    handler="/v1/chat/completions",
                    status="5xx",
                    method="POST",
                    **VLLM_POD,
                ),
                "0+6x30",
            ),
            # Kubelet probes answered 200 are not requests: they must not dilute the error rate.
            (
                svc("http_requests_total", handler="/health", status="2xx", method="GET", **VLLM_POD),
                "0+6000x30",
            ),
        ],
        fire="15m",
        labels={"namespace": NS, "model": QWEN},
        value=10,
    ),
]


def test_promtool_check_rules_accepts_the_llm_and_vllm_rule_sets(tmp_path: Path) -> None:
    for name, groups in (("cpu", CPU_GROUPS), ("vllm", VLLM_GROUPS)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(alerts.rules_file(groups))
        done = run_promtool("check", "rules", str(path))
        assert_passes(done)
    recorded = [r["record"] for g in VLLM_GROUPS for r in g["rules"] if "record" in r]
    assert f"{METRIC_LLM_WAITING}" in recorded and f"{METRIC_LLM_TTFT}_bucket" in recorded


def test_llm_alerts_fire_on_the_cpu_engines_series(tmp_path: Path) -> None:
    assert_passes(unit_test(tmp_path, CPU_GROUPS, promtool_tests(CPU_GROUPS, CPU_CASES)))


def test_llm_alerts_fire_on_vllms_own_series_through_the_recording_rules(tmp_path: Path) -> None:
    assert_passes(unit_test(tmp_path, VLLM_GROUPS, promtool_tests(VLLM_GROUPS, VLLM_CASES)))


def test_a_fast_llm_raises_no_ttft_alert_and_a_classifier_gets_no_llm_rules(tmp_path: Path) -> None:
    tests = [
        {
            "interval": "1m",
            "input_series": [
                {"series": s, "values": v}
                for s, v in buckets(METRIC_LLM_TTFT, "0.5", 30, model=CHAT, pod="p")
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "ModelopsLLMTimeToFirstTokenHigh", "exp_alerts": []}
            ],
        }
    ]
    assert_passes(unit_test(tmp_path, CPU_GROUPS, tests))
    plain = InferenceServiceSpec.model_validate({"modelRef": {"model": "m", "version": 1}})
    names = {r.get("alert") for g in alerts.serving_rule_groups("web", NS, plain) for r in g["rules"]}
    assert "ModelopsLLMTimeToFirstTokenHigh" not in names and "ModelopsLLMQueueBacklog" not in names


def test_the_ttft_slo_follows_the_spec() -> None:
    rule = find_rule(VLLM_GROUPS, "ModelopsLLMTimeToFirstTokenHigh")
    assert rule["expr"].endswith("> 1000")
    gated = llm_spec(canary={"modelRef": {"model": "m", "version": 2}, "analysis": {"maxTtftP99Ms": 750}})
    assert alerts.ttft_slo_ms(gated) == 750 and alerts.ttft_slo_ms(llm_spec()) == alerts.DEFAULT_TTFT_P99_MS


def test_the_rule_object_follows_the_engine_the_status_names() -> None:
    from modelops.controllers import alerting

    def body(runtime: str) -> dict[str, Any]:
        return {
            "metadata": {"name": QWEN, "namespace": NS},
            "spec": {"modelRef": {"model": "m", "version": 1}, "resources": {"gpus": 1}},
            "status": {"stable": {"modelVersion": "m-1", "runtime": runtime}},
        }

    served_by_vllm = alerting.groups_for("InferenceService", body("vllm"), alerts.Options())
    assert served_by_vllm is not None
    assert [g["name"] for g in served_by_vllm] == [
        f"modelops.inferenceservice.{NS}.{QWEN}.vllm",
        f"modelops.inferenceservice.{NS}.{QWEN}",
    ]
    assert alerts.count_rules(served_by_vllm) == len(
        [r for g in served_by_vllm for r in g["rules"] if "alert" in r]
    )
    classic = alerting.groups_for("InferenceService", body("modelops-worker"), alerts.Options())
    assert classic is not None and len(classic) == 1
    assert "ModelopsLLMQueueBacklog" not in {r.get("alert") for r in classic[0]["rules"]}
