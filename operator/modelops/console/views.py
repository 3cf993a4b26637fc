"""Pure functions from Kubernetes objects (as the API returns them) to the console's page models.

No I/O and no HTML here: `server` fetches, these decide what a page says, `pages` renders it. Every
page model is a plain dict, so the tests build objects as dicts and check what a user would read.
Unknown fields are ignored and missing ones tolerated: the console must show an object written by an
older or newer operator rather than fail on it.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modelops.api.serveconfig import METRIC_LATENCY, METRIC_REQUESTS

DEFAULT_COMPARE = 10  # versions side by side before the page asks which ones

KINDS = {
    "trainingjobs": "TrainingJob",
    "modelversions": "ModelVersion",
    "inferenceservices": "InferenceService",
    "tuningjobs": "TuningJob",
}

Obj = Mapping[str, Any]


def parse_time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def age(value: Any, now: datetime.datetime) -> str:
    """kubectl's short age: 45s, 12m, 3h, 5d ('' when unknown)."""
    then = parse_time(value)
    if then is None:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration(seconds: Any) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def size(n: Any) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def st(obj: Obj) -> Mapping[str, Any]:
    return obj.get("status") or {}


def condition(obj: Obj, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in st(obj).get("conditions") or () if c.get("type") == type_), None)


def health(obj: Obj) -> str:
    """ok, progressing, failed or unknown: from Ready and Stalled (kstatus), for the badge colour."""
    ready, stalled = condition(obj, "Ready"), condition(obj, "Stalled")
    if stalled is not None and stalled.get("status") == "True":
        return "failed"
    if ready is None:
        return "unknown"
    if ready.get("status") == "True":
        return "ok"
    reconciling = condition(obj, "Reconciling")
    return "progressing" if reconciling is not None and reconciling.get("status") == "True" else "waiting"


def href(plural: str, obj: Obj) -> str:
    m = meta(obj)
    ns, name = m.get("namespace") or "default", m.get("name")
    if plural == "modelversions":
        model = (obj.get("spec") or {}).get("model") or name
        return f"/ns/{ns}/models/{model}#{name}"
    return f"/ns/{ns}/{plural}/{name}"


def conditions(obj: Obj, now: datetime.datetime) -> list[dict[str, Any]]:
    return [
        {
            "type": c.get("type"),
            "status": c.get("status"),
            "reason": c.get("reason") or "",
            "message": c.get("message") or "",
            "age": age(c.get("lastTransitionTime"), now),
        }
        for c in st(obj).get("conditions") or ()
    ]


def _summary(plural: str, obj: Obj) -> str:
    """The one-line 'what is it doing' of an overview row (like the printer columns)."""
    s, spec = st(obj), obj.get("spec") or {}
    if plural == "trainingjobs":
        p = s.get("progress") or {}
        bits = []
        if p.get("percent") is not None:
            bits.append(f"{p['percent']}%")
        if p.get("epoch") is not None:
            total = p.get("totalEpochs") or (spec.get("hyperparameters") or {}).get("epochs") or "?"
            bits.append(f"epoch {p['epoch']}/{total}")
        if p.get("loss") is not None:
            bits.append(f"loss {p['loss']:.4g}")
        if s.get("restarts"):
            bits.append(f"{s['restarts']} restart(s)")
        return ", ".join(bits)
    if plural == "modelversions":
        metrics = s.get("metrics") or {}
        bits = [f"v{s.get('version') or spec.get('version') or '?'}"]
        if "accuracy" in metrics:
            bits.append(f"accuracy {metrics['accuracy']:.4g}")
        if s.get("aliases"):
            bits.append("@" + ", @".join(s["aliases"]))
        return ", ".join(bits)
    if plural == "inferenceservices":
        bits = []
        if (s.get("stable") or {}).get("modelVersion"):
            bits.append(f"stable {s['stable']['modelVersion']}")
        if (s.get("canary") or {}).get("modelVersion"):
            bits.append(f"canary {s['canary']['modelVersion']}")
        if s.get("trafficSummary"):
            bits.append(f"traffic {s['trafficSummary']}")
        return ", ".join(bits)
    if plural == "tuningjobs":
        # The columns of `kubectl get tuningjobs`: done, running, pruned, failed, best.
        bits = [f"{s.get('trialsSucceeded') or 0}/{spec.get('maxTrials') or '?'} done"]
        for key, word in (
            ("trialsRunning", "running"),
            ("trialsPruned", "pruned"),
            ("trialsFailed", "failed"),
        ):
            if s.get(key):
                bits.append(f"{s[key]} {word}")
        best = s.get("bestTrial") or {}
        value = s.get("bestValue", best.get("value"))
        if isinstance(value, int | float):
            bits.append(f"best {value:.4g}" + (f" ({best['name']})" if best.get("name") else ""))
        return ", ".join(bits)
    return ""


