"""The autoscaler's replica-count algorithm (upstream podautoscaler semantics), without any server."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from modelops_local.controllers import common as c
from modelops_local.controllers import hpa as h
from modelops_local.controllers.metrics import metric_value

Obj = dict[str, Any]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def pod(name: str, ready: bool = True, phase: str = "Running") -> Obj:
    return {
        "metadata": {"name": name, "uid": name},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def pods(n: int) -> list[Obj]:
    return [pod(f"p{i}") for i in range(n)]


def plain(current: int, ps: list[Obj], values: dict[str, float], target: float) -> int:
    samples = {k: h.PodSample(v) for k, v in values.items()}
    return h.replicas_for_metric(current, ps, samples, target, utilization=False, cpu=False)[0]


def test_desired_is_ceil_of_current_times_ratio() -> None:
    assert plain(3, pods(3), {"p0": 20, "p1": 20, "p2": 20}, 10) == 6
    assert plain(4, pods(4), {f"p{i}": 2.6 for i in range(4)}, 10) == 2  # ceil(4 * 0.26) = 2


def test_within_tolerance_keeps_current() -> None:
    assert plain(3, pods(3), {"p0": 10.9, "p1": 10.9, "p2": 10.9}, 10) == 3
    assert plain(3, pods(3), {"p0": 9.1, "p1": 9.1, "p2": 9.1}, 10) == 3
    assert plain(3, pods(3), {"p0": 11.2, "p1": 11.2, "p2": 11.2}, 10) == 4


def test_missing_metrics_count_as_target_on_scale_down_and_zero_on_scale_up() -> None:
    # Two pods report 0 of target 10, one is silent: the silent one counts as at target -> ratio 1/3.
    assert plain(3, pods(3), {"p0": 0, "p1": 0}, 10) == 1
    # Two pods at 30, one silent: silent counts as 0 -> ratio (60/3)/10 = 2 -> 6 pods, not 9.
    assert plain(3, pods(3), {"p0": 30, "p1": 30}, 10) == 6
    # A recount that would flip direction keeps the current size.
    assert plain(3, pods(3), {"p0": 12}, 10) == 3


def test_unready_pods_count_as_idle_on_cpu_scale_up_only() -> None:
    ps = [pod("a"), pod("b"), pod("c", ready=False)]
    samples = {n: h.PodSample(0.9, 0.5) for n in ("a", "b", "c")}
    desired, util = h.replicas_for_metric(3, ps, samples, 60, utilization=True, cpu=True)
    assert util == 180  # ready pods only: 0.9/0.5 = 180%
    assert desired == 6  # the unready pod counts as 0: (0.9+0.9+0)/1.5 = 120% -> ceil(2 * 3) = 6
    # Failed pods are ignored; a pending pod counts as idle on a scale-up, which here cancels it.
    assert plain(1, [pod("a"), pod("c", phase="Failed")], {"a": 20}, 10) == 2
    assert plain(1, [pod("a"), pod("b", phase="Pending")], {"a": 20}, 10) == 1


def test_no_metrics_at_all_is_an_error() -> None:
    with pytest.raises(h.MetricError):
        plain(2, pods(2), {}, 10)


def hpa_obj(min_r: int = 1, max_r: int = 10, behavior: Obj | None = None) -> Obj:
    spec: Obj = {"minReplicas": min_r, "maxReplicas": max_r}
    if behavior is not None:
        spec["behavior"] = behavior
    return {"metadata": {"name": "hpa", "uid": "u", "generation": 1}, "spec": spec}


POD_METRIC: Obj = {
    "type": "Pods",
    "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}},
}


def decide(a: h.Autoscaler, obj: Obj, current: int, value: float, at: dt.datetime) -> h.Decision:
    ps = pods(current)
    m = h.evaluate(POD_METRIC, current, ps, {c.name_of(p): h.PodSample(value) for p in ps})
    return a.decide(obj, current, [m], at)


def cond(d: h.Decision, ctype: str) -> tuple[str, str]:
    found = c.get_condition(d.status, ctype)
    assert found is not None
    return found["status"], found["reason"]


def test_min_and_max_bound_the_result() -> None:
    a = h.Autoscaler()
    d = decide(a, hpa_obj(max_r=5), 2, 100, T0)
    assert d.desired == 5 and cond(d, "ScalingLimited") == ("True", "TooManyReplicas")
    d = decide(
        h.Autoscaler(),
        hpa_obj(min_r=2, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}}),
        4,
        0.1,
        T0,
    )
    assert d.desired == 2 and cond(d, "ScalingLimited") == ("True", "TooFewReplicas")
    # Outside the bounds the size is corrected without looking at metrics.
    d = h.Autoscaler().decide(hpa_obj(min_r=3), 1, [], T0)
    assert d.desired == 3 and d.rescale


def test_default_scale_up_policy_allows_max_of_4_pods_or_double_per_15s() -> None:
    a = h.Autoscaler()
    d = decide(a, hpa_obj(max_r=100), 1, 1000, T0)
    assert d.desired == 5 and cond(d, "ScalingLimited") == ("True", "ScaleUpLimit")
    assert d.reason == "pods metric qps above target"
    d = decide(a, hpa_obj(max_r=100), 5, 1000, T0 + dt.timedelta(seconds=5))
    assert d.desired == 5, "the period started at 1 replica: 1 + 4 pods is the limit"
    d = decide(a, hpa_obj(max_r=100), 5, 1000, T0 + dt.timedelta(seconds=16))
    assert d.desired == 10, "a new period: max(5 + 4, 5 * 2)"


def test_scale_down_waits_for_the_stabilization_window() -> None:
    a = h.Autoscaler()
    obj = hpa_obj(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    assert decide(a, obj, 4, 10, T0).desired == 4
    d = decide(a, obj, 4, 1, T0 + dt.timedelta(seconds=30))
    assert d.desired == 4 and cond(d, "AbleToScale") == ("True", "ScaleDownStabilized")
    d = decide(a, obj, 4, 1, T0 + dt.timedelta(seconds=61))
    assert d.desired == 1 and cond(d, "AbleToScale") == ("True", "SucceededRescale")
    assert d.reason == "All metrics below target"
    assert d.status["lastScaleTime"] == c.fmt_time(T0 + dt.timedelta(seconds=61))


def test_scale_up_stabilization_uses_the_lowest_recent_recommendation() -> None:
    a = h.Autoscaler()
    obj = hpa_obj(behavior={"scaleUp": {"stabilizationWindowSeconds": 30}})
    assert decide(a, obj, 2, 10, T0).desired == 2
    assert decide(a, obj, 2, 30, T0 + dt.timedelta(seconds=10)).desired == 2
    assert decide(a, obj, 2, 30, T0 + dt.timedelta(seconds=31)).desired == 6


def test_scale_down_pods_policy_and_min_select_policy() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Min",
            "policies": [
                {"type": "Pods", "value": 2, "periodSeconds": 60},
                {"type": "Percent", "value": 50, "periodSeconds": 60},
            ],
        }
    }
    a = h.Autoscaler()
    d = decide(a, hpa_obj(behavior=behavior), 10, 1, T0)
    assert d.desired == 8 and cond(d, "ScalingLimited") == ("True", "ScaleDownLimit")
    assert decide(a, hpa_obj(behavior=behavior), 8, 1, T0 + dt.timedelta(seconds=30)).desired == 8


def test_disabled_policy_never_scales_that_way() -> None:
    a = h.Autoscaler()
    obj = hpa_obj(behavior={"scaleUp": {"selectPolicy": "Disabled"}})
    assert decide(a, obj, 2, 100, T0).desired == 2


def test_invalid_metric_blocks_scale_down_but_not_scale_up() -> None:
    ps = pods(4)
    good_low = h.evaluate(POD_METRIC, 4, ps, {c.name_of(p): h.PodSample(1) for p in ps})
    bad = h.evaluate(POD_METRIC, 4, ps, "connection refused")
    obj = hpa_obj(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    d = h.Autoscaler().decide(obj, 4, [good_low, bad], T0)
    assert d.desired == 4 and cond(d, "ScalingActive") == ("False", "FailedGetPodsMetric")
    good_high = h.evaluate(POD_METRIC, 4, ps, {c.name_of(p): h.PodSample(20) for p in ps})
    d = h.Autoscaler().decide(obj, 4, [good_high, bad], T0)
    assert d.desired == 8 and cond(d, "ScalingActive") == ("True", "ValidMetricFound")


def test_zero_replicas_disables_scaling() -> None:
    d = h.Autoscaler().decide(hpa_obj(), 0, [], T0)
    assert not d.rescale and cond(d, "ScalingActive") == ("False", "ScalingDisabled")


def test_status_reports_current_metrics() -> None:
    d = decide(h.Autoscaler(), hpa_obj(), 2, 15, T0)
    assert d.status["currentMetrics"] == [
        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "15"}}}
    ]
    assert (d.status["currentReplicas"], d.status["desiredReplicas"]) == (2, 3)


def test_prometheus_parsing_sums_matching_series_and_spots_counters() -> None:
    text = (
        "# TYPE requests_total counter\n"
        'requests_total{code="200"} 10\nrequests_total{code="500"} 2\n'
        "# TYPE inflight gauge\ninflight 3.5\n"
    )
    assert metric_value(text, "requests_total", None) == (12.0, True)
    assert metric_value(text, "requests_total", {"matchLabels": {"code": "500"}}) == (2.0, True)
    assert metric_value(text, "inflight", None) == (3.5, False)
    assert metric_value(text, "absent", None) is None


def test_cpu_of_a_pod_is_measured_from_its_processes() -> None:
    import os
    import subprocess
    import sys
    import time

    from modelops_local.controllers.metrics import CpuSampler

    # The busy pod spins for a second, the idle one sleeps; the rate is taken between two samples
    # once both run, so the interpreters' start-up does not count. The CPU is shared with other
    # work, so the check is relative rather than "one full core".
    busy = "import time\nend = time.time() + 1.2\nwhile time.time() < end: pass\ntime.sleep(5)"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", busy], env={**os.environ, "MODELOPS_POD_UID": "uid-busy-test"}
        ),
        subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(5)"],
            env={**os.environ, "MODELOPS_POD_UID": "uid-idle-test"},
        ),
    ]
    uids = ["uid-busy-test", "uid-idle-test", "uid-absent"]
    try:
        sampler = CpuSampler()
        deadline = time.monotonic() + 5
        while len(sampler.sample(uids)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        sampler.sample(uids)
        time.sleep(0.5)
        usage = sampler.sample(uids)
        memory = sampler.memory(uids)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert usage["uid-busy-test"] > 0.1, usage
    assert usage["uid-idle-test"] < 0.05, usage
    assert "uid-absent" not in usage
    # A Python interpreter is resident in more than 4 MiB and less than 1 GiB.
    assert 4 * 2**20 < memory["uid-idle-test"] < 2**30, memory
    assert "uid-absent" not in memory


def test_scale_subresource_selector_strings_parse_like_kubectl() -> None:
    sel = c.parse_selector("app=web,tier!=db,env in (a, b),!legacy,track")
    assert c.selector_matches(sel, {"app": "web", "env": "a", "track": "x"})
    assert not c.selector_matches(sel, {"app": "web", "env": "c", "track": "x"})
    assert not c.selector_matches(sel, {"app": "web", "env": "a", "track": "x", "legacy": "1"})
    assert not c.selector_matches(sel, {"app": "web", "env": "a", "track": "x", "tier": "db"})
    assert not c.selector_matches(sel, {"app": "web", "env": "a"})


def test_cpu_samples_of_starting_pods_wait_for_a_full_window_of_readiness() -> None:
    def started(ago: float, ready_for: float | None, ready: bool = True) -> Obj:
        p = pod("p", ready=ready)
        p["status"]["startTime"] = c.fmt_time(T0 - dt.timedelta(seconds=ago))
        if ready_for is not None:
            p["status"]["conditions"][0]["lastTransitionTime"] = c.fmt_time(
                T0 - dt.timedelta(seconds=ready_for)
            )
        return p

    sample = {"p": h.PodSample(1.0, 1.0)}

    def unready(p: Obj) -> bool:
        return "p" in h.group_pods([p], sample, cpu=True, at=T0, window=15)[1]

    assert unready(started(60, 5)), "ready for less than a window in its first minutes: start-up load"
    assert not unready(started(60, 30))
    assert unready(started(60, 30, ready=False))
    # After five minutes only a pod that never became ready is discounted.
    assert not unready(started(600, 1, ready=False)), "was ready once; its sample counts"
    assert unready(started(600, 590, ready=False)), "never ready since it started"
