"""HorizontalPodAutoscaler (autoscaling/v2): the upstream replica-count algorithm as pure functions.

`replicas_for_metric` is pkg/controller/podautoscaler's calcPlainMetricReplicas and
GetResourceReplicas: desired = ceil(ready pods x current/target) unless within the tolerance (0.1);
pods without a metric count as at target on a scale-down and as idle on a scale-up; not-ready pods
(for CPU: also pods in their first five minutes not yet Ready for a whole sample window) count as
idle on a scale-up; a recount that flips direction keeps the current size.
`Autoscaler.decide` is reconcileAutoscaler: min/max bounds, all metrics valid (or the biggest proposal
when some are invalid and it is a scale-up), stabilization windows over recent recommendations
(default 0 s up, 300 s down) and the scaleUp/scaleDown rate policies (default: up by max(4 pods,
100%) per 15 s, down by 100% per 15 s), with the status conditions upstream sets. The in-memory state
(recommendations, scale events) is per HPA, as upstream keeps it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import common as c

Obj = dict[str, Any]

TOLERANCE = 0.1
DEFAULT_SCALE_UP: Obj = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ],
}
DEFAULT_SCALE_DOWN: Obj = {
    "stabilizationWindowSeconds": 300,
    "selectPolicy": "Max",
    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
}


class MetricError(Exception):
    """A metric could not be computed; the message says which and why."""


@dataclass
class PodSample:
    value: float  # the metric for this pod: CPU in cores, or the Pods metric's value
    request: float = 0.0  # the pod's request of the resource (Resource metrics only)


CPU_INITIALIZATION_PERIOD = 300.0
INITIAL_READINESS_DELAY = 30.0


def _cpu_unready(pod: Obj, at: dt.datetime | None, window: float) -> bool:
    """Whether a pod's CPU sample should not count yet (upstream's groupPods for CPU).

    During the first five minutes of a pod, a sample counts only once the pod has been Ready for a
    whole sample window (start-up work would otherwise read as load); after that, only a pod that
    has never been Ready is discounted.
    """
    cond = c.pod_condition(pod, "Ready")
    if cond is None:
        return True
    if at is None:
        return cond.get("status") != "True"
    start = c.parse_time((pod.get("status") or {}).get("startTime")) or c.creation_time(pod)
    changed = c.parse_time(cond.get("lastTransitionTime")) or start
    if (at - start).total_seconds() < CPU_INITIALIZATION_PERIOD:
        return cond.get("status") == "False" or (at - changed).total_seconds() < window
    return cond.get("status") == "False" and (changed - start).total_seconds() < INITIAL_READINESS_DELAY


def group_pods(
    pods: Sequence[Obj],
    samples: Mapping[str, PodSample],
    cpu: bool,
    at: dt.datetime | None = None,
    window: float = 15.0,
) -> tuple[int, set[str], set[str], set[str]]:
    """(ready count, unready, missing, ignored) pod names, as upstream's groupPods.

    Without `at` a CPU sample counts exactly when the pod is Ready.
    """
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        name = c.name_of(pod)
        if c.is_deleting(pod) or c.pod_phase(pod) in ("Failed", "Succeeded"):
            ignored.add(name)
            continue
        if c.pod_phase(pod) == "Pending":
            unready.add(name)
            continue
        if name not in samples:
            missing.add(name)
            continue
        if cpu and _cpu_unready(pod, at, window):
            unready.add(name)
            continue
        ready += 1
    return ready, unready, missing, ignored


def _ratio(samples: Mapping[str, PodSample], target: float, utilization: bool) -> tuple[float, float]:
    """(usage ratio, current value): utilization in percent of requests, else the average value."""
    if not samples:
        return 0.0, 0.0
    total = sum(s.value for s in samples.values())
    if utilization:
        requests = sum(s.request for s in samples.values())
        if requests <= 0:
            raise MetricError("missing request for the resource in the pods' containers")
        current = float(int(total * 100 / requests))
        return current / target, current
    current = total / len(samples)
    return current / target, current


def replicas_for_metric(
    current_replicas: int,
    pods: Sequence[Obj],
    samples: Mapping[str, PodSample],
    target: float,
    *,
    utilization: bool,
    cpu: bool,
    tolerance: float = TOLERANCE,
    requests: Mapping[str, float] | None = None,
    at: dt.datetime | None = None,
    window: float = 15.0,
) -> tuple[int, float]:
    """Proposed replicas for one metric and the metric's current value (percent or average)."""
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    if target <= 0:
        raise MetricError("the metric target must be positive")
    ready, unready, missing, ignored = group_pods(pods, samples, cpu, at, window)
    metrics = {k: v for k, v in samples.items() if k not in ignored and k not in unready}
    names = {c.name_of(p) for p in pods}
    metrics = {k: v for k, v in metrics.items() if k in names}
    if not metrics:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    usage_ratio, current = _ratio(metrics, target, utilization)
    scale_up_with_unready = bool(unready) and usage_ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - usage_ratio) <= tolerance:
            return current_replicas, current
        return math.ceil(usage_ratio * ready), current
    given = dict(requests or {})
    requests = {c.name_of(p): given.get(c.name_of(p)) or _pod_request(samples, c.name_of(p)) for p in pods}
    if missing:
        for name in missing:
            if usage_ratio < 1.0:
                # On a scale-down a silent pod counts as exactly at target (100% of its request, or the
                # utilization target when that is higher).
                if utilization:
                    req = requests.get(name) or _mean_request(metrics)
                    metrics[name] = PodSample(max(req, req * target / 100), req)
                else:
                    metrics[name] = PodSample(target)
            elif usage_ratio > 1.0:
                req = requests.get(name) or _mean_request(metrics)
                metrics[name] = PodSample(0.0, req)
    if scale_up_with_unready:
        for name in unready:
            req = requests.get(name) or _mean_request(metrics)
            metrics[name] = PodSample(0.0, req)
    new_ratio, _ = _ratio(metrics, target, utilization)
    if (
        abs(1.0 - new_ratio) <= tolerance
        or (usage_ratio < 1.0 and new_ratio > 1.0)
        or (usage_ratio > 1.0 and new_ratio < 1.0)
    ):
        return current_replicas, current
    new_replicas = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (
        new_ratio > 1.0 and new_replicas < current_replicas
    ):
        return current_replicas, current
    return new_replicas, current