def overview(lists: Mapping[str, Sequence[Obj]], now: datetime.datetime) -> list[dict[str, Any]]:
    """One section per served kind, objects sorted by namespace and name, like `kubectl get modelops -A`."""
    sections = []
    for plural, items in lists.items():
        rows = []
        for obj in sorted(items, key=lambda o: (meta(o).get("namespace") or "", meta(o).get("name") or "")):
            ready = condition(obj, "Ready") or {}
            rows.append(
                {
                    "namespace": meta(obj).get("namespace") or "",
                    "name": meta(obj).get("name") or "",
                    "href": href(plural, obj),
                    "phase": st(obj).get("phase") or "",
                    "health": health(obj),
                    "ready": ready.get("status") or "",
                    "reason": ready.get("reason") or "",
                    "message": ready.get("message") or "",
                    "summary": _summary(plural, obj),
                    "age": age(meta(obj).get("creationTimestamp"), now),
                }
            )
        sections.append({"plural": plural, "kind": KINDS.get(plural, plural), "rows": rows})
    return sections


# -- TrainingJob ------------------------------------------------------------------------------------


def training_curves(history: Sequence[Obj]) -> dict[str, Any]:
    """Series over steps (training loss, each validation metric) and the restart markers."""
    loss: list[tuple[float, float]] = []
    metrics: dict[str, list[tuple[float, float]]] = {}
    markers: list[dict[str, Any]] = []
    previous_attempt = 0
    for i, p in enumerate(history):
        step = p.get("step")
        if step is None:
            continue
        attempt = int(p.get("attempt") or 0)
        if i > 0 and attempt != previous_attempt:
            resumed = step
            markers.append({"step": float(step), "label": f"restart {attempt}, resumed at step {resumed}"})
        previous_attempt = attempt
        if p.get("loss") is not None and math.isfinite(float(p["loss"])):
            loss.append((float(step), float(p["loss"])))
        for name, value in (p.get("metrics") or {}).items():
            if value is not None and math.isfinite(float(value)):
                metrics.setdefault(str(name), []).append((float(step), float(value)))
    losses = {"loss": loss, **{k: v for k, v in metrics.items() if "loss" in k}}
    others = {k: v for k, v in metrics.items() if "loss" not in k}
    return {"losses": losses, "others": others, "markers": markers, "points": len(history)}


def training(
    job: Obj,
    pods: Sequence[Obj],
    events: Sequence[Obj],
    now: datetime.datetime,
) -> dict[str, Any]:
    s, spec, m = st(job), job.get("spec") or {}, meta(job)
    p = s.get("progress") or {}
    finished = s.get("phase") in ("Succeeded", "Failed")
    eta = None if finished else p.get("etaSeconds")
    return {
        "kind": "TrainingJob",
        "namespace": m.get("namespace"),
        "name": m.get("name"),
        "phase": s.get("phase") or "Pending",
        "health": health(job),
        "percent": p.get("percent"),
        "progress": p,
        "eta": duration(eta) if eta is not None else "",
        "elapsed": _elapsed(s, now),
        "restarts": int(s.get("restarts") or 0),
        "curves": training_curves(s.get("history") or ()),
        "metrics": s.get("metrics") or {},
        "checkpoint": s.get("checkpoint") or {},
        "failure": s.get("failure") or {},
        "model_version": s.get("modelVersion"),
        "model": ((spec.get("output") or {}).get("modelName")) or m.get("name"),
        # A TuningJob's trial links back to its search (the operator labels every trial).
        "tuning_job": (m.get("labels") or {}).get("modelops.dev/tuningjob") or "",
        "conditions": conditions(job, now),
        "pods": pod_rows(pods, now),
        "events": event_rows(events, now),
        "spec": {
            "recipe": (spec.get("model") or {}).get("architecture") or spec.get("image") or "",
            "dataset": (spec.get("dataset") or {}).get("builtin")
            or ((spec.get("dataset") or {}).get("file") or {}).get("path")
            or "",
            "nodes": (spec.get("distributed") or {}).get("nodes", 1),
            "epochs": (spec.get("hyperparameters") or {}).get("epochs"),
        },
    }


