"""The kopf registrations of the InferenceService controller, and the API calls its decisions need.

One `sync` does everything for an object: list its ModelVersions, Deployments and pods, scrape the
canary's pods when an analysis is due, let `inferenceservice.plan` decide, server-side apply the
children whose desired form changed, delete those no longer wanted, write the status, post the
events. It runs on every change of the object and on a timer (pods, ModelVersions and aliases change
without any change to the InferenceService).

With `MODELOPS_PROMETHEUS_URL` set, the analysis asks that Prometheus for the canary pods' series
over the interval instead (for clusters where the operator cannot reach pod IPs). Without it, the
counters of the last analysis live in memory: after an operator restart a canary pod's counters
count from zero again, which only widens the first interval (the pod's requests all belong to the
canary anyway).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import kopf

from modelops import API_VERSION, GROUP, VERSION, status
from modelops.api.inferenceservice import Analysis, InferenceServiceSpec
from modelops.api.serveconfig import PATH_METRICS, SERVE_PORT
from modelops.builders import inferenceservice as builders
from modelops.controllers import children, reconcile, registration
from modelops.controllers import inferenceservice as logic_isvc
from modelops.controllers import inferenceservice_analysis as isvc_analysis
from modelops.controllers import inferenceservice_pods as isvc_pods
from modelops.controllers import inferenceservice_resolve as isvc_resolve
from modelops.controllers import inferenceservice_rollout as isvc_rollout
from modelops.controllers.cluster import Cluster, resource_path
from modelops.controllers.metrics import OperatorMetrics

SYNC_INTERVAL = 3.0
# When set (e.g. http://prometheus.monitoring:9090), canary analysis queries this Prometheus instead
# of scraping the canary pods.
ENV_PROMETHEUS_URL = "MODELOPS_PROMETHEUS_URL"
SCRAPE_TIMEOUT = 2.0
GATEWAY_RECHECK_SECONDS = 60.0

# (apiVersion, plural) of each kind of child, by kind.
CHILDREN = {
    "Deployment": ("apps/v1", "deployments"),
    "Service": ("v1", "services"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "HTTPRoute": (builders.GATEWAY_API_VERSION, "httproutes"),
}


class _State:
    """What the controller remembers between syncs: canary counters, whether Gateway API exists."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.baselines: dict[str, dict[str, isvc_analysis.Counters]] = {}
        self.gateway: tuple[float, bool] | None = None


def gateway_api_installed(cluster: Cluster, state: _State) -> bool:
    now = time.monotonic()
    if state.gateway is not None and now - state.gateway[0] < GATEWAY_RECHECK_SECONDS:
        return state.gateway[1]
    found = cluster.get(f"/apis/{builders.GATEWAY_API_VERSION}")
    installed = bool(found) and any(
        r.get("name") == "httproutes" for r in (found or {}).get("resources") or ()
    )
    state.gateway = (now, installed)
    return installed