def _pod_request(samples: Mapping[str, PodSample], name: str) -> float:
    s = samples.get(name)
    return s.request if s is not None else 0.0


def _mean_request(samples: Mapping[str, PodSample]) -> float:
    reqs = [s.request for s in samples.values() if s.request > 0]
    return sum(reqs) / len(reqs) if reqs else 0.0


def behavior_of(hpa: Obj) -> tuple[Obj, Obj]:
    """(scaleUp, scaleDown) rules with the upstream defaults filled in."""
    behavior = (hpa.get("spec") or {}).get("behavior") or {}
    up = {**DEFAULT_SCALE_UP, **{k: v for k, v in (behavior.get("scaleUp") or {}).items() if v is not None}}
    down = {
        **DEFAULT_SCALE_DOWN,
        **{k: v for k, v in (behavior.get("scaleDown") or {}).items() if v is not None},
    }
    return up, down


def _changes_in_period(period: float, events: Sequence[tuple[dt.datetime, int]], at: dt.datetime) -> int:
    cutoff = at - dt.timedelta(seconds=period)
    return sum(change for when, change in events if when > cutoff)


def scale_up_limit(
    current: int,
    ups: Sequence[tuple[dt.datetime, int]],
    downs: Sequence[tuple[dt.datetime, int]],
    rules: Obj,
    at: dt.datetime,
) -> int:
    select = rules.get("selectPolicy", "Max")
    if select == "Disabled":
        return current
    result: int | None = None
    for policy in rules.get("policies") or []:
        period = float(policy.get("periodSeconds", 15))
        start = current - _changes_in_period(period, ups, at) + _changes_in_period(period, downs, at)
        if policy.get("type") == "Pods":
            proposed = start + int(policy.get("value", 0))
        else:
            proposed = math.ceil(start * (1 + float(policy.get("value", 0)) / 100))
        result = (
            proposed
            if result is None
            else (max(result, proposed) if select == "Max" else min(result, proposed))
        )
    return current if result is None else result


