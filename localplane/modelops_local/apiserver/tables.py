"""Server-side printing (`meta.k8s.io/v1` Table) for `kubectl get`: CRD printer columns, a few built-ins."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from .resources import ResourceDef

Obj = dict[str, Any]


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def human_duration(seconds: float) -> str:
    """Like `k8s.io/apimachinery/pkg/util/duration.HumanDuration`."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y{d % 365}d" if d % 365 else f"{d // 365}y"


def age(stamp: Any) -> str:
    if not stamp:
        return "<unknown>"
    try:
        t = datetime.datetime.fromisoformat(str(stamp))
    except ValueError:
        return "<unknown>"
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return human_duration((datetime.datetime.now(datetime.UTC) - t).total_seconds())


# --- a small JSONPath, enough for printer columns -------------------------------------------------------

_TOKEN = re.compile(
    r"\.([A-Za-z0-9_\-$/]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*['\"]([^'\"]*)['\"]\)\]"
)


def jsonpath(obj: Any, path: str) -> list[Any]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    current = [obj]
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return []
        pos = m.end()
        nxt: list[Any] = []
        for value in current:
            if m.group(1) is not None:
                if isinstance(value, Mapping) and m.group(1) in value:
                    nxt.append(value[m.group(1)])
            elif m.group(2) is not None:
                if isinstance(value, list):
                    if m.group(2) == "*":
                        nxt.extend(value)
                    elif int(m.group(2)) < len(value):
                        nxt.append(value[int(m.group(2))])
            else:
                if isinstance(value, list):
                    for item in value:
                        found = jsonpath(item, "." + m.group(3))
                        if found and str(found[0]) == m.group(4):
                            nxt.append(item)
        current = nxt
    return current


