"""Serving LLM versions: the engine chosen by format and GPUs, the pods it takes, vLLM's flags and metrics.

Pure functions with plain dicts. vLLM cannot run on this machine (it needs a GPU), so its manifests are
checked here against vLLM's own documentation: every flag the operator passes is one vLLM documents
(docs.vllm.ai "Engine Arguments" / "OpenAI-Compatible Server", vllm-project/vllm
docs/configuration/engine_args.md), every series it maps is one vLLM documents as exported
(docs.vllm.ai "Production Metrics", vllm-project/vllm docs/design/metrics.md), and the pod passes the
official Kubernetes schema and Pod Security "restricted". The CPU engines' pods carry llmserve's
`LLMServeConfig`, parsed back here with the contract's own model.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from modelops.api.inferenceservice import InferenceServiceSpec, ModelRef
from modelops.api.llmconfig import (
    ENV_LLM_SERVE_CONFIG,
    METRIC_LLM_E2E,
    METRIC_LLM_GENERATION_TOKENS,
    METRIC_LLM_ITL,
    METRIC_LLM_PROMPT_TOKENS,
    METRIC_LLM_RUNNING,
    METRIC_LLM_TTFT,
    METRIC_LLM_WAITING,
    LLMServeConfig,
)
from modelops.api.serveconfig import METRIC_LATENCY, METRIC_REQUESTS
from modelops.builders import inferenceservice as b
from modelops.builders import llm, vllm
from modelops.controllers import inferenceservice as c
from modelops.controllers import inferenceservice_analysis as isvc_analysis
from modelops.controllers import inferenceservice_pods as isvc_pods
from modelops.controllers import inferenceservice_resolve as isvc_resolve
from modelops.controllers import inferenceservice_rollout as rollouts
from modelops.podsecurity import check_restricted
from modelops_local.schema import validate_builtin

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
GGUF_SHA = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
HF_SHA, LORA_SHA = "1" * 64, "2" * 64
GGUF = b.Served("gemma-1", 1, GGUF_SHA, "models", "gemma/gemma-3-270m-q4_k_m.gguf", "gguf")
HF = b.Served("tiny-lm-1", 1, HF_SHA, "models", "tiny-lm", "huggingface")
LORA = b.Served("tiny-lm-sql-1", 1, LORA_SHA, "ft-checkpoints", "output/adapter", "lora", base=HF)
GGUF_LORA = b.Served("gemma-sql-1", 1, LORA_SHA, "ft-checkpoints", "output/adapter.gguf", "lora", base=GGUF)

# Flags of `vllm serve` / the OpenAI server as vLLM documents them (Engine Arguments and the
# OpenAI-compatible server's arguments, docs.vllm.ai; vllm-project/vllm docs/configuration/engine_args.md).
VLLM_DOCUMENTED_FLAGS = {
    "--model",
    "--host",
    "--port",
    "--served-model-name",
    "--tensor-parallel-size",
    "--gpu-memory-utilization",
    "--dtype",
    "--max-model-len",
    "--max-num-seqs",
    "--enable-lora",
    "--lora-modules",
    "--max-lora-rank",
    "--chat-template",
    "--api-key",
    "--enable-prefix-caching",
}
# `--dtype {auto,half,float16,bfloat16,float,float32}` (Engine Arguments).
VLLM_DTYPES = {"auto", "half", "float16", "bfloat16", "float", "float32"}
# Series vLLM documents as exported on /metrics (Production Metrics; docs/design/metrics.md lists the
# v1 names, `vllm:time_per_output_token_seconds` is the pre-0.10 name of the inter-token latency, and
# http_requests_total / http_request_duration_seconds come from prometheus-fastapi-instrumentator).
VLLM_DOCUMENTED_SERIES = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:prompt_tokens_total": "counter",
    "vllm:generation_tokens_total": "counter",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:time_per_output_token_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "http_requests_total": "counter",
    "http_request_duration_seconds": "histogram",
}


def spec(**over: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"modelRef": {"model": "gemma", "version": 1}, **over})


def pod_spec(dep: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = dep["spec"]["template"]["spec"]
    return found


def container(dep: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = pod_spec(dep)["containers"][0]
    return found


def llm_config(dep: dict[str, Any]) -> LLMServeConfig:
    env = container(dep)["env"]
    return LLMServeConfig.model_validate_json(
        next(e["value"] for e in env if e["name"] == ENV_LLM_SERVE_CONFIG)
    )


def flags(args: list[str]) -> dict[str, list[str]]:
    """Each flag and the values after it."""
    out: dict[str, list[str]] = {}
    current = ""
    for a in args:
        if a.startswith("--"):
            current = a
            out.setdefault(a, [])
        else:
            out[current].append(a)
    return out


# -- engines by format --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("served", "over", "engine"),
    [
        (GGUF, {}, "llamacpp"),
        (HF, {}, "transformers"),
        (HF, {"resources": {"gpus": 2}}, "vllm"),
        (LORA, {"resources": {"gpus": 1}}, "vllm"),
        (LORA, {}, "transformers"),
        (HF, {"llm": {"engine": "transformers"}}, "transformers"),
        (GGUF, {"llm": {"engine": "llamacpp"}}, "llamacpp"),
        (GGUF, {"resources": {"gpus": 1}}, None),
        (GGUF, {"llm": {"engine": "transformers"}}, None),
        (HF, {"llm": {"engine": "llamacpp"}}, None),
        (GGUF_LORA, {}, "llamacpp"),
        (GGUF_LORA, {"resources": {"gpus": 1}}, None),
    ],
)
def test_the_engine_follows_the_format_and_the_gpus(
    served: b.Served, over: dict[str, Any], engine: str | None
) -> None:
    s = spec(**over)
    assert llm.engine(s, served) == engine
    assert b.runtime(s, served) == engine
    if engine is None:
        assert "spec." in llm.why_no_engine(s, served)


def test_a_gguf_version_on_cpus_runs_serve_llm_with_the_contracts_config() -> None:
    s = spec(llm={"contextLength": 2048, "maxTokens": 512, "parallel": 4, "servedModelNames": ["gemma-3"]})
    dep = b.deployment("gemma", "ns", "u", s, GGUF, b.STABLE)
    ctr = container(dep)
    assert ctr["command"] == ["modelops-worker", "serve-llm"]
    config = llm_config(dep)
    assert config.format == "gguf" and config.resolved_engine == "llamacpp"
    assert config.artifact_path == f"{b.MODEL_MOUNT}/gemma/gemma-3-270m-q4_k_m.gguf"
    assert config.digest == GGUF_SHA and config.adapter_path is None
    assert (config.context_length, config.max_tokens_limit, config.parallel) == (2048, 512, 4)
    assert config.model_name == "gemma" and config.served_names == ["gemma", "gemma-3"]
    assert {p["name"]: p["containerPort"] for p in ctr["ports"]} == {"http": 8080}
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations[b.ANNOTATION_RUNTIME] == "llamacpp" and annotations["prometheus.io/port"] == "8080"
    assert validate_builtin(dep) == [] and check_restricted(dep) == []


def test_auth_reaches_the_cpu_engine_as_its_tokens_file() -> None:
    s = spec(auth={"secretName": "llm-tokens"})
    dep = b.deployment("gemma", "ns", "u", s, GGUF, b.STABLE)
    assert llm_config(dep).auth_tokens_file == f"{b.AUTH_MOUNT}/{b.AUTH_FILE}"
    assert any(v.get("secret", {}).get("secretName") == "llm-tokens" for v in pod_spec(dep)["volumes"])


def test_a_lora_version_on_cpus_loads_its_base_and_the_adapter_each_by_digest() -> None:
    dep = b.deployment("sql", "ns", "u", spec(), LORA, b.STABLE)
    config = llm_config(dep)
    assert config.format == "huggingface" and config.resolved_engine == "transformers"
    assert config.artifact_path == f"{llm.BASE_MOUNT}/tiny-lm" and config.digest == HF_SHA
    assert config.adapter_path == f"{b.MODEL_MOUNT}/output/adapter" and config.adapter_digest == LORA_SHA
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(dep)["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"model": "ft-checkpoints", "base-model": "models"}
    mounts = {m["name"]: m for m in container(dep)["volumeMounts"]}
    assert mounts["base-model"]["readOnly"] and mounts["model"]["readOnly"]
    assert validate_builtin(dep) == [] and check_restricted(dep) == []


# -- vLLM ---------------------------------------------------------------------------------------------


def vllm_spec(**llm_over: Any) -> InferenceServiceSpec:
    return spec(
        resources={"gpus": 4, "cpu": "8", "memory": "64Gi", "gpuType": "NVIDIA-A100-SXM4-80GB"},
        auth={"secretName": "llm-key", "key": "token"},
        llm={
            "contextLength": 8192,
            "parallel": 64,
            "vllm": {"dtype": "bfloat16", "gpuMemoryUtilization": 0.85},
            **llm_over,
        },
    )


def test_vllm_runs_its_official_image_with_the_documented_flags() -> None:
    dep = b.deployment("qwen", "ns", "u", vllm_spec(servedModelNames=["qwen-chat"]), HF, b.STABLE)
    ctr = container(dep)
    assert ctr["image"].startswith("vllm/vllm-openai:v") and ctr["image"] != "vllm/vllm-openai:latest"
    assert ctr["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    got = flags(ctr["args"])
    assert set(got) <= VLLM_DOCUMENTED_FLAGS, set(got) - VLLM_DOCUMENTED_FLAGS
    assert got["--model"] == [f"{b.MODEL_MOUNT}/tiny-lm"]
    assert got["--served-model-name"] == ["qwen", "qwen-chat"]
    assert got["--port"] == ["8080"] and got["--host"] == ["0.0.0.0"]
    assert got["--tensor-parallel-size"] == ["4"]  # = the pod's GPUs
    assert got["--gpu-memory-utilization"] == ["0.85"]
    assert got["--dtype"] == ["bfloat16"] and got["--dtype"][0] in VLLM_DTYPES
    assert got["--max-model-len"] == ["8192"] and got["--max-num-seqs"] == ["64"]
    assert "--api-key" not in got  # the key comes from the Secret through the environment, never in args
    env = {e["name"]: e for e in ctr["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "llm-key", "key": "token"}}
    assert env["HF_HUB_OFFLINE"]["value"] == "1"
    assert (
        ctr["resources"]["limits"]["nvidia.com/gpu"] == "4" == ctr["resources"]["requests"]["nvidia.com/gpu"]
    )
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert ctr[probe]["httpGet"] == {"path": "/health", "port": "http"}
    pod = pod_spec(dep)
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in ctr["volumeMounts"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert validate_builtin(dep) == [] and check_restricted(dep) == []
    assert dep["spec"]["template"]["metadata"]["annotations"][b.ANNOTATION_RUNTIME] == "vllm"


def test_vllm_serves_a_lora_version_as_a_module_on_its_base() -> None:
    s = vllm_spec(vllm={"maxLoraRank": 64, "extraArgs": ["--enable-prefix-caching"]})
    dep = b.deployment("sql", "ns", "u", s, LORA, b.STABLE)
    got = flags(container(dep)["args"])
    assert set(got) <= VLLM_DOCUMENTED_FLAGS
    assert got["--model"] == [f"{llm.BASE_MOUNT}/tiny-lm"]
    assert "--enable-lora" in got and got["--lora-modules"] == [f"sql={b.MODEL_MOUNT}/output/adapter"]
    assert got["--served-model-name"] == ["sql-base"] and got["--max-lora-rank"] == ["64"]
    assert "--enable-prefix-caching" in got
    assert validate_builtin(dep) == [] and check_restricted(dep) == []


def test_a_model_served_by_a_runtime_of_another_format_is_stalled_naming_the_field() -> None:
    mvs = [
        {
            "metadata": {"name": "gemma-1"},
            "spec": {"model": "gemma", "version": 1, "format": "gguf"},
            "status": {
                "phase": "Ready",
                "version": 1,
                "artifact": {"uri": "pvc://models/gemma.gguf", "sha256": GGUF_SHA, "format": "gguf"},
            },
        }
    ]
    found = isvc_resolve.resolve(ModelRef(model="gemma", version=1), mvs, spec=spec(resources={"gpus": 1}))
    assert isinstance(found, isvc_resolve.Problem) and found.reason == "NoRuntimeForFormat"
    assert "spec.resources.gpus" in found.message
    ok = isvc_resolve.resolve(ModelRef(model="gemma", version=1), mvs, spec=spec())
    assert isinstance(ok, b.Served) and ok.format == "gguf"
    waiting = isvc_resolve.resolve(
        ModelRef(model="gemma", version=1), mvs, spec=spec(autoscaling={"metric": "waiting"})
    )
    assert isinstance(waiting, b.Served)


def test_waiting_autoscaling_on_a_classifier_is_refused_naming_the_field() -> None:
    mvs = [
        {
            "metadata": {"name": "digits-1"},
            "spec": {"model": "gemma", "version": 1},
            "status": {
                "phase": "Ready",
                "version": 1,
                "artifact": {"uri": "pvc://m/model.pt", "sha256": HF_SHA},
            },
        }
    ]
    found = isvc_resolve.resolve(
        ModelRef(model="gemma", version=1), mvs, spec=spec(autoscaling={"metric": "waiting"})
    )
    assert isinstance(found, isvc_resolve.Problem) and "spec.autoscaling.metric" in found.message
    with_llm = isvc_resolve.resolve(ModelRef(model="gemma", version=1), mvs, spec=spec(llm={"parallel": 2}))
    assert isinstance(with_llm, isvc_resolve.Problem) and with_llm.reason in isvc_resolve.STALLING_PROBLEMS
    assert "drop spec.llm" in with_llm.message


# -- lora versions resolve with their base --------------------------------------------------------------


def version(
    name: str, fmt: str, sha: str, uri: str, *, phase: str = "Ready", base: str | None = None, v: int = 1
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {"model": name.rsplit("-", 1)[0], "version": v, "format": fmt},
        "status": {"phase": phase, "version": v, "artifact": {"uri": uri, "sha256": sha, "format": fmt}},
    }
    if base:
        out["spec"]["baseModelVersion"] = {"name": base}
    return out


def test_a_lora_version_resolves_with_its_base_and_waits_while_the_base_is_not_ready() -> None:
    base = version("tiny-lm-1", "huggingface", HF_SHA, "pvc://models/tiny-lm")
    adapter = version("sql-1", "lora", LORA_SHA, "pvc://ft-checkpoints/output/adapter", base="tiny-lm-1")
    found = isvc_resolve.resolve(ModelRef(model="sql", version=1), [base, adapter], spec=spec())
    assert isinstance(found, b.Served) and found.base is not None
    assert (found.base.model_version, found.base.claim, found.base.sha256) == ("tiny-lm-1", "models", HF_SHA)
    base["status"]["phase"] = "Verifying"
    waiting = isvc_resolve.resolve(ModelRef(model="sql", version=1), [base, adapter], spec=spec())
    assert isinstance(waiting, isvc_resolve.Problem) and waiting.reason == "BaseModelVersionNotReady"
    assert "tiny-lm-1" in waiting.message


def test_an_llm_is_served_over_http_only_with_the_openai_url_and_route() -> None:
    s = spec(trafficRouting={"mode": "gatewayAPI", "parentRefs": [{"name": "gw"}]})
    mvs = [version("gemma-1", "gguf", GGUF_SHA, "pvc://models/gemma.gguf")]
    tg = isvc_resolve.targets(s, {}, mvs)
    meta = {"name": "gemma", "namespace": "ns", "uid": "u", "generation": 1}
    body = {"metadata": meta, "spec": s.model_dump(by_alias=True, exclude_none=True), "status": {}}
    plan = c.plan(body, s, tg, [], [], gateway_api=True, verdict=None, now=T0)
    svc = next(m for m in plan.manifests if m["kind"] == "Service" and m["metadata"]["name"] == "gemma")
    assert [p["name"] for p in svc["spec"]["ports"]] == ["http"]
    route = next(m for m in plan.manifests if m["kind"] == "HTTPRoute")
    prefixes = {m["path"]["value"] for m in route["spec"]["rules"][0]["matches"]}
    assert prefixes == {"/v1", "/v2"}
    assert plan.status_patch["url"] == "http://gemma.ns.svc.cluster.local/v1"
    assert plan.status_patch["stable"]["runtime"] == "llamacpp"


# -- signals --------------------------------------------------------------------------------------------


def test_hpa_scales_on_waiting_requests_per_pod() -> None:
    s = spec(minReplicas=1, maxReplicas=3, autoscaling={"metric": "waiting", "target": 2})
    hpa = b.hpa("gemma", "ns", "u", s)
    metric = hpa["spec"]["metrics"][0]
    assert metric == {
        "type": "Pods",
        "pods": {
            "metric": {"name": METRIC_LLM_WAITING},
            "target": {"type": "AverageValue", "averageValue": "2"},
        },
    }
    assert validate_builtin(hpa) == []


def test_every_contract_signal_maps_onto_a_series_vllm_documents() -> None:
    contract = {
        METRIC_LLM_TTFT,
        METRIC_LLM_ITL,
        METRIC_LLM_E2E,
        METRIC_LLM_RUNNING,
        METRIC_LLM_WAITING,
        METRIC_LLM_PROMPT_TOKENS,
        METRIC_LLM_GENERATION_TOKENS,
        METRIC_REQUESTS,
        METRIC_LATENCY,
    }
    assert set(vllm.METRIC_MAP) == contract
    for ours, theirs in vllm.METRIC_MAP.items():
        for name in theirs:
            assert name in VLLM_DOCUMENTED_SERIES, name
            kind = VLLM_DOCUMENTED_SERIES[name]
            assert (kind == "histogram") == (ours in vllm.HISTOGRAMS), (ours, name)
            assert ours.endswith("_total") == (kind == "counter"), (ours, name)


def test_recording_rules_give_vllm_pods_the_contracts_names_and_labels() -> None:
    rules = vllm.recording_rules("qwen", "ns", "qwen-(stable|canary)-.*")
    by_name = {r["record"]: r["expr"] for r in rules}
    assert f"{METRIC_LLM_TTFT}_bucket" in by_name and f"{METRIC_LLM_WAITING}" in by_name
    assert "vllm:time_to_first_token_seconds_bucket{" in by_name[f"{METRIC_LLM_TTFT}_bucket"]
    itl = by_name[f"{METRIC_LLM_ITL}_bucket"]
    assert (
        "vllm:inter_token_latency_seconds_bucket" in itl
        and "vllm:time_per_output_token_seconds_bucket" in itl
    )
    requests = by_name[METRIC_REQUESTS]
    assert 'handler=~"/v1/.*"' in requests and '"code", "$1", "status"' in requests
    assert all('"model", "qwen"' in e for e in by_name.values())
    assert all('namespace="ns"' in e for e in by_name.values())


VLLM_METRICS_TEXT = """\
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="qwen"} 3.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="qwen"} 10.0
vllm:time_to_first_token_seconds_bucket{le="0.5",model_name="qwen"} 18.0
vllm:time_to_first_token_seconds_bucket{le="2.5",model_name="qwen"} 20.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="qwen"} 20.0
vllm:time_to_first_token_seconds_count{model_name="qwen"} 20.0
vllm:time_to_first_token_seconds_sum{model_name="qwen"} 4.0
# HELP http_requests_total Total number of requests by method, status and handler.
# TYPE http_requests_total counter
http_requests_total{handler="/v1/chat/completions",method="POST",status="2xx"} 19.0
http_requests_total{handler="/v1/chat/completions",method="POST",status="5xx"} 1.0
http_requests_total{handler="/health",method="GET",status="2xx"} 500.0
# HELP http_request_duration_seconds Latency with only few buckets by handler.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{handler="/v1/chat/completions",le="1.0",method="POST"} 15.0
http_request_duration_seconds_bucket{handler="/v1/chat/completions",le="+Inf",method="POST"} 20.0
http_request_duration_seconds_bucket{handler="/health",le="1.0",method="GET"} 500.0
http_request_duration_seconds_bucket{handler="/health",le="+Inf",method="GET"} 500.0
"""


def test_the_canary_analysis_reads_a_vllm_pod_through_the_mapping_and_gates_on_ttft() -> None:
    s = vllm_spec()
    names = isvc_analysis.metric_names(s, HF)
    assert (names.requests, names.code_label, names.ttft) == (
        "http_requests_total",
        "status",
        "vllm:time_to_first_token_seconds",
    )
    counters = isvc_analysis.parse_counters(VLLM_METRICS_TEXT, names)
    assert counters is not None
    assert counters.requests == 20 and counters.errors == 1  # the /health probes are not requests
    assert counters.ttft[2.5] == 20.0
    pods = [isvc_pods.PodView("qwen-canary-x", b.CANARY, "tiny-lm-1", True, False, "127.0.0.9", None)]
    lenient = isvc_analysis.Analysis(minSuccessRate=0.9, minRequests=5, maxTtftP99Ms=5000)
    passed = isvc_analysis.judge(lenient, pods, counters)
    assert passed.result == "Passed" and passed.ttft_p99_ms is not None and 500 < passed.ttft_p99_ms <= 2500
    strict = isvc_analysis.Analysis(minSuccessRate=0.9, minRequests=5, maxTtftP99Ms=400)
    failed = isvc_analysis.judge(strict, pods, counters)
    assert failed.result == "Failed" and "maxTtftP99Ms 400" in failed.message


def test_a_ttft_gate_without_any_first_token_observed_does_not_pass() -> None:
    pods = [isvc_pods.PodView("g-canary-x", b.CANARY, "gemma-2", True, False, "127.0.0.9", None)]
    counters = isvc_analysis.Counters({"200": 20.0}, {1.0: 20.0, float("inf"): 20.0})
    verdict = isvc_analysis.judge(isvc_analysis.Analysis(minRequests=5, maxTtftP99Ms=500), pods, counters)
    assert verdict.result == "Inconclusive" and verdict.reason == isvc_analysis.REASON_NO_DATA


def test_prometheus_queries_read_ttft_for_llms_and_only_api_calls_for_vllm() -> None:
    names = isvc_analysis.metric_names(vllm_spec(), HF)
    queries = isvc_analysis.prometheus_queries("ns", "qwen", 30, names)
    assert len(queries) == 3
    assert 'handler=~"/v1/.*"' in queries[0] and "vllm:time_to_first_token_seconds_bucket" in queries[2]
    cpu = isvc_analysis.prometheus_queries("ns", "gemma", 30, isvc_analysis.metric_names(spec(), GGUF))
    assert METRIC_LLM_TTFT + "_bucket" in cpu[2] and "handler" not in cpu[0]


def test_the_analysis_record_keeps_the_ttft_of_each_interval() -> None:
    history: list[dict[str, Any]] = [{"modelVersion": "gemma-2", "outcome": "InProgress"}]
    rollouts.inferenceservice_analyses.record(
        history, {"lastCheckTime": "t", "result": "Failed", "ttftP99Ms": 812.5, "step": 0}, []
    )
    assert history[0]["analyses"][0]["ttftP99Ms"] == 812.5


def test_a_gguf_lora_file_is_applied_by_llama_cpp_on_its_gguf_base() -> None:
    dep = b.deployment("sql", "ns", "u", spec(), GGUF_LORA, b.STABLE)
    config = llm_config(dep)
    assert config.format == "gguf" and config.resolved_engine == "llamacpp"
    assert (
        config.artifact_path == f"{llm.BASE_MOUNT}/gemma/gemma-3-270m-q4_k_m.gguf"
        and config.digest == GGUF_SHA
    )
    assert config.adapter_path == f"{b.MODEL_MOUNT}/output/adapter.gguf" and config.adapter_digest == LORA_SHA
    assert validate_builtin(dep) == [] and check_restricted(dep) == []