def scale_down_limit(
    current: int,
    ups: Sequence[tuple[dt.datetime, int]],
    downs: Sequence[tuple[dt.datetime, int]],
    rules: Obj,
    at: dt.datetime,
) -> int:
    select = rules.get("selectPolicy", "Max")
    if select == "Disabled":
        return current
    result: int | None = None
    for policy in rules.get("policies") or []:
        period = float(policy.get("periodSeconds", 15))
        start = current - _changes_in_period(period, ups, at) + _changes_in_period(period, downs, at)
        if policy.get("type") == "Pods":
            proposed = start - int(policy.get("value", 0))
        else:
            proposed = int(start * (1 - float(policy.get("value", 0)) / 100))
        # "Max" lets the biggest change through, which for a scale-down is the smallest count.
        result = (
            proposed
            if result is None
            else (min(result, proposed) if select == "Max" else max(result, proposed))
        )
    return current if result is None else result


@dataclass
class MetricResult:
    """One metric's outcome: a proposal and its status entry, or an error."""

    spec: Obj
    replicas: int | None = None
    status: Obj | None = None
    error: str | None = None
    reason: str = ""


@dataclass
class Decision:
    desired: int
    status: Obj
    rescale: bool
    reason: str = ""  # why, in the words of upstream's SuccessfulRescale event


