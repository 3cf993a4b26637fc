"""The InferenceService controller's decisions: resolution, analysis maths, the rollout state machine."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from modelops.api.inferenceservice import Analysis, InferenceServiceSpec, ModelRef
from modelops.builders import inferenceservice as b
from modelops.controllers import inferenceservice as c
from modelops.controllers import inferenceservice_analysis as isvc_analysis
from modelops.controllers import inferenceservice_pods as isvc_pods
from modelops.controllers import inferenceservice_resolve as isvc_resolve
from modelops.controllers import inferenceservice_rollout as isvc_rollout

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SHA = {n: f"{n:x}" * 64 for n in range(1, 10)}


def mv(
    version: int, *, aliases: tuple[str, ...] = (), phase: str = "Ready", model: str = "digits"
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{model}-{version}"},
        "spec": {"model": model, "version": version},
        "status": {
            "phase": phase,
            "version": version,
            "aliases": list(aliases),
            "artifact": {"uri": f"pvc://{model}-{version}-ckpt/output/model.pt", "sha256": SHA[version]},
        },
    }


def spec(**over: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"modelRef": {"model": "digits", "version": 1}, **over})


def body(s: InferenceServiceSpec, st: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "digits", "namespace": "ns", "uid": "u-1", "generation": generation},
        "spec": s.model_dump(by_alias=True, exclude_none=True),
        "status": st or {},
    }


def pod(
    name: str,
    track: str = "stable",
    version: str = "digits-1",
    *,
    ready: bool = True,
    terminated: dict[str, Any] | None = None,
    waiting: str | None = None,
    restarts: int = 0,
) -> isvc_pods.PodView:
    cs: dict[str, Any] = {"name": "server", "ready": ready, "restartCount": restarts, "state": {}}
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting}}
    if terminated:
        cs["lastState"] = {"terminated": terminated}
    return isvc_pods.view(
        {
            "metadata": {"name": name, "labels": {b.LABEL_TRACK: track, b.LABEL_MODELVERSION: version}},
            "status": {
                "phase": "Running",
                "podIP": "127.244.0.9",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": [cs],
            },
        }
    )


def run(
    s: InferenceServiceSpec,
    mvs: list[dict[str, Any]],
    pods: list[isvc_pods.PodView],
    st: dict[str, Any] | None = None,
    *,
    verdict: isvc_analysis.Verdict | None = None,
    now: datetime.datetime = T0,
    deployments: list[dict[str, Any]] | None = None,
) -> tuple[c.Plan, dict[str, Any]]:
    """One sync; returns the plan and the status after applying its patch."""
    st = dict(st or {})
    tg = isvc_resolve.targets(s, st, mvs)
    p = c.plan(body(s, st), s, tg, deployments or [], pods, gateway_api=False, verdict=verdict, now=now)
    after = {**st, **p.status_patch}
    return p, {k: v for k, v in after.items() if v is not None}


def cond(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(x for x in st["conditions"] if x["type"] == type_)


# -- resolution -----------------------------------------------------------------------------------


def test_a_version_or_an_alias_resolves_to_the_ready_model_version() -> None:
    mvs = [mv(1), mv(2, aliases=("champion",))]
    served = isvc_resolve.resolve(ModelRef(model="digits", version=1), mvs)
    assert isinstance(served, b.Served)
    assert (served.model_version, served.claim, served.path) == (
        "digits-1",
        "digits-1-ckpt",
        "output/model.pt",
    )
    alias = isvc_resolve.resolve(ModelRef(model="digits", alias="champion"), mvs)
    assert isinstance(alias, b.Served) and alias.model_version == "digits-2"


@pytest.mark.parametrize(
    ("mvs", "ref", "reason"),
    [
        ([], {"version": 1}, "ModelVersionNotFound"),
        ([mv(1, model="other")], {"version": 1}, "ModelVersionNotFound"),
        ([mv(1)], {"alias": "champion"}, "ModelVersionNotFound"),
        ([mv(1, phase="Verifying")], {"version": 1}, "ModelVersionNotReady"),
    ],
)
def test_what_cannot_be_served_says_why_and_creates_nothing(
    mvs: list[dict[str, Any]], ref: dict[str, Any], reason: str
) -> None:
    s = spec(modelRef={"model": "digits", **ref})
    p, st = run(s, mvs, [])
    assert p.manifests == [] and "*" in p.keep
    ready = cond(st, "Ready")
    assert ready["status"] == "False" and ready["reason"] == reason
    assert "spec.modelRef" in ready["message"]


def test_an_artifact_that_is_not_on_a_volume_is_not_servable() -> None:
    bad = mv(1)
    bad["status"]["artifact"]["uri"] = "s3://bucket/model.pt"
    result = isvc_resolve.resolve(ModelRef(model="digits", version=1), [bad])
    assert isinstance(result, isvc_resolve.Problem) and result.reason == "ArtifactNotServable"


# -- status truthfulness ----------------------------------------------------------------------------


def test_ready_only_when_a_pod_serves_the_intended_version() -> None:
    s = spec(minReplicas=1, maxReplicas=3)
    p, st = run(s, [mv(1)], [])
    assert {m["kind"] for m in p.manifests} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    assert cond(st, "Ready")["status"] == "False" and st["phase"] == "Progressing"
    assert [r["outcome"] for r in st["rolloutHistory"]] == ["Deployed"]
    assert any(e.reason == "Deploying" for e in p.events)

    p, st = run(s, [mv(1)], [pod("a", ready=False), pod("b")], st)
    assert cond(st, "Ready")["status"] == "True", st
    assert st["stable"] == {
        "modelVersion": "digits-1",
        "version": 1,
        "sha256": SHA[1],
        "readyReplicas": 1,
        "runtime": "modelops-worker",
    }
    assert (st["replicas"], st["readyReplicas"], st["trafficSummary"]) == (2, 1, "100/0")
    assert st["url"] == "http://digits.ns.svc.cluster.local/v2/models/digits"
    assert st["rolloutHistory"][-1]["endTime"] == c.status.format_time(T0)


def test_crash_looping_pods_are_not_ready_and_say_why() -> None:
    message = json.dumps(
        {"status": "Failure", "reason": "ArtifactDigestMismatch", "message": "sha256 differs", "exitCode": 65}
    )
    crashing = pod(
        "a",
        ready=False,
        waiting="CrashLoopBackOff",
        restarts=3,
        terminated={"exitCode": 65, "message": message},
    )
    _, st = run(spec(), [mv(1)], [crashing])
    ready = cond(st, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ArtifactDigestMismatch"
    assert "sha256 differs" in ready["message"]
    assert cond(st, "Stalled")["status"] == "True"  # no restart cures a wrong artifact

    # One healthy pod and one crashing: serving, but not Ready (Degraded) with the crash's reason.
    oom = pod(
        "b",
        ready=False,
        waiting="CrashLoopBackOff",
        restarts=1,
        terminated={"exitCode": 137, "reason": "OOMKilled"},
    )
    _, st = run(spec(), [mv(1)], [pod("a"), oom])
    assert cond(st, "Ready")["reason"] == "OOMKilled" and st["phase"] == "Degraded"


def test_a_moved_version_rolls_out_and_is_ready_only_once_old_pods_are_gone() -> None:
    s1, s2 = spec(), spec(modelRef={"model": "digits", "version": 2})
    _, st = run(s1, [mv(1), mv(2)], [pod("a")])
    p, st = run(s2, [mv(1), mv(2)], [pod("a"), pod("b", version="digits-2", ready=False)], st)
    assert st["stable"]["modelVersion"] == "digits-2"
    assert any(e.reason == "RollingUpdate" for e in p.events)
    assert cond(st, "Ready")["status"] == "False"
    dep = next(m for m in p.manifests if m["kind"] == "Deployment")
    assert dep["spec"]["template"]["metadata"]["labels"][b.LABEL_MODELVERSION] == "digits-2"
    _, st = run(s2, [mv(1), mv(2)], [pod("a"), pod("b", version="digits-2")], st)
    assert cond(st, "Ready")["reason"] == "RollingUpdate"
    _, st = run(s2, [mv(1), mv(2)], [pod("b", version="digits-2")], st)
    assert cond(st, "Ready")["status"] == "True"
    assert [(r["modelVersion"], r["outcome"], r.get("replaced")) for r in st["rolloutHistory"]] == [
        ("digits-1", "Deployed", None),
        ("digits-2", "Deployed", "digits-1"),
    ]


def test_a_version_that_disappears_keeps_the_served_one_running() -> None:
    _, st = run(spec(), [mv(1)], [pod("a")])
    p, st = run(spec(modelRef={"model": "digits", "version": 7}), [mv(1)], [pod("a")], st)
    assert st["stable"]["modelVersion"] == "digits-1"
    assert any(m["kind"] == "Deployment" for m in p.manifests)
    ready = cond(st, "Ready")
    assert ready["reason"] == "ModelVersionNotFound" and "Still serving digits-1" in ready["message"]


# -- canary analysis maths ---------------------------------------------------------------------------


def metrics_text(ok: int, errors: int, buckets: dict[str, int]) -> str:
    lines = [
        "# TYPE modelops_serving_requests_total counter",
        f'modelops_serving_requests_total{{model="d",version="2",code="200"}} {ok}',
        f'modelops_serving_requests_total{{model="d",version="2",code="500"}} {errors}',
        "# TYPE modelops_serving_request_duration_seconds histogram",
    ]
    for le, count in buckets.items():
        lines.append(
            f'modelops_serving_request_duration_seconds_bucket{{model="d",version="2",code="200",le="{le}"}} {count}'
        )
    lines.append(f'modelops_serving_request_duration_seconds_count{{model="d",version="2",code="200"}} {ok}')
    return "\n".join(lines) + "\n"


def test_p99_is_prometheus_histogram_quantile() -> None:
    buckets = {0.01: 50.0, 0.1: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert isvc_analysis.quantile(0.5, buckets) == pytest.approx(0.01)
    assert isvc_analysis.quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 9 / 10)
    assert isvc_analysis.quantile(0.25, buckets) == pytest.approx(0.005)
    # In the +Inf bucket: the highest finite bound.
    assert isvc_analysis.quantile(0.99, {0.1: 10.0, float("inf"): 100.0}) == pytest.approx(0.1)
    assert isvc_analysis.quantile(0.99, {0.1: 0.0, float("inf"): 0.0}) is None


def test_deltas_between_looks_and_counter_resets() -> None:
    first = isvc_analysis.parse_counters(metrics_text(10, 0, {"0.01": 10, "+Inf": 10}))
    second = isvc_analysis.parse_counters(metrics_text(30, 5, {"0.01": 20, "+Inf": 35}))
    d = isvc_analysis.delta(first, second)
    assert (d.requests, d.errors) == (25, 5)
    assert d.buckets[0.01] == 10 and d.buckets[float("inf")] == 25
    restarted = isvc_analysis.parse_counters(metrics_text(3, 0, {"0.01": 3, "+Inf": 3}))
    assert isvc_analysis.delta(second, restarted) == restarted  # a restarted pod counts from zero


ANALYSIS = Analysis(
    intervalSeconds=10, minSuccessRate=0.95, maxP99LatencyMs=100, failureLimit=2, minRequests=10
)


def test_analysis_verdicts() -> None:
    canary = [pod("c", "canary", "digits-2")]
    good = metrics_text(100, 0, {"0.01": 100, "+Inf": 100})
    verdict, baseline = isvc_analysis.analyse(ANALYSIS, canary, {"c": good}, None)
    assert verdict.result == "Passed" and verdict.requests == 100 and verdict.success_rate == 1.0
    # Nothing new since the last look: inconclusive, not passed.
    verdict, _ = isvc_analysis.analyse(ANALYSIS, canary, {"c": good}, baseline)
    assert verdict.result == "Inconclusive" and "minRequests" in verdict.message
    failing = metrics_text(110, 20, {"0.01": 100, "+Inf": 130})
    verdict, _ = isvc_analysis.analyse(ANALYSIS, canary, {"c": failing}, baseline)
    assert verdict.result == "Failed" and "success rate" in verdict.message
    slow = metrics_text(120, 0, {"0.01": 100, "1.0": 120, "+Inf": 120})
    verdict, _ = isvc_analysis.analyse(ANALYSIS, canary, {"c": slow}, baseline)
    assert verdict.result == "Failed" and "p99" in verdict.message
    crashed = [
        pod(
            "c",
            "canary",
            "digits-2",
            ready=False,
            waiting="CrashLoopBackOff",
            restarts=2,
            terminated={"exitCode": 1},
        )
    ]
    verdict, _ = isvc_analysis.analyse(ANALYSIS, crashed, {}, None)
    assert verdict.result == "Failed" and "cannot run" in verdict.message
    verdict, _ = isvc_analysis.analyse(ANALYSIS, [pod("c", "canary", "digits-2", ready=False)], {}, None)
    assert verdict.result == "Inconclusive"


@pytest.mark.parametrize(
    ("percent", "stable", "expected"),
    [(10, 1, 1), (10, 9, 1), (10, 10, 2), (50, 3, 3), (25, 6, 2), (100, 4, 4)],
)
def test_canary_replicas_reach_at_least_the_share(percent: int, stable: int, expected: int) -> None:
    assert isvc_rollout.canary_replicas(percent, stable, 10) == expected


# -- the rollout state machine -----------------------------------------------------------------------

CANARY = {
    "modelRef": {"model": "digits", "version": 2},
    "steps": [25, 50],
    "analysis": {"intervalSeconds": 10, "failureLimit": 2},
}
PASS = isvc_analysis.Verdict("Passed", "20 requests, success rate 1.0000", 20, 1.0, 5.0)
FAIL = isvc_analysis.Verdict("Failed", "success rate 0.5000 below minSuccessRate 0.99", 20, 0.5, 5.0)


def steady(s: InferenceServiceSpec, mvs: list[dict[str, Any]]) -> dict[str, Any]:
    _, st = run(spec(), mvs, [pod("a")])
    return st


def test_a_canary_steps_through_its_analyses_and_is_promoted() -> None:
    mvs = [mv(1), mv(2)]
    s = spec(canary=CANARY)
    st = steady(s, mvs)
    p, st = run(s, mvs, [pod("a")], st)
    assert st["canary"]["modelVersion"] == "digits-2" and st["canary"]["analysis"]["step"] == 0
    canary_dep = next(m for m in p.manifests if m["metadata"]["name"] == "digits-canary")
    assert canary_dep["spec"]["replicas"] == 1
    assert any(e.reason == "CanaryStarted" for e in p.events)
    assert st["rolloutHistory"][-1]["outcome"] == "InProgress"

    pods = [pod("a"), pod("c", "canary", "digits-2")]
    tg = isvc_resolve.targets(s, st, mvs)
    assert not isvc_analysis.analysis_due(s, st, tg, T0 + datetime.timedelta(seconds=5))
    assert isvc_analysis.analysis_due(s, st, tg, T0 + datetime.timedelta(seconds=10))
    p, st = run(s, mvs, pods, st, verdict=PASS, now=T0 + datetime.timedelta(seconds=10))
    assert st["canary"]["analysis"]["step"] == 1 and st["traffic"] == {"stable": 50, "canary": 50}
    assert cond(st, "CanaryProgressing")["status"] == "True"
    p, st = run(s, mvs, pods, st, verdict=PASS, now=T0 + datetime.timedelta(seconds=20))
    assert "canary" not in st
    assert st["stable"]["modelVersion"] == "digits-2"
    assert st["rolloutHistory"][-1]["outcome"] == "Promoted"
    assert any(e.reason == "CanaryPromoted" for e in p.events)
    stable_dep = next(m for m in p.manifests if m["metadata"]["name"] == "digits-stable")
    assert stable_dep["spec"]["template"]["metadata"]["labels"][b.LABEL_MODELVERSION] == "digits-2"
    assert "Deployment/digits-canary" in p.keep  # until the stable track has rolled out

    # Later syncs: the spec still says version 1 with canary version 2, and the promotion holds.
    canary_dep_obj = {"metadata": {"name": "digits-canary"}, "spec": canary_dep["spec"]}
    p, st = run(s, mvs, [pod("b", version="digits-2")], st, deployments=[canary_dep_obj])
    assert st["stable"]["modelVersion"] == "digits-2" and "canary" not in st
    assert cond(st, "CanaryProgressing")["reason"] == "Promoted"
    assert isvc_rollout.stale([{"kind": "Deployment", **canary_dep_obj}], p.manifests, p.keep)  # now removed
    assert cond(st, "Ready")["status"] == "True"


def test_a_failing_canary_is_rolled_back_and_stays_so_until_the_canary_spec_changes() -> None:
    mvs = [mv(1), mv(2)]
    s = spec(canary=CANARY)
    st = steady(s, mvs)
    _, st = run(s, mvs, [pod("a")], st)
    pods = [pod("a"), pod("c", "canary", "digits-2")]
    p, st = run(s, mvs, pods, st, verdict=FAIL, now=T0 + datetime.timedelta(seconds=10))
    assert st["canary"]["analysis"]["failures"] == 1
    assert any(e.reason == "CanaryAnalysisFailed" and e.type == "Warning" for e in p.events)
    p, st = run(s, mvs, pods, st, verdict=FAIL, now=T0 + datetime.timedelta(seconds=20))
    assert "canary" not in st and st["stable"]["modelVersion"] == "digits-1"
    assert st["traffic"] == {"stable": 100, "canary": 0}
    assert st["rolloutHistory"][-1]["outcome"] == "RolledBack"
    assert "success rate" in st["rolloutHistory"][-1]["reason"]
    rolled = next(e for e in p.events if e.reason == "CanaryRolledBack")
    assert rolled.type == "Warning"
    assert not any(m["metadata"]["name"] == "digits-canary" for m in p.manifests)
    observed = [{"kind": "Deployment", "metadata": {"name": "digits-canary"}}]
    assert isvc_rollout.stale(observed, p.manifests, p.keep) == observed
    assert cond(st, "CanaryProgressing")["reason"] == "RolledBack"

    p, st = run(s, mvs, [pod("a")], st, now=T0 + datetime.timedelta(seconds=30))
    assert "canary" not in st and not p.events
    assert "until spec.canary changes" in cond(st, "CanaryProgressing")["message"]
    assert cond(st, "Ready")["status"] == "True"

    changed = spec(canary={**CANARY, "steps": [50]})
    p, st = run(changed, mvs, [pod("a")], st, now=T0 + datetime.timedelta(seconds=40))
    assert st["canary"]["modelVersion"] == "digits-2"
    assert any(e.reason == "CanaryStarted" for e in p.events)


def test_an_alias_that_moves_starts_a_canary_when_analysis_is_asked_for() -> None:
    s = spec(modelRef={"model": "digits", "alias": "champion"}, canary={"trafficPercent": 50})
    mvs = [mv(1, aliases=("champion",)), mv(2)]
    _, st = run(s, mvs, [])
    assert st["stable"]["modelVersion"] == "digits-1" and "canary" not in st
    _, st = run(s, mvs, [pod("a")], st)
    moved = [mv(1), mv(2, aliases=("champion",))]
    _, st = run(s, moved, [pod("a")], st)
    assert st["stable"]["modelVersion"] == "digits-1"
    assert st["canary"]["modelVersion"] == "digits-2"
    assert st["rolloutHistory"][-1]["trigger"] == "alias"
    _, st = run(
        s,
        moved,
        [pod("a"), pod("c", "canary", "digits-2")],
        st,
        verdict=PASS,
        now=T0 + datetime.timedelta(seconds=60),
    )
    assert st["stable"]["modelVersion"] == "digits-2" and "canary" not in st
    _, st = run(s, moved, [pod("b", version="digits-2")], st, now=T0 + datetime.timedelta(seconds=70))
    assert st["stable"]["modelVersion"] == "digits-2" and "canary" not in st
    assert cond(st, "Ready")["status"] == "True"


def test_an_alias_that_moves_without_canary_is_a_rolling_update() -> None:
    s = spec(modelRef={"model": "digits", "alias": "champion"})
    _, st = run(s, [mv(1, aliases=("champion",)), mv(2)], [pod("a")])
    p, st = run(s, [mv(1), mv(2, aliases=("champion",))], [pod("a")], st)
    assert st["stable"]["modelVersion"] == "digits-2" and "canary" not in st
    assert st["rolloutHistory"][-1]["trigger"] == "alias"
    assert any(e.reason == "RollingUpdate" for e in p.events)


def test_the_history_keeps_the_last_twenty() -> None:
    history = [
        {"modelVersion": f"digits-{i}", "startTime": "2026-01-01T00:00:00Z", "outcome": "Deployed"}
        for i in range(25)
    ]
    _, st = run(
        spec(), [mv(1)], [pod("a")], {"rolloutHistory": history, "stable": {"modelVersion": "digits-9"}}
    )
    assert len(st["rolloutHistory"]) == 20 and st["rolloutHistory"][-1]["modelVersion"] == "digits-1"


def test_applying_again_changes_nothing() -> None:
    mvs = [mv(1)]
    _, st = run(spec(), mvs, [pod("a")])
    p, _ = run(spec(), mvs, [pod("a")], st)
    assert p.status_patch == {} and p.events == []
    observed = {**p.manifests[0]}
    assert not isvc_rollout.needs_apply(observed, p.manifests[0])


def test_a_child_name_taken_by_someone_else_is_left_alone_and_said() -> None:
    s = spec()
    tg = isvc_resolve.targets(s, {}, [mv(1)])
    p = c.plan(body(s), s, tg, [], [], gateway_api=False, verdict=None, now=T0, conflicts=["Service/digits"])
    assert not any(m["kind"] == "Service" and m["metadata"]["name"] == "digits" for m in p.manifests)
    ready = next(x for x in p.status_patch["conditions"] if x["type"] == "Ready")
    assert ready["reason"] == "NameConflict" and "Service/digits" in ready["message"]
    assert next(x for x in p.status_patch["conditions"] if x["type"] == "Stalled")["status"] == "True"


def test_gateway_api_routing_weights_exactly_or_says_the_crds_are_missing() -> None:
    routing = {"mode": "gatewayAPI", "parentRefs": [{"name": "gw"}]}
    s = spec(
        trafficRouting=routing, canary={"modelRef": {"model": "digits", "version": 2}, "trafficPercent": 20}
    )
    mvs = [mv(1), mv(2)]
    _, st = run(spec(trafficRouting=routing), mvs, [pod("a")])
    tg = isvc_resolve.targets(s, st, mvs)
    pods = [pod("a"), pod("c", "canary", "digits-2")]
    first = c.plan(body(s, st), s, tg, [], pods, gateway_api=True, verdict=None, now=T0)
    st = {**st, **first.status_patch}
    p = c.plan(body(s, st), s, tg, [], pods, gateway_api=True, verdict=None, now=T0)
    by_name = {(m["kind"], m["metadata"]["name"]): m for m in p.manifests}
    route = by_name[("HTTPRoute", "digits")]
    weights = [(r["name"], r["weight"]) for r in route["spec"]["rules"][0]["backendRefs"]]
    assert weights == [("digits-stable", 80), ("digits-canary", 20)]
    assert ("Service", "digits-stable") in by_name and ("Service", "digits-canary") in by_name
    assert by_name[("Service", "digits")]["spec"]["selector"][b.LABEL_TRACK] == "stable"
    assert p.status_patch.get("trafficSummary", st.get("trafficSummary")) == "80/20"

    missing = c.plan(body(s, st), s, tg, [], pods, gateway_api=False, verdict=None, now=T0)
    assert not any(m["kind"] == "HTTPRoute" for m in missing.manifests)
    ready = next(x for x in missing.status_patch["conditions"] if x["type"] == "Ready")
    assert ready["reason"] == "GatewayAPINotInstalled" and "mode replicas" in ready["message"]
    assert missing.status_patch["trafficSummary"] == "100/0"