def _elapsed(s: Mapping[str, Any], now: datetime.datetime) -> str:
    start = parse_time(s.get("startTime"))
    if start is None:
        return ""
    end = parse_time(s.get("completionTime")) or now
    return duration(max(0, int((end - start).total_seconds())))


def pod_rows(pods: Sequence[Obj], now: datetime.datetime) -> list[dict[str, Any]]:
    rows = []
    for pod in sorted(pods, key=lambda p: meta(p).get("name") or ""):
        ps = st(pod)
        statuses = ps.get("containerStatuses") or ()
        rows.append(
            {
                "name": meta(pod).get("name"),
                "phase": ps.get("phase") or "Pending",
                "ready": all(c.get("ready") for c in statuses) and bool(statuses),
                "restarts": sum(int(c.get("restartCount") or 0) for c in statuses),
                "ip": ps.get("podIP") or "",
                "node": (pod.get("spec") or {}).get("nodeName") or "",
                "age": age(meta(pod).get("creationTimestamp"), now),
                "labels": meta(pod).get("labels") or {},
            }
        )
    return rows


def event_rows(events: Sequence[Obj], now: datetime.datetime, limit: int = 30) -> list[dict[str, Any]]:
    def when(e: Obj) -> str:
        return str(e.get("lastTimestamp") or e.get("eventTime") or meta(e).get("creationTimestamp") or "")

    rows = []
    for e in sorted(events, key=when, reverse=True)[:limit]:
        rows.append(
            {
                "type": e.get("type") or "Normal",
                "reason": e.get("reason") or "",
                "message": e.get("message") or "",
                "count": int(e.get("count") or 1),
                "age": age(when(e), now),
            }
        )
    return rows


# -- a model: its versions side by side ------------------------------------------------------------


def _version_number(mv: Obj) -> int:
    return int(st(mv).get("version") or (mv.get("spec") or {}).get("version") or 0)


