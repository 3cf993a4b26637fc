"""The HorizontalPodAutoscaler loop: collect metrics, call the pure algorithm in `hpa`, scale.

Each HPA is synced once per `--hpa-sync-period` (upstream: 15 s), or at once when its spec changes;
its own status writes do not make it sample again early, so rates are always taken over a full period.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from modelops_local.client import ApiError, resource_path

from . import common as c
from .actions import HPAS, PODS, SCALABLE, Event, Kind, Patch, Result, Status
from .hpa import Autoscaler, MetricResult, PodSample, evaluate
from .metrics import CpuSampler, PodsMetricScraper, pod_request
from .store import Store

Obj = dict[str, Any]

DEFAULT_METRICS: list[Obj] = [
    {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
    }
]


class HpaLoop:
    def __init__(self, period: float, tolerance: float = 0.1) -> None:
        self.period = period
        self.tolerance = tolerance
        self.state: dict[str, Autoscaler] = {}
        self.last: dict[str, tuple[float, int]] = {}
        self.cpu = CpuSampler()
        self.scraper = PodsMetricScraper()
        self._session: aiohttp.ClientSession | None = None
        self._plurals: dict[tuple[str, str], str] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def sync(self, store: Store) -> list[Result]:
        mono = time.monotonic()
        results: list[Result] = []
        hpas = store.list(HPAS)
        due = Result()
        for hpa in hpas:
            uid = c.uid_of(hpa)
            last = self.last.get(uid)
            if last is not None and last[1] == c.generation_of(hpa) and mono - last[0] < self.period * 0.95:
                # Woken early (by our own status write, or another HPA): come back when this one is due.
                due.requeue(self.period - (mono - last[0]))
                continue
            self.last[uid] = (mono, c.generation_of(hpa))
            results.append(await self.one(store, hpa))
        results.append(due)
        live = {c.uid_of(h) for h in hpas}
        for uid in [u for u in self.state if u not in live]:
            del self.state[uid]
        for uid in [u for u in self.last if u not in live]:
            del self.last[uid]
        return results

    async def _target(self, store: Store, hpa: Obj) -> tuple[Kind, int, Obj | None] | str:
        """(kind, current replicas, pod selector) of the scale target, or why it cannot be read.

        Deployments, ReplicaSets and StatefulSets come from the watch cache (their full selector);
        anything else with a scale subresource (a custom resource, say) is read through /scale, as
        upstream reads every target.
        """
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        ns = c.namespace_of(hpa)
        name = str(ref.get("name") or "")
        api_version = str(ref.get("apiVersion") or "")
        kind_name = str(ref.get("kind") or "")
        known = SCALABLE.get(kind_name)
        if known is not None and known.api_version == api_version:
            target = store.get(known, ns, name)
            if target is None:
                return f'{known.plural}.{api_version.split("/")[0]} "{name}" not found'
            spec = target.get("spec") or {}
            return (
                known,
                int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
                spec.get("selector"),
            )
        plural = await self._plural(store, api_version, kind_name)
        if plural is None:
            return f"no resource of kind {kind_name!r} in {api_version!r}; check scaleTargetRef"
        kind = Kind(api_version, plural, kind_name)
        try:
            scale = await store.client.request("GET", resource_path(api_version, plural, ns, name, "scale"))
        except ApiError as e:
            return f"{plural} {name!r}: {e.message or e.reason}"
        selector_text = str((scale.get("status") or {}).get("selector") or "")
        selector = c.parse_selector(selector_text) if selector_text else None
        return kind, int((scale.get("spec") or {}).get("replicas") or 0), selector

    async def _plural(self, store: Store, api_version: str, kind: str) -> str | None:
        key = (api_version, kind)
        if key not in self._plurals:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            try:
                listing = await store.client.request("GET", base)
            except (ApiError, aiohttp.ClientError):
                return None
            for res in listing.get("resources") or []:
                if res.get("kind") == kind and "/" not in str(res.get("name")):
                    self._plurals[key] = str(res["name"])
        return self._plurals.get(key)

    async def one(self, store: Store, hpa: Obj) -> Result:
        at = c.now()
        result = Result()
        spec = hpa.get("spec") or {}
        ns, name = c.namespace_of(hpa), c.name_of(hpa)
        old = hpa.get("status") or {}
        found = await self._target(store, hpa)
        if isinstance(found, str):
            status = dict(old)
            status["conditions"] = c.set_condition(
                list(old.get("conditions") or []),
                "AbleToScale",
                "False",
                "FailedGetScale",
                f"the HPA controller was unable to get the target's current scale: {found}",
                at,
            )
            result.actions.append(Status(HPAS, ns, name, status))
            return result
        kind, current, selector = found
        target_name = str((spec.get("scaleTargetRef") or {}).get("name"))
        pods = [p for p in store.list(PODS, ns) if c.selector_matches(selector, c.labels_of(p))]
        metrics: list[MetricResult] = []
        for metric in spec.get("metrics") or DEFAULT_METRICS:
            metrics.append(await self._evaluate(metric, current, pods))
        autoscaler = self.state.setdefault(c.uid_of(hpa), Autoscaler())
        decision = autoscaler.decide(hpa, current, metrics, at)
        if decision.rescale:
            result.actions.append(
                Patch(kind, ns, target_name, {"spec": {"replicas": decision.desired}}, subresource="scale")
            )
            above = "above" if decision.desired < current else "below"
            result.actions.append(
                Event(
                    hpa, "SuccessfulRescale", f"New size: {decision.desired}; reason: metrics {above} target"
                )
            )
        result.actions.append(Status(HPAS, ns, name, decision.status))
        return result

    async def _evaluate(self, metric: Obj, current: int, pods: list[Obj]) -> MetricResult:
        mtype = metric.get("type")
        if mtype == "Resource":
            res = metric.get("resource") or {}
            rname = str(res.get("name"))
            if rname not in ("cpu", "memory"):
                why = f"resource {rname!r} is not measured by the local plane; use cpu or memory"
                return evaluate(metric, current, pods, why)
            measure = self.cpu.sample if rname == "cpu" else self.cpu.memory
            by_uid = await asyncio.to_thread(measure, [c.uid_of(p) for p in pods])
            requests = {c.name_of(p): pod_request(p, rname) for p in pods}
            samples = {
                c.name_of(p): PodSample(by_uid[c.uid_of(p)], requests[c.name_of(p)])
                for p in pods
                if c.uid_of(p) in by_uid
            }
            if (res.get("target") or {}).get("type") == "Utilization":
                lacking = [n for n, r in requests.items() if r <= 0]
                if lacking:
                    return evaluate(
                        metric,
                        current,
                        pods,
                        f"missing request for {rname} in pod {lacking[0]}; set resources.requests.{rname}",
                    )
            return evaluate(metric, current, pods, samples, self.tolerance, requests, c.now(), self.period)
        if mtype == "Pods":
            pm = (metric.get("pods") or {}).get("metric") or {}
            if self._session is None:
                self._session = aiohttp.ClientSession()
            values = await self.scraper.scrape(self._session, pods, str(pm.get("name")), pm.get("selector"))
            return evaluate(
                metric, current, pods, {k: PodSample(v) for k, v in values.items()}, self.tolerance
            )
        return evaluate(metric, current, pods, {})
