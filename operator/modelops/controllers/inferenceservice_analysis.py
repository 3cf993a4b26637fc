"""Canary analysis: the deltas of the serving counters between two looks at the canary's pods.

Each look reads the pods' request counter (by HTTP code) and latency histogram, from their /metrics
or from Prometheus; `judge` turns one interval's counters into a verdict against `spec.canary.analysis`
(Passed, Failed or Inconclusive). Only 5xx count as failures: a client's mistake is not the canary's.
An LLM's pods also give their time-to-first-token histogram, gated by `maxTtftP99Ms`; which series an
LLM engine exports is `inferenceservice_llm.metric_names`' to say (vLLM's through its one mapping).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelops.api.inferenceservice import Analysis, InferenceServiceSpec
from modelops.api.serveconfig import METRIC_LATENCY, METRIC_REQUESTS
from modelops.builders import inferenceservice as builders
from modelops.builders.inferenceservice import CANARY, Served
from modelops.controllers import inferenceservice_llm as isvc_llm
from modelops.controllers.inferenceservice_pods import PodView
from modelops.controllers.inferenceservice_resolve import Targets


@dataclasses.dataclass(frozen=True)
class Counters:
    """A pod's inference counters: requests by HTTP code, latency histogram (cumulative, by `le`)."""

    by_code: Mapping[str, float] = dataclasses.field(default_factory=dict)
    buckets: Mapping[float, float] = dataclasses.field(default_factory=dict)
    ttft: Mapping[float, float] = dataclasses.field(default_factory=dict)  # LLMs: time to first token

    @property
    def requests(self) -> float:
        return sum(self.by_code.values())

    @property
    def errors(self) -> float:
        return sum(v for code, v in self.by_code.items() if code.startswith("5"))


REASON_NO_DATA = "AnalysisNoData"


@dataclasses.dataclass(frozen=True)
class MetricNames:
    """The series analysis reads: ours by default, a custom predictor's from spec.predictor.metrics."""

    requests: str = METRIC_REQUESTS
    latency: str = METRIC_LATENCY
    code_label: str = "code"
    ttft: str | None = None  # an LLM's time-to-first-token histogram (without _bucket)
    handler_prefix: str | None = None  # count only requests whose `handler` label starts so (vLLM)


OUR_METRICS = MetricNames()


def metric_names(spec: InferenceServiceSpec, served: Served | None = None) -> MetricNames:
    """The series of the version under analysis: ours, an LLM engine's, or a custom predictor's."""
    llm_names = isvc_llm.metric_names(spec, served)
    if llm_names is not None:
        return MetricNames(
            llm_names.requests,
            llm_names.latency,
            llm_names.code_label,
            llm_names.ttft,
            llm_names.handler_prefix,
        )
    if spec.predictor is None:
        return MetricNames()
    m = spec.predictor.metrics
    return MetricNames(m.requests_total, m.latency_histogram, m.code_label)


def _family_of(counter: str) -> str:
    # The text parser names a counter's family without its _total suffix.
    return counter[: -len("_total")] if counter.endswith("_total") else counter


def parse_counters(text: str, names: MetricNames = OUR_METRICS) -> Counters | None:
    """The request counter and the latency histogram of one pod's /metrics (summed over labels);
    None when the pod exposes no request counter of that name at all (nothing to analyse)."""
    by_code: dict[str, float] = {}
    buckets: dict[float, float] = {}
    ttft: dict[float, float] = {}
    found = False
    prefix = names.handler_prefix
    for family in text_string_to_metric_families(text):
        if family.name in (names.requests, _family_of(names.requests)):
            found = True
        for sample in family.samples:
            if (
                prefix is not None
                and "handler" in sample.labels
                and not sample.labels["handler"].startswith(prefix)
            ):
                continue  # a probe or a scrape, not an API call
            if sample.name == names.requests:
                code = str(sample.labels.get(names.code_label, ""))
                by_code[code] = by_code.get(code, 0.0) + float(sample.value)
            elif sample.name == f"{names.latency}_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + float(sample.value)
            elif names.ttft is not None and sample.name == f"{names.ttft}_bucket":
                le = float(sample.labels["le"])
                ttft[le] = ttft.get(le, 0.0) + float(sample.value)
    return Counters(by_code, buckets, ttft) if found else None


