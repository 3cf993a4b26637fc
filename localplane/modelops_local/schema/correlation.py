"""Pairing each part of an updated object with the same part of the stored object.

Two server behaviours need it: transition rules (`oldSelf` is the correlated old value) and validation
ratcheting (GA in 1.33: errors on a value that is unchanged since the stored object are not reported,
so a CRD can tighten its schema without breaking updates of old objects). Object fields correlate by
name and `x-kubernetes-list-type: map` items by their keys; items of other lists do not correlate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ABSENT", "correlated_items", "json_equal"]


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


def json_equal(a: Any, b: Any) -> bool:
    """Equality of decoded JSON where true is not 1 and 1.0 is 1, as Go's DeepEqual on unstructured sees it."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping | list) or isinstance(b, Mapping | list):
        return False
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a is None or b is None:
        return a is None and b is None
    return bool(a == b)


def _map_key(item: Any, keys: list[str], item_schema: Mapping[str, Any] | None) -> tuple[str, ...] | None:
    if not isinstance(item, Mapping):
        return None
    props = item_schema.get("properties") if item_schema else None
    props = props if isinstance(props, Mapping) else {}
    values = []
    for key in keys:
        if key in item:
            values.append(repr(item[key]))
        elif isinstance(props.get(key), Mapping) and "default" in props[key]:
            values.append(repr(props[key]["default"]))
        else:
            return None
    return tuple(values)


def correlated_items(schema: Mapping[str, Any] | None, value: list[Any], old: Any) -> list[Any]:
    """For each item of `value`, the old item with the same map keys, or ABSENT."""
    keys = [str(k) for k in (schema or {}).get("x-kubernetes-list-map-keys") or []]
    if not schema or schema.get("x-kubernetes-list-type") != "map" or not keys or not isinstance(old, list):
        return [ABSENT] * len(value)
    raw_items = schema.get("items")
    items = raw_items if isinstance(raw_items, Mapping) else None
    by_key: dict[tuple[str, ...], Any] = {}
    for candidate in old:
        key = _map_key(candidate, keys, items)
        if key is not None:
            by_key.setdefault(key, candidate)
    out = []
    for item in value:
        key = _map_key(item, keys, items)
        out.append(by_key.get(key, ABSENT) if key is not None else ABSENT)
    return out