@dataclass
class Autoscaler:
    """Per-HPA memory the upstream controller keeps between syncs."""

    recommendations: list[tuple[dt.datetime, int]] = field(default_factory=list)
    scale_ups: list[tuple[dt.datetime, int]] = field(default_factory=list)
    scale_downs: list[tuple[dt.datetime, int]] = field(default_factory=list)

    def stabilize(
        self, desired: int, current: int, up: Obj, down: Obj, at: dt.datetime
    ) -> tuple[int, str, str]:
        up_cut = at - dt.timedelta(seconds=float(up.get("stabilizationWindowSeconds") or 0))
        down_cut = at - dt.timedelta(seconds=float(down.get("stabilizationWindowSeconds") or 0))
        up_rec = down_rec = desired
        for when, value in self.recommendations:
            if when > up_cut:
                up_rec = min(up_rec, value)
            if when > down_cut:
                down_rec = max(down_rec, value)
        recommendation = max(current, up_rec)
        recommendation = min(recommendation, down_rec)
        keep_after = min(up_cut, down_cut)
        self.recommendations = [(w, v) for w, v in self.recommendations if w >= keep_after]
        self.recommendations.append((at, desired))
        if desired >= current:
            return (
                recommendation,
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
        return (
            recommendation,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )

    def limit_rate(
        self, desired: int, current: int, min_r: int, max_r: int, up: Obj, down: Obj, at: dt.datetime
    ) -> tuple[int, str, str]:
        if desired > current:
            limit = max(scale_up_limit(current, self.scale_ups, self.scale_downs, up, at), current)
            if max_r > limit:
                allowed, reason = limit, "ScaleUpLimit"
                msg = "the desired replica count is increasing faster than the maximum scale rate"
            else:
                allowed, reason = max_r, "TooManyReplicas"
                msg = "the desired replica count is more than the maximum replica count"
            if desired > allowed:
                return allowed, reason, msg
        elif desired < current:
            limit = min(scale_down_limit(current, self.scale_ups, self.scale_downs, down, at), current)
            if min_r < limit:
                allowed, reason = limit, "ScaleDownLimit"
                msg = "the desired replica count is decreasing faster than the maximum scale rate"
            else:
                allowed, reason = min_r, "TooFewReplicas"
                msg = "the desired replica count is less than the minimum replica count"
            if desired < allowed:
                return allowed, reason, msg
        return desired, "DesiredWithinRange", "the desired count is within the acceptable range"

    def record_scale(self, current: int, desired: int, up: Obj, down: Obj, at: dt.datetime) -> None:
        longest = max(
            [
                float(p.get("periodSeconds", 15))
                for p in (up.get("policies") or []) + (down.get("policies") or [])
            ]
            or [15.0]
        )
        cutoff = at - dt.timedelta(seconds=longest)
        self.scale_ups = [(w, v) for w, v in self.scale_ups if w > cutoff]
        self.scale_downs = [(w, v) for w, v in self.scale_downs if w > cutoff]
        if desired > current:
            self.scale_ups.append((at, desired - current))
        elif desired < current:
            self.scale_downs.append((at, current - desired))

    def decide(self, hpa: Obj, current: int, metrics: Sequence[MetricResult], at: dt.datetime) -> Decision:
        spec = hpa.get("spec") or {}
        old = hpa.get("status") or {}
        min_r = int(spec.get("minReplicas", 1) if spec.get("minReplicas") is not None else 1)
        max_r = int(spec.get("maxReplicas") or 1)
        conditions: list[Obj] = list(old.get("conditions") or [])

        def cond(ctype: str, st: str, reason: str, message: str) -> None:
            nonlocal conditions
            conditions = c.set_condition(conditions, ctype, st, reason, message, at)

        cond(
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        )
        status: Obj = {
            "observedGeneration": c.generation_of(hpa),
            "currentReplicas": current,
            "desiredReplicas": current,
            "currentMetrics": [m.status for m in metrics if m.status is not None],
        }
        if old.get("lastScaleTime"):
            status["lastScaleTime"] = old["lastScaleTime"]
        up, down = behavior_of(hpa)
        desired = current
        why = ""
        if current == 0 and min_r != 0:
            cond(
                "ScalingActive",
                "False",
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            )
            status["conditions"] = conditions
            return Decision(current, status, False)
        if current > max_r:
            desired, why = max_r, "Current number of replicas above Spec.MaxReplicas"
        elif current < min_r:
            desired, why = min_r, "Current number of replicas below Spec.MinReplicas"
        else:
            valid = [m for m in metrics if m.error is None and m.replicas is not None]
            invalid = [m for m in metrics if m.error is not None]
            proposal = max((m.replicas or 0 for m in valid), default=0)
            if not metrics or len(invalid) >= len(metrics) or (invalid and proposal < current):
                first = invalid[0] if invalid else None
                reason = first.reason if first else "InvalidMetricSourceType"
                message = first.error if first else "no metrics were specified"
                cond(
                    "ScalingActive",
                    "False",
                    reason,
                    f"the HPA was unable to compute the replica count: {message}",
                )
                status["conditions"] = conditions
                return Decision(current, status, False)
            best = max(valid, key=lambda m: m.replicas or 0)
            why = f"{_describe(best.spec)} above target" if proposal > current else "All metrics below target"
            cond(
                "ScalingActive",
                "True",
                "ValidMetricFound",
                f"the HPA was able to successfully calculate a replica count from {_describe(best.spec)}",
            )
            stabilized, reason, message = self.stabilize(proposal, current, up, down, at)
            if stabilized != proposal:
                cond("AbleToScale", "True", reason, message)
            else:
                cond("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
            desired, reason, message = self.limit_rate(stabilized, current, min_r, max_r, up, down, at)
            cond("ScalingLimited", "True" if desired != stabilized else "False", reason, message)
        if desired != current and current > max_r:
            cond(
                "ScalingLimited",
                "True",
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        elif desired != current and current < min_r:
            cond(
                "ScalingLimited",
                "True",
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        rescale = desired != current
        if rescale:
            self.record_scale(current, desired, up, down, at)
            status["lastScaleTime"] = c.fmt_time(at)
            cond(
                "AbleToScale",
                "True",
                "SucceededRescale",
                f"the HPA controller was able to update the target scale to {desired}",
            )
        status["desiredReplicas"] = desired
        status["conditions"] = conditions
        return Decision(desired, status, rescale, why)


def _describe(metric: Obj) -> str:
    mtype = metric.get("type")
    if mtype == "Resource":
        res = metric.get("resource") or {}
        kind = (
            "utilization (percentage of request)"
            if (res.get("target") or {}).get("type") == "Utilization"
            else "value"
        )
        return f"{res.get('name')} resource {kind}"
    if mtype == "Pods":
        return f"pods metric {((metric.get('pods') or {}).get('metric') or {}).get('name')}"
    return f"{mtype} metric"


def evaluate(
    metric: Obj,
    current: int,
    pods: Sequence[Obj],
    samples: Mapping[str, PodSample] | str,
    tolerance: float = TOLERANCE,
    requests: Mapping[str, float] | None = None,
    at: dt.datetime | None = None,
    window: float = 15.0,
) -> MetricResult:
    """One metric spec against the pods' samples (or the error string from collecting them)."""
    mtype = metric.get("type")
    reason = {"Resource": "FailedGetResourceMetric", "Pods": "FailedGetPodsMetric"}.get(
        str(mtype), "InvalidMetricSourceType"
    )
    if isinstance(samples, str):
        return MetricResult(metric, error=samples, reason=reason)
    try:
        if mtype == "Resource":
            res = metric.get("resource") or {}
            target = res.get("target") or {}
            name = str(res.get("name"))
            if target.get("type") == "Utilization":
                goal = float(target.get("averageUtilization") or 0)
                replicas, value = replicas_for_metric(
                    current,
                    pods,
                    samples,
                    goal,
                    utilization=True,
                    cpu=name == "cpu",
                    tolerance=tolerance,
                    requests=requests,
                    at=at,
                    window=window,
                )
                avg = sum(s.value for s in samples.values()) / max(len(samples), 1)
                return MetricResult(
                    metric,
                    replicas,
                    {
                        "type": "Resource",
                        "resource": {
                            "name": name,
                            "current": {
                                "averageUtilization": int(value),
                                "averageValue": c.format_milli(avg),
                            },
                        },
                    },
                )
            goal = c.parse_quantity(target.get("averageValue") or 0)
            replicas, value = replicas_for_metric(
                current,
                pods,
                samples,
                goal,
                utilization=False,
                cpu=name == "cpu",
                tolerance=tolerance,
                at=at,
                window=window,
            )
            return MetricResult(
                metric,
                replicas,
                {
                    "type": "Resource",
                    "resource": {"name": name, "current": {"averageValue": c.format_milli(value)}},
                },
            )
        if mtype == "Pods":
            pm = metric.get("pods") or {}
            goal = c.parse_quantity((pm.get("target") or {}).get("averageValue") or 0)
            replicas, value = replicas_for_metric(
                current, pods, samples, goal, utilization=False, cpu=False, tolerance=tolerance
            )
            return MetricResult(
                metric,
                replicas,
                {
                    "type": "Pods",
                    "pods": {
                        "metric": pm.get("metric") or {},
                        "current": {"averageValue": c.format_milli(value)},
                    },
                },
            )
    except (MetricError, ValueError) as e:
        return MetricResult(metric, error=str(e), reason=reason)
    return MetricResult(
        metric,
        error=f"metric type {mtype!r} is not supported by the local plane; use Resource or Pods",
        reason=reason,
    )