def delta(previous: Counters | None, current: Counters) -> Counters:
    """What happened between two looks; a counter that went down (a restarted pod) counts from zero."""
    if (
        previous is None
        or current.requests < previous.requests
        or any(current.buckets.get(le, 0.0) < v for le, v in previous.buckets.items())
        or any(current.ttft.get(le, 0.0) < v for le, v in previous.ttft.items())
    ):
        return current
    codes = set(current.by_code) | set(previous.by_code)
    return Counters(
        {c: current.by_code.get(c, 0.0) - previous.by_code.get(c, 0.0) for c in codes},
        {le: v - previous.buckets.get(le, 0.0) for le, v in current.buckets.items()},
        {le: v - previous.ttft.get(le, 0.0) for le, v in current.ttft.items()},
    )


def add(a: Counters, b: Counters) -> Counters:
    codes = set(a.by_code) | set(b.by_code)
    les = set(a.buckets) | set(b.buckets)
    ttft = set(a.ttft) | set(b.ttft)
    return Counters(
        {c: a.by_code.get(c, 0.0) + b.by_code.get(c, 0.0) for c in codes},
        {le: a.buckets.get(le, 0.0) + b.buckets.get(le, 0.0) for le in les},
        {le: a.ttft.get(le, 0.0) + b.ttft.get(le, 0.0) for le in ttft},
    )


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets: linear within the bucket it falls in.

    A rank in the +Inf bucket answers the highest finite bound (Prometheus does the same); no
    observations answer None.
    """
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One analysis of the canary."""

    result: str  # Passed, Failed or Inconclusive
    message: str
    requests: int | None = None
    success_rate: float | None = None
    p99_ms: float | None = None
    reason: str | None = None  # AnalysisNoData when nothing could be measured
    ttft_p99_ms: float | None = None  # LLMs: p99 time to first token


def of_candidate(pods: Sequence[PodView], model_version: str) -> list[PodView]:
    """The pods an analysis of the canary `model_version` may look at: a rolled-back canary's pods
    that linger (their counters full of its 5xx) must never be judged as the next canary's."""
    return [p for p in pods if p.track != CANARY or p.model_version == model_version]


def analyse(
    analysis: Analysis,
    pods: Sequence[PodView],
    scraped: Mapping[str, str | None],
    baseline: Mapping[str, Counters] | None,
    names: MetricNames = OUR_METRICS,
) -> tuple[Verdict, dict[str, Counters]]:
    """The verdict on the canary's pods since the last look, and the counters to compare with next time.

    A pod seen for the first time counts from zero: its counters started with it, inside this canary.
    When no ready canary pod's metrics could be read, or none has the request counter, the verdict says
    so (AnalysisNoData): the canary neither advances nor fails on nothing.
    """
    canary = [p for p in pods if p.track == CANARY and not p.terminating]
    new_baseline: dict[str, Counters] = {}
    total = Counters()
    for pod in canary:
        text = scraped.get(pod.name)
        if text is None:
            continue
        try:
            current = parse_counters(text, names)
        except ValueError:
            continue
        if current is None:
            continue
        new_baseline[pod.name] = current
        total = add(total, delta((baseline or {}).get(pod.name), current))
    verdict = judge(analysis, canary, total)
    measured = verdict.result == "Passed" or (
        verdict.result == "Inconclusive" and verdict.requests is not None
    )
    if measured and not new_baseline:
        return no_data(scraped, names), new_baseline
    return verdict, new_baseline


def no_data(scraped: Mapping[str, str | None], names: MetricNames) -> Verdict:
    unread = sorted(p for p, text in scraped.items() if text is None)
    why = (
        f"the metrics of canary pod(s) {', '.join(unread)} could not be read"
        if unread
        else f"no canary pod exposes the counter {names.requests!r}"
    )
    return Verdict(
        "Inconclusive",
        f"no data: {why} (spec.predictor.metrics names the series and their port and path); the canary "
        "does not advance without data",
        reason=REASON_NO_DATA,
    )