def model(
    name: str,
    versions: Sequence[Obj],
    services: Sequence[Obj],
    now: datetime.datetime,
    *,
    only: Sequence[str] = (),
    limit: int = DEFAULT_COMPARE,
) -> dict[str, Any]:
    """The versions of one model side by side, lineage, aliases.

    `only` (names or version numbers, or "all") picks the versions; without it, a model with more
    than `limit` versions shows the newest `limit` and every version holding an alias.
    """
    every = sorted((v for v in versions if (v.get("spec") or {}).get("model") == name), key=_version_number)
    if "all" in only:
        mine = every
    elif only:
        mine = [v for v in every if meta(v).get("name") in only or str(_version_number(v)) in only]
    elif len(every) > limit:
        newest = {id(v) for v in every[-limit:]}
        mine = [v for v in every if id(v) in newest or st(v).get("aliases")]
    else:
        mine = every
    metric_names = sorted({k for v in mine for k in (st(v).get("metrics") or {})})
    served: dict[str, list[dict[str, str]]] = {}
    for isvc in services:
        for track in ("stable", "canary"):
            mv = (st(isvc).get(track) or {}).get("modelVersion")
            if mv:
                served.setdefault(str(mv), []).append(
                    {
                        "name": str(meta(isvc).get("name")),
                        "track": track,
                        "href": href("inferenceservices", isvc),
                    }
                )
    columns: list[dict[str, Any]] = []
    for v in mine:
        s, spec = st(v), v.get("spec") or {}
        lineage = s.get("lineage") or {}
        artifact = s.get("artifact") or {}
        gates = (spec.get("promotion") or {}).get("gates") or []
        last_gates = next(
            (e.get("gates") for e in reversed(s.get("promotionHistory") or ()) if e.get("gates")), None
        )
        columns.append(
            {
                "name": meta(v).get("name"),
                "version": _version_number(v),
                "phase": s.get("phase") or "Pending",
                "health": health(v),
                "aliases": list(s.get("aliases") or ()),
                "metrics": {k: (s.get("metrics") or {}).get(k) for k in metric_names},
                "sha256": artifact.get("sha256") or "",
                "size": size(artifact.get("sizeBytes")),
                "format": artifact.get("format") or spec.get("format") or "",
                "age": age(meta(v).get("creationTimestamp"), now),
                "lineage": {
                    "dataset": lineage.get("datasetDigest") or "",
                    "training_job": lineage.get("trainingJob")
                    or ((spec.get("source") or {}).get("trainingJob") or {}).get("name")
                    or "",
                    "source": (spec.get("source") or {}).get("uri") or "",
                    # The best trial of a search is registered with the search's labels on it.
                    "tuning_job": (meta(v).get("labels") or {}).get("modelops.dev/tuningjob") or "",
                    "hyperparameters": lineage.get("hyperparameters") or {},
                    "served_by": served.get(str(meta(v).get("name")), []),
                },
                "gates": [
                    {
                        "metric": g.get("metric"),
                        "op": g.get("op", ">="),
                        "threshold": g.get("value"),
                        "value": (s.get("metrics") or {}).get(str(g.get("metric"))),
                        "passed": _gate_passed(g, s.get("metrics") or {}),
                    }
                    for g in gates
                ],
                "last_gate_results": last_gates or [],
                "conditions": conditions(v, now),
            }
        )
    timeline = sorted(
        (
            {
                "time": e.get("time") or "",
                "age": age(e.get("time"), now),
                "alias": e.get("alias") or "",
                "action": e.get("action") or "",
                "version": meta(v).get("name"),
                "previous": e.get("previousHolder") or "",
                "message": e.get("message") or "",
            }
            for v in mine
            for e in st(v).get("promotionHistory") or ()
        ),
        key=lambda e: str(e["time"]),
    )
    best: dict[str, str] = {}
    for k in metric_names:
        values = [(c["metrics"][k], c["name"]) for c in columns if c["metrics"][k] is not None]
        if values:
            pick = min(values) if "loss" in k or "error" in k else max(values)
            best[k] = pick[1]
    return {
        "name": name,
        "versions": columns,
        "all_names": [str(meta(v).get("name")) for v in every],
        "hidden": len(every) - len(columns),
        "metric_names": metric_names,
        "best": best,
        "timeline": timeline,
    }


def _gate_passed(gate: Mapping[str, Any], metrics: Mapping[str, Any]) -> bool | None:
    value = metrics.get(str(gate.get("metric")))
    threshold = gate.get("value")
    if value is None or threshold is None:
        return None
    op = gate.get("op", ">=")
    return bool(
        {
            ">=": value >= threshold,
            ">": value > threshold,
            "<=": value <= threshold,
            "<": value < threshold,
        }.get(op, False)
    )


# -- InferenceService ------------------------------------------------------------------------------


def counters(text: str) -> dict[str, Any]:
    """Requests by code and the latency histogram of one /metrics text (summed over labels)."""
    by_code: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == METRIC_REQUESTS:
                code = str(sample.labels.get("code", ""))
                by_code[code] = by_code.get(code, 0.0) + float(sample.value)
            elif sample.name == f"{METRIC_LATENCY}_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + float(sample.value)
    return {"by_code": by_code, "buckets": buckets}


