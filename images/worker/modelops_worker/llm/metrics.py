"""The LLM serving metrics: the contract's `modelops_llm_*` names, whatever the engine.

Names and buckets come from `modelops.api.llmconfig`; every series carries `model` and `version` so
a stable and a canary pod scraped together stay apart. The request counter and latency histogram by
`code` are the OIP v2 server's (`protocol="openai"`), so the canary analysis and the error-rate alerts
read an LLM pod unchanged. A private registry keeps the page to these series and the process's own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

from modelops.api.llmconfig import (
    E2E_BUCKETS,
    ITL_BUCKETS,
    METRIC_LLM_BATCH_SIZE,
    METRIC_LLM_E2E,
    METRIC_LLM_GENERATION_TOKENS,
    METRIC_LLM_ITL,
    METRIC_LLM_LATENCY,
    METRIC_LLM_MODEL_INFO,
    METRIC_LLM_PROMPT_TOKENS,
    METRIC_LLM_REQUESTS,
    METRIC_LLM_RUNNING,
    METRIC_LLM_TTFT,
    METRIC_LLM_WAITING,
    TTFT_BUCKETS,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROTOCOL = "openai"


class LLMMetrics:
    def __init__(self, model: str, version: str) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        self.labels = {"model": model, "version": version}
        lv = ["model", "version"]
        self.requests = Counter(
            METRIC_LLM_REQUESTS.removesuffix("_total"),
            "Requests answered, by protocol and HTTP status code (499: the client went away).",
            ["model", "version", "protocol", "code"],
            registry=r,
        )
        self.latency = Histogram(
            METRIC_LLM_LATENCY,
            "Seconds from receiving a request to its last byte, by protocol and HTTP status code.",
            ["model", "version", "protocol", "code"],
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            METRIC_LLM_TTFT,
            "Seconds from receiving a generation request to its first token.",
            lv,
            buckets=TTFT_BUCKETS,
            registry=r,
        ).labels(**self.labels)
        self.itl = Histogram(
            METRIC_LLM_ITL,
            "Seconds between consecutive tokens of one sequence.",
            lv,
            buckets=ITL_BUCKETS,
            registry=r,
        ).labels(**self.labels)
        self.e2e = Histogram(
            METRIC_LLM_E2E,
            "Seconds from receiving a generation request to its last token.",
            lv,
            buckets=E2E_BUCKETS,
            registry=r,
        ).labels(**self.labels)
        self.running = Gauge(METRIC_LLM_RUNNING, "Sequences being decoded.", lv, registry=r).labels(
            **self.labels
        )
        self.waiting = Gauge(
            METRIC_LLM_WAITING, "Sequences waiting for a free slot of the engine.", lv, registry=r
        ).labels(**self.labels)
        self.prompt_tokens = Counter(
            METRIC_LLM_PROMPT_TOKENS.removesuffix("_total"), "Prompt tokens processed.", lv, registry=r
        ).labels(**self.labels)
        self.generation_tokens = Counter(
            METRIC_LLM_GENERATION_TOKENS.removesuffix("_total"), "Tokens generated.", lv, registry=r
        ).labels(**self.labels)
        self.batch_size = Histogram(
            METRIC_LLM_BATCH_SIZE,
            "Sequences decoded together in one engine step.",
            lv,
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256),
            registry=r,
        ).labels(**self.labels)
        self.info = Gauge(
            METRIC_LLM_MODEL_INFO,
            "Always 1; the labels say what this process serves.",
            ["model", "version", "digest", "format", "engine", "context_length"],
            registry=r,
        )
        for code in ("200", "400", "503"):
            self.requests.labels(code=code, protocol=PROTOCOL, **self.labels)

    def observe(self, code: int, seconds: float) -> None:
        c = str(code)
        self.requests.labels(code=c, protocol=PROTOCOL, **self.labels).inc()
        self.latency.labels(code=c, protocol=PROTOCOL, **self.labels).observe(seconds)

    def describe(self, digest: str, fmt: str, engine: str, context_length: int) -> None:
        self.info.labels(
            digest=digest, format=fmt, engine=engine, context_length=str(context_length), **self.labels
        ).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