def scrape_text(ip: str, port: int = SERVE_PORT, path: str = PATH_METRICS) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=SCRAPE_TIMEOUT) as resp:
            return str(resp.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def prometheus_verdict(
    url: str,
    analysis: Analysis,
    namespace: str,
    name: str,
    seconds: int,
    pods: list[isvc_pods.PodView],
    names: isvc_analysis.MetricNames = isvc_analysis.OUR_METRICS,
) -> isvc_analysis.Verdict:
    """The analysis from Prometheus instead of the pods (their series over the last interval)."""
    answers = []
    try:
        for query in isvc_analysis.prometheus_queries(namespace, name, seconds, names):
            target = f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
            with urllib.request.urlopen(target, timeout=SCRAPE_TIMEOUT * 2) as resp:
                answers.append(json.loads(resp.read()))
        total = isvc_analysis.counters_from_prometheus(
            answers[0], answers[1], names.code_label, answers[2] if len(answers) > 2 else None
        )
    except (OSError, ValueError, KeyError, IndexError) as error:
        return isvc_analysis.Verdict(
            "Inconclusive",
            f"no data: Prometheus at {url} could not be queried: {error}",
            reason=isvc_analysis.REASON_NO_DATA,
        )
    if total is None:
        return isvc_analysis.Verdict(
            "Inconclusive",
            f"no data: Prometheus at {url} has no series {names.requests} for the canary's pods; the canary "
            "does not advance without data",
            reason=isvc_analysis.REASON_NO_DATA,
        )
    return isvc_analysis.judge(analysis, pods, total)


def sync(
    cluster: Cluster,
    state: _State,
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    *,
    body: kopf.Body,
    patch: kopf.Patch,
    logger: kopf.Logger,
    retry: int,
    post: Any,
) -> None:
    if reconcile.conclude(logic, body.get("spec")).state is status.State.STALLED:
        registration.reconcile_object(
            logic, metrics, body=body, patch=patch, logger=logger, retry=retry, post=post
        )
        return
    with metrics.timed(logic.kind):
        try:
            the_plan = _sync(cluster, state, body, logger)
        except Exception as error:
            raise registration.unexpected(
                error, logic.kind, metrics, logger, retry, what="InferenceService sync"
            ) from error
    for key, value in the_plan.status_patch.items():
        patch.status[key] = value
    for event in the_plan.events:
        post(body, type=event.type, reason=event.reason, message=event.message)
        logger.info(f"{event.reason}: {event.message}")
    metrics.reconciled(logic.kind, the_plan.conclusion.state.value.lower())


def _sync(cluster: Cluster, state: _State, body: kopf.Body, logger: kopf.Logger) -> logic_isvc.Plan:
    """Observe, decide, apply, delete: one sync of one object; the plan whose status is to be written."""
    spec = InferenceServiceSpec.model_validate(dict(body.get("spec") or {}))
    name, namespace, uid = str(body.metadata.name), str(body.metadata.namespace), str(body.metadata.uid)
    current: Mapping[str, Any] = body.get("status") or {}
    selector = f"{builders.LABEL_ISVC}={name}"
    now = datetime.datetime.now(datetime.UTC)
    mvs = cluster.list_items(resource_path(API_VERSION, "modelversions", namespace))
    tg = isvc_resolve.targets(spec, current, mvs)
    observed = observe_children(cluster, state, namespace, selector, uid)
    pods = observe_pods(cluster, namespace, selector)
    verdict = analyse(spec, current, tg, pods, state, (name, namespace, uid), now)
    decide = functools.partial(
        logic_isvc.plan,
        body,
        spec,
        tg,
        observed["Deployment"],
        pods,
        gateway_api=gateway_api_installed(cluster, state),
        verdict=verdict,
        now=now,
    )
    the_plan = decide()
    by_key = {(k, o["metadata"]["name"]): o for k, objs in observed.items() for o in objs}
    conflicts = _conflicts(cluster, namespace, uid, the_plan.manifests, by_key)
    if conflicts:
        the_plan = decide(conflicts=conflicts)
    rejected = apply_children(cluster, namespace, the_plan.manifests, by_key, logger)
    if rejected:
        the_plan = decide(conflicts=conflicts, rejected=rejected)
    everything = [o for objs in observed.values() for o in objs]
    for obj in isvc_rollout.stale(everything, the_plan.manifests, the_plan.keep):
        api_version, plural = CHILDREN[str(obj["kind"])]
        cluster.delete(resource_path(api_version, plural, namespace, obj["metadata"]["name"]))
        logger.info(f"Deleted {obj['kind']}/{obj['metadata']['name']}: no longer wanted.")
    if tg.candidate is None:
        with state.lock:
            state.baselines.pop(uid, None)
    return the_plan


def observe_children(
    cluster: Cluster, state: _State, namespace: str, selector: str, uid: str
) -> dict[str, list[dict[str, Any]]]:
    """Our children by kind (listed by label, kept when their owner reference is this object)."""
    observed: dict[str, list[dict[str, Any]]] = {}
    for kind, (api_version, plural) in CHILDREN.items():
        if kind == "HTTPRoute" and not gateway_api_installed(cluster, state):
            observed[kind] = []
            continue
        items = cluster.list_items(resource_path(api_version, plural, namespace), label_selector=selector)
        for item in items:
            item["kind"] = kind
        # Our children only: a user's object that happens to carry the label is left alone.
        observed[kind] = [i for i in items if _owned_by(i, uid)]
    return observed


def observe_pods(cluster: Cluster, namespace: str, selector: str) -> list[isvc_pods.PodView]:
    """The serving pods, with the kubelet's FailedMount events while one of them waits to start."""
    items = cluster.list_items(resource_path("v1", "pods", namespace), label_selector=selector)
    events = cluster.failed_mounts(namespace) if children.has_pending(items) else []
    return [isvc_pods.view(p, events) for p in items]


def analyse(
    spec: InferenceServiceSpec,
    current: Mapping[str, Any],
    tg: isvc_resolve.Targets,
    pods: list[isvc_pods.PodView],
    state: _State,
    meta: tuple[str, str, str],
    now: datetime.datetime,
) -> isvc_analysis.Verdict | None:
    """The canary's analysis when one is due: from Prometheus when configured, else from its pods."""
    if spec.canary is None or not isvc_analysis.analysis_due(spec, current, tg, now):
        return None
    name, namespace, uid = meta
    assert tg.candidate is not None  # analysis_due says so
    pods = isvc_analysis.of_candidate(pods, tg.candidate.model_version)
    names = isvc_analysis.metric_names(spec, tg.candidate)
    prometheus = os.environ.get(ENV_PROMETHEUS_URL)
    if prometheus:
        seconds = spec.canary.analysis.interval_seconds
        return prometheus_verdict(prometheus, spec.canary.analysis, namespace, name, seconds, pods, names)
    port, path = builders.metrics_endpoint(spec)
    scraped = {
        p.name: scrape_text(p.ip, port, path) for p in pods if p.track == builders.CANARY and p.ip and p.ready
    }
    with state.lock:
        verdict, baseline = isvc_analysis.analyse(
            spec.canary.analysis, pods, scraped, state.baselines.get(uid), names
        )
        state.baselines[uid] = baseline
    return verdict


def apply_children(
    cluster: Cluster,
    namespace: str,
    manifests: list[dict[str, Any]],
    observed: Mapping[tuple[str, str], Any],
    logger: kopf.Logger,
) -> list[children.ChildRejected]:
    """Apply the children whose desired form changed; those the API server refused, with its words."""
    rejected = []
    for manifest in manifests:
        kind, child = manifest["kind"], manifest["metadata"]["name"]
        if not isvc_rollout.needs_apply(observed.get((kind, child)), manifest):
            continue
        api_version, plural = CHILDREN[kind]
        try:
            with children.creating(kind, child):
                cluster.apply(resource_path(api_version, plural, namespace, child), manifest)
        except children.ChildRejected as refused:
            # One line, not a traceback: it is the spec (or a quota, or RBAC) a human must fix.
            logger.warning(f"The API server refused {kind}/{child}: {refused.message}")
            rejected.append(refused)
            continue
        logger.info(f"Applied {kind}/{child}.")
    return rejected


def _conflicts(
    cluster: Cluster,
    namespace: str,
    uid: str,
    manifests: list[dict[str, Any]],
    ours: Mapping[tuple[str, str], Any],
) -> list[str]:
    """Children to create whose name is taken by an object that is not ours (e.g. a TrainingJob's
    Service of the same name): applying over it would take it over, so it is reported instead."""
    taken = []
    for manifest in manifests:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if (kind, name) in ours:
            continue
        api_version, plural = CHILDREN[kind]
        existing = cluster.get(resource_path(api_version, plural, namespace, name))
        if existing is not None and not _owned_by(existing, uid):
            taken.append(f"{kind}/{name}")
    return taken


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or ())


def register(
    registry: kopf.OperatorRegistry,
    plural: str,
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    cluster: Cluster,
) -> None:
    state = _State()

    def run(*, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int) -> None:
        sync(
            cluster,
            state,
            logic,
            metrics,
            body=body,
            patch=patch,
            logger=logger,
            retry=retry,
            post=kopf.event,
        )

    # Pods, ModelVersions (aliases) and canary metrics change without any change to the object.
    registration.reconcile_and_sync(registry, plural, run, interval=SYNC_INTERVAL)

    @kopf.on.delete(GROUP, VERSION, plural, registry=registry, id="forget", optional=True)
    def _forget(body: kopf.Body, **_: Any) -> None:
        with state.lock:
            state.baselines.pop(str(body.metadata.uid), None)