def _quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower
            return le if count == below else lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def rates(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any], seconds: float
) -> dict[str, Any] | None:
    """Request rate, 5xx ratio and latency quantiles between two looks at the same pods' counters.

    None on the first look (a rate needs two) or after a counter reset (a restarted pod).
    """
    if previous is None or seconds <= 0:
        return None
    prev_codes, cur_codes = previous["by_code"], current["by_code"]
    if any(cur_codes.get(c, 0.0) < v for c, v in prev_codes.items()):
        return None
    codes = {c: cur_codes.get(c, 0.0) - prev_codes.get(c, 0.0) for c in cur_codes}
    total = sum(codes.values())
    errors = sum(v for c, v in codes.items() if c.startswith("5"))
    client = sum(v for c, v in codes.items() if c.startswith("4"))
    buckets = {le: v - previous["buckets"].get(le, 0.0) for le, v in current["buckets"].items()}
    p50, p99 = _quantile(0.5, buckets), _quantile(0.99, buckets)
    return {
        "rps": total / seconds,
        "requests": int(total),
        "error_ratio": errors / total if total else 0.0,
        "client_errors": int(client),
        "p50_ms": None if p50 is None else p50 * 1000,
        "p99_ms": None if p99 is None else p99 * 1000,
    }


def serving(
    isvc: Obj,
    pods: Sequence[Obj],
    events: Sequence[Obj],
    traffic_rates: Mapping[str, Any],
    now: datetime.datetime,
) -> dict[str, Any]:
    s, spec, m = st(isvc), isvc.get("spec") or {}, meta(isvc)
    history = []
    for r in reversed(s.get("rolloutHistory") or ()):
        history.append(
            {
                "model_version": r.get("modelVersion") or "",
                "version": r.get("version"),
                "outcome": r.get("outcome") or "",
                "reason": r.get("reason") or "",
                "trigger": r.get("trigger") or "",
                "replaced": r.get("replaced") or "",
                "start": r.get("startTime") or "",
                "age": age(r.get("startTime"), now),
                "took": _took(r.get("startTime"), r.get("endTime")),
                "analyses": [
                    {
                        "time": a.get("lastCheckTime") or "",
                        "age": age(a.get("lastCheckTime"), now),
                        "result": a.get("result") or "",
                        "message": a.get("message") or "",
                        "requests": a.get("requests"),
                        "success_rate": a.get("successRate"),
                        "p99_ms": a.get("p99LatencyMs"),
                        "traffic": a.get("trafficPercent"),
                    }
                    for a in r.get("analyses") or ()
                ],
            }
        )
    canary = s.get("canary") or {}
    analysis = spec.get("canary", {}).get("analysis") if isinstance(spec.get("canary"), dict) else None
    traffic = s.get("traffic") or {"stable": 100, "canary": 0}
    model_name = (spec.get("modelRef") or {}).get("model") or ""
    predictor = spec.get("predictor") or {}
    return {
        "kind": "InferenceService",
        # How it is served: the runtime the operator chose (by the version's format) or a custom
        # predictor image, the compute options, and the gRPC endpoint if the pods open one.
        "runtime": (s.get("stable") or {}).get("runtime") or ("custom" if predictor else ""),
        "predictor": {"image": predictor.get("image") or "", "port": predictor.get("port") or 8080}
        if predictor
        else None,
        "precision": spec.get("precision") or "",
        "quantization": spec.get("quantization") or "",
        "grpc_port": _grpc_port(pods),
        "namespace": m.get("namespace"),
        "name": m.get("name"),
        "phase": s.get("phase") or "Pending",
        "health": health(isvc),
        "url": s.get("url") or "",
        "model": model_name,
        "model_ref": spec.get("modelRef") or {},
        "replicas": s.get("replicas", 0),
        "ready_replicas": s.get("readyReplicas", 0),
        "traffic": {"stable": int(traffic.get("stable", 100)), "canary": int(traffic.get("canary", 0))},
        "stable": s.get("stable") or {},
        "canary": canary,
        "analysis_limits": analysis or {},
        "rollouts": history,
        "rates": {k: v for k, v in traffic_rates.items() if k != "series"},
        "rate_series": dict(traffic_rates.get("series") or {}),
        "conditions": conditions(isvc, now),
        "pods": pod_rows(pods, now),
        "events": event_rows(events, now),
    }


