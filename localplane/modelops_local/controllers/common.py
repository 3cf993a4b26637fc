"""Small helpers every controller of the local plane shares.

Objects are plain JSON dicts as the API server returns them; these helpers read them the way the
upstream controllers do (label selectors, pod readiness, owner references, int-or-percent values,
conditions, resource quantities), so each controller module can stay about its own resource.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

Obj = dict[str, Any]

PAUSED_FOREVER = float("inf")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def fmt_time(t: dt.datetime) -> str:
    """RFC 3339 with second precision, as Kubernetes metav1.Time serialises."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def meta(obj: Mapping[str, Any]) -> Obj:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name", ""))


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("namespace", ""))


def uid_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("uid", ""))


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = meta(obj).get("labels")
    return dict(labels) if isinstance(labels, dict) else {}


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    ann = meta(obj).get("annotations")
    return dict(ann) if isinstance(ann, dict) else {}


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def creation_time(obj: Mapping[str, Any]) -> dt.datetime:
    return parse_time(meta(obj).get("creationTimestamp")) or dt.datetime.fromtimestamp(0, dt.UTC)


def generation_of(obj: Mapping[str, Any]) -> int:
    return int(meta(obj).get("generation") or 0)


# --- label selectors -------------------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics. An empty selector matches everything; None matches nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key", "")
        op = expr.get("operator", "")
        values = expr.get("values") or []
        if op == "In":
            if key not in labels or labels[key] not in values:
                return False
        elif op == "NotIn":
            if key in labels and labels[key] in values:
                return False
        elif op == "Exists":
            if key not in labels:
                return False
        elif op == "DoesNotExist":
            if key in labels:
                return False
        else:
            return False
    return True


def parse_selector(text: str) -> Obj:
    """A label selector string ("a=b,c!=d,e in (x,y),!f") as a metav1.LabelSelector."""
    match_labels: dict[str, str] = {}
    exprs: list[Obj] = []
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    for raw in (p.strip() for p in parts):
        if not raw:
            continue
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s*\((.*)\)$", raw)
        if m:
            values = [v.strip() for v in m.group(3).split(",") if v.strip()]
            exprs.append(
                {"key": m.group(1), "operator": "In" if m.group(2) == "in" else "NotIn", "values": values}
            )
        elif "!=" in raw:
            key, value = (x.strip() for x in raw.split("!=", 1))
            exprs.append({"key": key, "operator": "NotIn", "values": [value]})
        elif "=" in raw:
            key, value = (x.strip() for x in raw.replace("==", "=").split("=", 1))
            match_labels[key] = value
        elif raw.startswith("!"):
            exprs.append({"key": raw[1:].strip(), "operator": "DoesNotExist"})
        else:
            exprs.append({"key": raw, "operator": "Exists"})
    out: Obj = {}
    if match_labels:
        out["matchLabels"] = match_labels
    if exprs:
        out["matchExpressions"] = exprs
    return out


def selector_is_empty(selector: Mapping[str, Any] | None) -> bool:
    return not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions"))


def service_selector_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """Service selectors are plain maps; an empty map selects nothing (the Service has no endpoints)."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


# --- owner references ------------------------------------------------------------------------


def controller_ref(obj: Mapping[str, Any]) -> Obj | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == uid_of(owner)


def owner_reference(owner: Mapping[str, Any], api_version: str, kind: str) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


# --- pods ------------------------------------------------------------------------------------


def pod_phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def pod_is_terminal(pod: Mapping[str, Any]) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def pod_is_active(pod: Mapping[str, Any]) -> bool:
    """Counts toward a controller's replicas: neither finished nor being deleted."""
    return not pod_is_terminal(pod) and not is_deleting(pod)


def pod_condition(pod: Mapping[str, Any], ctype: str) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_ready_since(pod: Mapping[str, Any]) -> dt.datetime | None:
    cond = pod_condition(pod, "Ready")
    if cond is None or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime")) or creation_time(pod)


def pod_is_available(pod: Mapping[str, Any], min_ready_seconds: int, at: dt.datetime) -> bool:
    since = pod_ready_since(pod)
    if since is None:
        return False
    if min_ready_seconds <= 0:
        return True
    return (at - since).total_seconds() >= min_ready_seconds


def pod_restart_count(pod: Mapping[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def available_in(pods: Iterable[Mapping[str, Any]], min_ready_seconds: int, at: dt.datetime) -> float:
    """Seconds until the next not-yet-available ready pod becomes available (inf when none)."""
    wait = PAUSED_FOREVER
    for pod in pods:
        since = pod_ready_since(pod)
        if since is None or min_ready_seconds <= 0:
            continue
        left = min_ready_seconds - (at - since).total_seconds()
        if left > 0:
            wait = min(wait, left)
    return wait


# --- int-or-string -------------------------------------------------------------------------


def scaled_value(value: int | str | None, total: int, round_up: bool, default: int | str = 0) -> int:
    """intstr.GetScaledValueFromIntOrPercent: "25%" of total, rounded as the caller needs."""
    if value is None:
        value = default
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        try:
            pct = float(text[:-1])
        except ValueError as exc:
            raise ValueError(f"invalid percentage {value!r}: use an integer or a string like '25%'") from exc
        raw = pct * total / 100.0
        return math.ceil(raw) if round_up else math.floor(raw)
    try:
        return int(text)
    except ValueError as exc:
        raise ValueError(f"invalid value {value!r}: use an integer or a string like '25%'") from exc


# --- conditions --------------------------------------------------------------------------------


def get_condition(status: Mapping[str, Any], ctype: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def set_condition(
    conditions: list[Obj],
    ctype: str,
    status: str,
    reason: str,
    message: str,
    at: dt.datetime,
    with_update_time: bool = False,
) -> list[Obj]:
    """Upsert a condition; lastTransitionTime moves only when the status changes (API conventions)."""
    stamp = fmt_time(at)
    out: list[Obj] = []
    found = False
    for cond in conditions:
        if cond.get("type") != ctype:
            out.append(cond)
            continue
        found = True
        new = dict(cond)
        if cond.get("status") != status:
            new["lastTransitionTime"] = stamp
        new.update(status=status, reason=reason, message=message)
        if with_update_time:
            new["lastUpdateTime"] = stamp
        out.append(new)
    if not found:
        new = {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": stamp,
        }
        if with_update_time:
            new["lastUpdateTime"] = stamp
        out.append(new)
    return out


# --- quantities ------------------------------------------------------------------------------

_SUFFIX = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def parse_quantity(value: str | int | float) -> float:
    """resource.Quantity as a float ("250m" -> 0.25, "1Gi" -> 1073741824)."""
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"invalid quantity {value!r}: use a number with an optional suffix like 250m or 1Gi")
    return float(match.group(1)) * _SUFFIX[match.group(2) or ""]


def format_milli(value: float) -> str:
    """A quantity in the canonical form metrics use: whole units when exact, else millis."""
    milli = round(value * 1000)
    if milli % 1000 == 0:
        return str(milli // 1000)
    return f"{milli}m"