def judge(analysis: Analysis, pods: Sequence[PodView], total: Counters) -> Verdict:
    """The verdict on one interval's counters of the canary (however they were measured)."""
    canary = [p for p in pods if p.track == CANARY and not p.terminating]
    crashed = next((p for p in canary if p.crash), None)
    if crashed is not None and crashed.crash is not None:
        reason, message = crashed.crash
        return Verdict("Failed", f"canary pod {crashed.name} cannot run: {reason}: {message}")
    if not any(p.ready for p in canary):
        return Verdict("Inconclusive", "no canary pod is ready yet")
    requests = round(total.requests)
    if requests < analysis.min_requests or requests == 0:
        return Verdict(
            "Inconclusive",
            f"{requests} canary request(s) since the last analysis, fewer than minRequests "
            f"{analysis.min_requests}",
            requests=requests,
        )
    success = round(1.0 - total.errors / total.requests, 4)
    p99 = quantile(0.99, total.buckets)
    p99_ms = round(p99 * 1000, 3) if p99 is not None else None
    ttft = quantile(0.99, total.ttft)
    ttft_ms = round(ttft * 1000, 3) if ttft is not None else None
    if analysis.max_ttft_p99_ms is not None and ttft_ms is None:
        return Verdict(
            "Inconclusive",
            f"no data: {requests} canary request(s) but no time to first token observed (maxTtftP99Ms "
            "gates LLM versions on modelops_llm_time_to_first_token_seconds); the canary does not advance "
            "without data",
            requests=requests,
            success_rate=success,
            p99_ms=p99_ms,
            reason=REASON_NO_DATA,
        )
    failures = []
    if success < analysis.min_success_rate:
        failures.append(f"success rate {success:.4f} below minSuccessRate {analysis.min_success_rate}")
    if (
        analysis.max_p99_latency_ms is not None
        and p99_ms is not None
        and p99_ms > analysis.max_p99_latency_ms
    ):
        failures.append(f"p99 latency {p99_ms:.1f} ms above maxP99LatencyMs {analysis.max_p99_latency_ms}")
    if analysis.max_ttft_p99_ms is not None and ttft_ms is not None and ttft_ms > analysis.max_ttft_p99_ms:
        failures.append(
            f"p99 time to first token {ttft_ms:.1f} ms above maxTtftP99Ms {analysis.max_ttft_p99_ms}"
        )
    measured = (
        f"{requests} requests, success rate {success:.4f}"
        + (f", p99 {p99_ms:.1f} ms" if p99_ms is not None else "")
        + (f", TTFT p99 {ttft_ms:.1f} ms" if ttft_ms is not None else "")
    )
    result = "Failed" if failures else "Passed"
    message = "; ".join(failures) + f" ({measured})" if failures else measured
    return Verdict(result, message, requests, success, p99_ms, ttft_p99_ms=ttft_ms)


def prometheus_queries(
    namespace: str, name: str, seconds: int, names: MetricNames = OUR_METRICS
) -> tuple[str, ...]:
    """PromQL for the canary's last interval: requests by code, latency buckets by `le` (and an LLM's
    time-to-first-token buckets by `le`).

    The series must carry the `namespace` and `pod` labels (a PodMonitor or the usual kubernetes_sd
    relabelling gives them); the canary's pods are `<name>-canary-...`.
    """
    selector = f'namespace="{namespace}",pod=~"{builders.deployment_name(name, CANARY)}-.*"'
    calls = selector + (f',handler=~"{names.handler_prefix}.*"' if names.handler_prefix else "")
    window = f"[{max(seconds, 1)}s]"
    queries: tuple[str, ...] = (
        f"sum by ({names.code_label}) (increase({names.requests}{{{calls}}}{window}))",
        f"sum by (le) (increase({names.latency}_bucket{{{calls}}}{window}))",
    )
    if names.ttft is not None:
        queries += (f"sum by (le) (increase({names.ttft}_bucket{{{selector}}}{window}))",)
    return queries


def counters_from_prometheus(
    requests: Mapping[str, Any],
    buckets: Mapping[str, Any],
    code_label: str = "code",
    ttft: Mapping[str, Any] | None = None,
) -> Counters | None:
    """Counters from two instant-query answers (`/api/v1/query` JSON) of `prometheus_queries`."""

    def vector(answer: Mapping[str, Any]) -> list[tuple[dict[str, str], float]]:
        if answer.get("status") != "success":
            raise ValueError(str(answer.get("error") or "query failed"))
        out = []
        for item in (answer.get("data") or {}).get("result") or []:
            value = float(item["value"][1])
            out.append((dict(item.get("metric") or {}), 0.0 if math.isnan(value) else value))
        return out

    series = vector(requests)
    if not series:
        return None  # Prometheus has no such series for the canary's pods: nothing to analyse
    by_code = {labels.get(code_label, ""): value for labels, value in series}
    les = {float(labels["le"]): value for labels, value in vector(buckets) if "le" in labels}
    first = {} if ttft is None else {float(lb["le"]): v for lb, v in vector(ttft) if "le" in lb}
    return Counters(by_code, les, first)


def _parse_time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def analysis_due(
    spec: InferenceServiceSpec, st: Mapping[str, Any], tg: Targets, now: datetime.datetime
) -> bool:
    """Whether the running canary (the one in status, still the target) is up for its next analysis."""
    if spec.canary is None or tg.candidate is None:
        return False
    canary = st.get("canary") or {}
    if canary.get("modelVersion") != tg.candidate.model_version:
        return False
    last = _parse_time((canary.get("analysis") or {}).get("lastCheckTime"))
    return last is None or (now - last).total_seconds() >= spec.canary.analysis.interval_seconds