def _grpc_port(pods: Sequence[Obj]) -> int | None:
    """The container port named grpc of the serving pods (the Service publishes it under that name)."""
    for pod in pods:
        for c in (pod.get("spec") or {}).get("containers") or ():
            for port in c.get("ports") or ():
                if port.get("name") == "grpc" and port.get("containerPort"):
                    return int(port["containerPort"])
    return None


def _took(start: Any, end: Any) -> str:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return ""
    return duration(max(0, int((b - a).total_seconds())))


# -- backups ---------------------------------------------------------------------------------------


def backups(lists: Mapping[str, Sequence[Obj]], now: datetime.datetime) -> list[dict[str, Any]]:
    """Every object with a backup policy or kept backups, newest backup first within each."""
    out = []
    for plural, items in lists.items():
        for obj in items:
            b = st(obj).get("backup") or {}
            policy = (obj.get("spec") or {}).get("backup") or {}
            if not b and not policy:
                continue
            records = [
                {
                    "method": r.get("method") or "",
                    "name": r.get("name") or "",
                    "time": r.get("time") or "",
                    "age": age(r.get("time"), now),
                    "where": f"{r.get('claimName')}/{r.get('path')}" if r.get("claimName") else "",
                    "manifest": r.get("manifestSha256") or "",
                    "files": r.get("files"),
                    "size": size(r.get("sizeBytes")),
                    "ready": r.get("readyToUse"),
                }
                for r in sorted(b.get("backups") or (), key=lambda r: str(r.get("time") or ""), reverse=True)
            ]
            failure = b.get("lastFailure") or {}
            out.append(
                {
                    "kind": KINDS.get(plural, plural),
                    "namespace": meta(obj).get("namespace") or "",
                    "name": meta(obj).get("name") or "",
                    "href": href(plural, obj),
                    "schedule": policy.get("schedule") or "",
                    "methods": list(policy.get("methods") or ()),
                    "kept": int(b.get("kept") or len(records)),
                    "last_success": age(b.get("lastSuccessTime"), now),
                    "next_run": b.get("nextRunTime") or "",
                    "failure": {
                        "reason": failure.get("reason") or "",
                        "message": failure.get("message") or "",
                        "age": age(failure.get("time"), now),
                    }
                    if failure
                    else None,
                    "restore": b.get("restore") or None,
                    "records": records,
                }
            )
    return sorted(out, key=lambda o: (o["namespace"], o["kind"], o["name"]))


# -- TuningJob (generic over its status, so it works while that kind is still settling) -------------


def _trial_value(t: Mapping[str, Any]) -> float | None:
    for key in ("objectiveValue", "objective", "value"):
        v = t.get(key)
        if isinstance(v, int | float) and math.isfinite(float(v)):
            return float(v)
    return None


def _trial_params(t: Mapping[str, Any]) -> dict[str, Any]:
    params = t.get("parameters") or t.get("params") or t.get("assignments") or {}
    if isinstance(params, list):  # [{name, value}] as Katib writes them
        return {str(p.get("name")): p.get("value") for p in params if isinstance(p, Mapping)}
    return dict(params) if isinstance(params, Mapping) else {}


