"""Canary analysis from Prometheus (MODELOPS_PROMETHEUS_URL) instead of the pods: queries and verdicts."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from modelops.api.inferenceservice import Analysis
from modelops.builders import inferenceservice as b
from modelops.controllers import inferenceservice_analysis as isvc_analysis
from modelops.controllers import inferenceservice_handlers as h
from modelops.controllers import inferenceservice_pods as isvc_pods

ANALYSIS = Analysis(minSuccessRate=0.9, maxP99LatencyMs=500, minRequests=10)
READY_CANARY = [isvc_pods.PodView("digits-canary-abc", b.CANARY, "digits-2", True, False, "127.0.0.1", None)]


def vector(label: str, values: dict[str, float]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {label: k}, "value": [1700000000, str(v)]} for k, v in values.items()],
        },
    }


def test_the_queries_select_the_canary_pods_over_the_interval() -> None:
    requests, buckets = isvc_analysis.prometheus_queries("team-a", "digits", 30)
    assert requests == (
        'sum by (code) (increase(modelops_serving_requests_total{namespace="team-a",pod=~"digits-canary-.*"}[30s]))'
    )
    assert buckets.startswith("sum by (le) (increase(modelops_serving_request_duration_seconds_bucket{")
    assert buckets.endswith("[30s]))")


def test_counters_from_query_answers() -> None:
    total = isvc_analysis.counters_from_prometheus(
        vector("code", {"200": 90.4, "500": 9.6}), vector("le", {"0.1": 99.5, "1.0": 100.0, "+Inf": 100.0})
    )
    assert total.requests == pytest.approx(100) and total.errors == pytest.approx(9.6)
    assert isvc_analysis.judge(ANALYSIS, READY_CANARY, total).result == "Passed"
    with pytest.raises(ValueError, match="bad query"):
        isvc_analysis.counters_from_prometheus({"status": "error", "error": "bad query"}, vector("le", {}))


class _Prometheus(http.server.BaseHTTPRequestHandler):
    answers: dict[str, dict[str, Any]] = {}
    seen: list[str] = []

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["query"][0]
        self.seen.append(query)
        body = json.dumps(self.answers["code" if "by (code)" in query else "le"]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_failing_canary_seen_through_prometheus(prometheus: str) -> None:
    _Prometheus.answers = {
        "code": vector("code", {"200": 50.0, "500": 50.0}),
        "le": vector("le", {"0.01": 100.0, "+Inf": 100.0}),
    }
    verdict = h.prometheus_verdict(prometheus, ANALYSIS, "ns", "digits", 30, READY_CANARY)
    assert verdict.result == "Failed" and "success rate 0.5000" in verdict.message
    assert any('pod=~"digits-canary-.*"' in q for q in _Prometheus.seen)


def test_an_unreachable_prometheus_is_inconclusive_not_a_failure() -> None:
    verdict = h.prometheus_verdict("http://127.0.0.1:9", ANALYSIS, "ns", "digits", 30, READY_CANARY)
    assert verdict.result == "Inconclusive" and "could not be queried" in verdict.message