def _cell(values: list[Any], typ: str) -> Any:
    if not values:
        return None
    value = values[0]
    if typ == "date":
        return age(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


# --- columns ----------------------------------------------------------------------------------------------

Column = tuple[str, str, Callable[[Obj], Any]]  # name, type, value


def _meta(o: Obj) -> Obj:
    m = o.get("metadata")
    return m if isinstance(m, dict) else {}


def _pod_ready(o: Obj) -> str:
    statuses = (o.get("status") or {}).get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(o: Obj) -> str:
    if _meta(o).get("deletionTimestamp"):
        return "Terminating"
    status = o.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason") and status.get("phase") not in ("Running",):
            reason = state["terminated"]["reason"]
    return str(reason)


def _ports(o: Obj) -> str:
    ports = (o.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _job_status(o: Obj) -> str:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed", "Suspended"):
            return str(c["type"])
    return "Running"


def _event_object(o: Obj) -> str:
    inv = o.get("involvedObject") or o.get("regarding") or {}
    return f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}"


_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


def _hpa_targets(o: Obj) -> str:
    current = {m.get("resource", {}).get("name"): m for m in (o.get("status") or {}).get("currentMetrics") or []
               if m.get("type") == "Resource"}  # fmt: skip
    out = []
    for metric in (o.get("spec") or {}).get("metrics") or []:
        if metric.get("type") != "Resource":
            out.append("<unknown>/" + str(metric.get("type", "")))
            continue
        name = (metric.get("resource") or {}).get("name")
        target = (metric.get("resource") or {}).get("target") or {}
        now = (current.get(name) or {}).get("resource", {}).get("current", {}).get("averageUtilization")
        shown = f"{now}%" if now is not None else "<unknown>"
        out.append(f"{name}: {shown}/{target.get('averageUtilization', '?')}%")
    return ", ".join(out) or "<none>"


def _endpoints(o: Obj) -> str:
    addrs = [
        f"{a.get('ip')}:{p.get('port')}"
        for subset in o.get("subsets") or []
        for a in subset.get("addresses") or []
        for p in subset.get("ports") or [{}]
    ]
    if not addrs:
        return "<none>"
    return ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")


AGE: Column = ("Age", "string", lambda o: age(_meta(o).get("creationTimestamp")))
BUILTIN_COLUMNS: dict[str, list[Column]] = {
    "/pods": [
        ("Ready", "string", _pod_ready),
        ("Status", "string", _pod_status),
        ("Restarts", "string", lambda o: str(sum(int(s.get("restartCount", 0))
                                                 for s in (o.get("status") or {}).get("containerStatuses") or []))),
        AGE,
        ("IP", "string", lambda o: (o.get("status") or {}).get("podIP") or "<none>"),
        ("Node", "string", lambda o: (o.get("spec") or {}).get("nodeName") or "<none>"),
    ],
    "apps/deployments": [
        ("Ready", "string", lambda o: f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                                      f"{(o.get('spec') or {}).get('replicas', 0)}"),
        ("Up-to-date", "integer", lambda o: (o.get("status") or {}).get("updatedReplicas", 0)),
        ("Available", "integer", lambda o: (o.get("status") or {}).get("availableReplicas", 0)),
        AGE,
    ],
    "apps/replicasets": [
        ("Desired", "integer", lambda o: (o.get("spec") or {}).get("replicas", 0)),
        ("Current", "integer", lambda o: (o.get("status") or {}).get("replicas", 0)),
        ("Ready", "integer", lambda o: (o.get("status") or {}).get("readyReplicas", 0)),
        AGE,
    ],
    "/services": [
        ("Type", "string", lambda o: (o.get("spec") or {}).get("type", "ClusterIP")),
        ("Cluster-IP", "string", lambda o: (o.get("spec") or {}).get("clusterIP") or "<none>"),
        ("External-IP", "string", lambda o: "<none>"),
        ("Port(s)", "string", _ports),
        AGE,
    ],
    "/namespaces": [("Status", "string", lambda o: (o.get("status") or {}).get("phase", "")), AGE],
    "/nodes": [
        ("Status", "string", lambda o: next(("Ready" if c.get("status") == "True" else "NotReady"
                                             for c in (o.get("status") or {}).get("conditions") or []
                                             if c.get("type") == "Ready"), "Unknown")),
        ("Roles", "string", lambda o: ",".join(sorted(k.split("/", 1)[1] for k in _meta(o).get("labels") or {}
                                                      if k.startswith("node-role.kubernetes.io/"))) or "<none>"),
        AGE,
        ("Version", "string", lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")),
    ],
    "batch/jobs": [
        ("Status", "string", _job_status),
        ("Completions", "string", lambda o: f"{(o.get('status') or {}).get('succeeded', 0)}/"
                                            f"{(o.get('spec') or {}).get('completions', 1)}"),
        AGE,
    ],
    "/persistentvolumeclaims": [
        ("Status", "string", lambda o: (o.get("status") or {}).get("phase", "")),
        ("Volume", "string", lambda o: (o.get("spec") or {}).get("volumeName", "")),
        AGE,
    ],
    "/events": [
        ("Last Seen", "string", lambda o: age(o.get("lastTimestamp") or o.get("eventTime")
                                              or _meta(o).get("creationTimestamp"))),
        ("Type", "string", lambda o: o.get("type", "")),
        ("Reason", "string", lambda o: o.get("reason", "")),
        ("Object", "string", _event_object),
        ("Message", "string", lambda o: o.get("message") or o.get("note") or ""),
    ],
    "apiextensions.k8s.io/customresourcedefinitions": [
        ("Created At", "string", lambda o: _meta(o).get("creationTimestamp")),
    ],
    "autoscaling/horizontalpodautoscalers": [
        ("Reference", "string", lambda o: "{kind}/{name}".format(**{"kind": "", "name": "",
                                          **((o.get("spec") or {}).get("scaleTargetRef") or {})})),
        ("Targets", "string", _hpa_targets),
        ("MinPods", "integer", lambda o: (o.get("spec") or {}).get("minReplicas", 1)),
        ("MaxPods", "integer", lambda o: (o.get("spec") or {}).get("maxReplicas", 0)),
        ("Replicas", "integer", lambda o: (o.get("status") or {}).get("currentReplicas", 0)),
        AGE,
    ],
    "policy/poddisruptionbudgets": [
        ("Min Available", "string", lambda o: str((o.get("spec") or {}).get("minAvailable", "N/A"))),
        ("Max Unavailable", "string", lambda o: str((o.get("spec") or {}).get("maxUnavailable", "N/A"))),
        ("Allowed Disruptions", "integer", lambda o: (o.get("status") or {}).get("disruptionsAllowed", 0)),
        AGE,
    ],
    "batch/cronjobs": [
        ("Schedule", "string", lambda o: (o.get("spec") or {}).get("schedule", "")),
        ("Timezone", "string", lambda o: (o.get("spec") or {}).get("timeZone") or "<none>"),
        ("Suspend", "boolean", lambda o: bool((o.get("spec") or {}).get("suspend"))),
        ("Active", "integer", lambda o: len((o.get("status") or {}).get("active") or [])),
        ("Last Schedule", "string", lambda o: age((o.get("status") or {}).get("lastScheduleTime"))
         if (o.get("status") or {}).get("lastScheduleTime") else "<none>"),
        AGE,
    ],
    "apps/statefulsets": [
        ("Ready", "string", lambda o: f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                                      f"{(o.get('spec') or {}).get('replicas', 0)}"),
        AGE,
    ],
    "/endpoints": [
        ("Endpoints", "string", _endpoints),
        AGE,
    ],
    "/persistentvolumes": [
        ("Capacity", "string", lambda o: ((o.get("spec") or {}).get("capacity") or {}).get("storage", "")),
        ("Access Modes", "string", lambda o: ",".join(_MODES.get(m, m)
                                                       for m in (o.get("spec") or {}).get("accessModes") or [])),
        ("Reclaim Policy", "string", lambda o: (o.get("spec") or {}).get("persistentVolumeReclaimPolicy", "")),
        ("Status", "string", lambda o: (o.get("status") or {}).get("phase", "")),
        ("Claim", "string", lambda o: "{namespace}/{name}".format(**{"namespace": "", "name": "",
                                      **((o.get("spec") or {}).get("claimRef") or {})})),
        AGE,
    ],
    "coordination.k8s.io/leases": [
        ("Holder", "string", lambda o: (o.get("spec") or {}).get("holderIdentity", "")),
        AGE,
    ],
    "/configmaps": [("Data", "integer", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})), AGE],
    "/secrets": [("Type", "string", lambda o: o.get("type", "")),
                 ("Data", "integer", lambda o: len(o.get("data") or {})), AGE],
}  # fmt: skip


