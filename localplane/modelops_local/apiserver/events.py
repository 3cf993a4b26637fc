"""Events are stored once, as core/v1, and served through events.k8s.io/v1 by converting field names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]

# (core/v1 field, events.k8s.io/v1 field)
_RENAMES = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
]
_SAME = ["metadata", "reason", "type", "eventTime", "series", "action", "related", "reportingInstance"]


def to_core(obj: Obj) -> Obj:
    out: Obj = {"apiVersion": "v1", "kind": "Event"}
    for key in _SAME:
        if key in obj:
            out[key] = obj[key]
    for core, new in _RENAMES:
        if new in obj:
            out[core] = obj[new]
    if "series" in obj and isinstance(obj["series"], dict):
        out["series"] = {
            "count": obj["series"].get("count"),
            "lastObservedTime": obj["series"].get("lastObservedTime"),
        }
    out.setdefault("involvedObject", {})
    return out


def from_core(obj: Mapping[str, Any]) -> Obj:
    out: Obj = {"apiVersion": "events.k8s.io/v1", "kind": "Event"}
    for key in _SAME:
        if key in obj:
            out[key] = obj[key]
    for core, new in _RENAMES:
        if core in obj:
            out[new] = obj[core]
    if not out.get("reportingController") and isinstance(obj.get("source"), dict):
        out["reportingController"] = obj["source"].get("component", "")
    return out
