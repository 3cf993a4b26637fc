"""Each canary analysis interval stays on its rollout record, so a rolled-back canary shows why.

The record lives in `status.rolloutHistory[].analyses` (the console draws it); the latest analysis
alone (`status.canary.analysis`) disappears with the canary.
"""

from __future__ import annotations

import datetime
from typing import Any

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.builders import inferenceservice as b
from modelops.controllers import inferenceservice as c
from modelops.controllers import inferenceservice_analysis as isvc_analysis
from modelops.controllers import inferenceservice_pods as isvc_pods
from modelops.controllers import inferenceservice_resolve as isvc_resolve

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
CANARY = {
    "modelRef": {"model": "digits", "version": 2},
    "steps": [10, 50],
    "analysis": {"intervalSeconds": 10},
}
PASS = isvc_analysis.Verdict("Passed", "20 requests, success rate 1.0000", 20, 1.0, 5.0)
FAIL = isvc_analysis.Verdict("Failed", "success rate 0.5000 below minSuccessRate 0.99", 20, 0.5, 5.0)


def mv(version: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"digits-{version}"},
        "spec": {"model": "digits", "version": version},
        "status": {
            "phase": "Ready",
            "version": version,
            "artifact": {"uri": f"pvc://c/v{version}.pt", "sha256": f"{version:x}" * 64},
        },
    }


def pod(name: str, track: str = "stable", version: str = "digits-1") -> isvc_pods.PodView:
    return isvc_pods.view(
        {
            "metadata": {"name": name, "labels": {b.LABEL_TRACK: track, b.LABEL_MODELVERSION: version}},
            "status": {
                "phase": "Running",
                "podIP": "127.244.0.9",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "server", "ready": True, "restartCount": 0, "state": {}}],
            },
        }
    )


def run(
    s: InferenceServiceSpec,
    mvs: list[dict[str, Any]],
    pods: list[isvc_pods.PodView],
    st: dict[str, Any],
    *,
    verdict: c.Verdict | None = None,
    now: datetime.datetime = T0,
) -> dict[str, Any]:
    """One sync; the status after applying its patch."""
    body = {
        "metadata": {"name": "digits", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": s.model_dump(by_alias=True, exclude_none=True),
        "status": st,
    }
    p = c.plan(
        body, s, isvc_resolve.targets(s, st, mvs), [], pods, gateway_api=False, verdict=verdict, now=now
    )
    return {k: v for k, v in {**st, **p.status_patch}.items() if v is not None}


def test_a_rolled_back_canary_keeps_every_interval_with_its_numbers_and_verdict() -> None:
    mvs = [mv(1), mv(2)]
    plain = InferenceServiceSpec.model_validate({"modelRef": {"model": "digits", "version": 1}})
    s = InferenceServiceSpec.model_validate({"modelRef": {"model": "digits", "version": 1}, "canary": CANARY})
    st = run(plain, mvs, [pod("a")], {})
    st = run(s, mvs, [pod("a")], st)
    pods = [pod("a"), pod("c", "canary", "digits-2")]
    for seconds, verdict in ((10, PASS), (20, FAIL), (30, FAIL)):
        st = run(s, mvs, pods, st, verdict=verdict, now=T0 + datetime.timedelta(seconds=seconds))
    record = st["rolloutHistory"][-1]
    assert record["outcome"] == "RolledBack" and "canary" not in st
    analyses = record["analyses"]
    assert [a["result"] for a in analyses] == ["Passed", "Failed", "Failed"]
    assert analyses[1]["successRate"] == FAIL.success_rate and analyses[1]["requests"] == FAIL.requests
    assert analyses[1]["lastCheckTime"] == "2026-01-01T00:00:20Z"
    # The first interval ran at the first step; after it passed the canary moved to the next.
    assert [a["trafficPercent"] for a in analyses] == [10, 50, 50]