def columns(rd: ResourceDef) -> list[tuple[str, str, str, int, Callable[[Obj], Any]]]:
    """(name, type, format, priority, value) per column."""
    out: list[tuple[str, str, str, int, Callable[[Obj], Any]]] = []
    if rd.is_custom:
        printer = rd.crd_version().get("additionalPrinterColumns")
        if not printer:
            return [("Name", "string", "name", 0, lambda o: _meta(o).get("name")),
                    ("Age", "date", "", 0, lambda o: age(_meta(o).get("creationTimestamp")))]  # fmt: skip
        out.append(("Name", "string", "name", 0, lambda o: _meta(o).get("name")))
        for col in printer:
            path, typ = str(col.get("jsonPath", "")), str(col.get("type", "string"))
            out.append((
                str(col.get("name", "")), typ, str(col.get("format", "")), int(col.get("priority", 0)),
                (lambda p, t: lambda o: _cell(jsonpath(o, p), t))(path, typ),
            ))  # fmt: skip
        return out
    out.append(("Name", "string", "name", 0, lambda o: _meta(o).get("name")))
    skey = "/events" if rd.group == "events.k8s.io" else rd.storage_key
    builtin = BUILTIN_COLUMNS.get(skey, [AGE])
    for i, (name, typ, fn) in enumerate(builtin):
        priority = 1 if skey == "/pods" and i >= 4 else 0
        if typ == "date":
            out.append((name, "string", "", priority, (lambda f: lambda o: age(f(o)))(fn)))
        else:
            out.append((name, typ, "", priority, fn))
    return out


def table(
    rd: ResourceDef, objs: list[Obj], rv: int, query: Mapping[str, str], with_columns: bool = True
) -> Obj:
    cols = columns(rd)
    include = query.get("includeObject", "Metadata")
    rows = []
    for o in objs:
        row: Obj = {"cells": [fn(o) for *_, fn in cols]}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": _meta(o)}  # fmt: skip
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(rv)},
        "columnDefinitions": [
            {"name": n, "type": t, "format": f, "description": n, "priority": p} for n, t, f, p, _ in cols
        ]
        if with_columns
        else [],
        "rows": rows,
    }