TRIAL_ORDER = {"Running": 0, "Pruned": 1, "Stopped": 2, "Failed": 3}


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def tuning(job: Obj, now: datetime.datetime) -> dict[str, Any]:
    """The search as `kubectl get tuningjobs` sums it up, then every trial: scored ones ranked by the
    objective (as status.leaderboard has them), the others after them by state, unranked."""
    s, spec, m = st(job), job.get("spec") or {}, meta(job)
    objective = spec.get("objective") or {}
    direction = str(objective.get("direction") or objective.get("goal") or "maximize").lower()
    log_scale = {
        str(p.get("name")): bool(p.get("log"))
        for p in spec.get("searchSpace") or ()
        if isinstance(p, Mapping)
    }
    trials = []
    for t in s.get("trials") or ():
        intermediate = [
            (float(p[0]), float(p[1]))
            for p in t.get("intermediate") or ()
            if isinstance(p, list | tuple) and len(p) == 2
        ]
        deleted = bool(t.get("deleted"))
        trials.append(
            {
                "name": t.get("name") or t.get("trainingJob") or str(t.get("number", "")),
                "number": t.get("number"),
                "state": t.get("state") or t.get("phase") or "",
                "value": _trial_value(t),
                "params": _trial_params(t),
                # A trial the cleanup policy deleted has no TrainingJob page left to link to.
                "training_job": "" if deleted else (t.get("trainingJob") or t.get("name") or ""),
                "deleted": deleted,
                "reason": t.get("reason") or "",
                "intermediate": intermediate,
                "last": intermediate[-1] if intermediate else None,
                "took": _took(t.get("startTime"), t.get("completionTime")),
            }
        )
    ranked = sorted(
        (t for t in trials if t["value"] is not None),
        key=lambda t: t["value"],
        reverse=not direction.startswith("min"),
    )
    for i, t in enumerate(ranked):
        t["rank"] = i + 1
    unranked = sorted(
        (t for t in trials if t["value"] is None),
        key=lambda t: (TRIAL_ORDER.get(t["state"], 9), -(t["number"] or 0)),
    )
    param_names = sorted({k for t in trials for k in t["params"]})
    scatter: dict[str, dict[str, Any]] = {}
    for p in param_names:
        scored = [
            (x, float(t["value"]), t["name"])
            for t in ranked
            if (x := _number(t["params"].get(p))) is not None
        ]
        # A pruned trial has no objective value: it is drawn at the last value it reported.
        pruned = [
            (x, t["last"][1], t["name"])
            for t in unranked
            if t["state"] == "Pruned" and t["last"] and (x := _number(t["params"].get(p))) is not None
        ]
        log = log_scale.get(p, False) and all(x > 0 for x, _, _ in scored + pruned)
        if scored or pruned:
            scatter[p] = {"scored": scored, "pruned": pruned, "log": log}
    best = s.get("bestTrial") or (ranked[0] if ranked else None)
    registration = spec.get("registration") or {}
    return {
        "kind": "TuningJob",
        "namespace": m.get("namespace"),
        "name": m.get("name"),
        "phase": s.get("phase") or "Pending",
        "health": health(job),
        "metric": objective.get("metric") or objective.get("objectiveMetricName") or "objective",
        "direction": "minimize" if direction.startswith("min") else "maximize",
        "counts": {
            "created": int(s.get("trialsCreated") or len(trials)),
            "max": spec.get("maxTrials"),
            "done": int(s.get("trialsSucceeded") or 0),
            "running": int(s.get("trialsRunning") or 0),
            "pruned": int(s.get("trialsPruned") or 0),
            "failed": int(s.get("trialsFailed") or 0),
        },
        "best_value": s.get("bestValue", (best or {}).get("value")),
        "best_name": (best or {}).get("name") or "",
        "algorithm": (spec.get("algorithm") or {}).get("name") or "",
        "pruner": (spec.get("pruner") or {}).get("name") or "",
        "elapsed": _took(s.get("startTime"), s.get("completionTime") or now.isoformat()),
        "model_version": s.get("modelVersion") or "",
        "model": registration.get("modelName") or "",
        "leaderboard": ranked + unranked,
        "param_names": param_names,
        "scatter": scatter,
        "best": best,
        # Learning curves of the best trials, of those still running and of those pruned (what the
        # pruner judged), per epoch.
        "curves": [
            (t["name"], t["intermediate"])
            for t in ranked[:5]
            + [t for t in unranked if t["state"] == "Running"][:3]
            + [t for t in unranked if t["state"] == "Pruned"][:3]
            if t["intermediate"]
        ],
        "conditions": conditions(job, now),
    }


def generic(plural: str, obj: Obj, now: datetime.datetime) -> dict[str, Any]:
    m = meta(obj)
    return {
        "kind": KINDS.get(plural, plural),
        "namespace": m.get("namespace"),
        "name": m.get("name"),
        "phase": st(obj).get("phase") or "",
        "health": health(obj),
        "conditions": conditions(obj, now),
    }
