"""Decoding of the Kubernetes protobuf encoding for the few kinds that clients send that way.

client-go's typed clients (helm's release storage, `kubectl create secret|configmap|namespace`) send
`application/vnd.kubernetes.protobuf` bodies and do not fall back to JSON. The field numbers below are
those of `k8s.io/api` and `k8s.io/apimachinery` generated.proto; other kinds are answered with 415.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from typing import Any

from . import errors

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# field number -> (json name, kind, nested schema name)
Schema = dict[int, tuple[str, str, str]]
SCHEMAS: dict[str, Schema] = {
    "Unknown": {1: ("typeMeta", "msg", "TypeMeta"), 2: ("raw", "raw", ""), 3: ("contentEncoding", "string", ""),
                4: ("contentType", "string", "")},
    "TypeMeta": {1: ("apiVersion", "string", ""), 2: ("kind", "string", "")},
    "Time": {1: ("seconds", "int", ""), 2: ("nanos", "int", "")},
    "ObjectMeta": {
        1: ("name", "string", ""), 2: ("generateName", "string", ""), 3: ("namespace", "string", ""),
        4: ("selfLink", "string", ""), 5: ("uid", "string", ""), 6: ("resourceVersion", "string", ""),
        7: ("generation", "int", ""), 8: ("creationTimestamp", "time", ""), 9: ("deletionTimestamp", "time", ""),
        10: ("deletionGracePeriodSeconds", "int", ""), 11: ("labels", "map_ss", ""),
        12: ("annotations", "map_ss", ""), 13: ("ownerReferences", "rep_msg", "OwnerReference"),
        14: ("finalizers", "rep_string", ""),
    },
    "OwnerReference": {1: ("kind", "string", ""), 3: ("name", "string", ""), 4: ("uid", "string", ""),
                       5: ("apiVersion", "string", ""), 6: ("controller", "bool", ""),
                       7: ("blockOwnerDeletion", "bool", "")},
    "Secret": {1: ("metadata", "msg", "ObjectMeta"), 2: ("data", "map_sb", ""), 3: ("type", "string", ""),
               4: ("stringData", "map_ss", ""), 5: ("immutable", "bool", "")},
    "ConfigMap": {1: ("metadata", "msg", "ObjectMeta"), 2: ("data", "map_ss", ""), 3: ("binaryData", "map_sb", ""),
                  4: ("immutable", "bool", "")},
    "Namespace": {1: ("metadata", "msg", "ObjectMeta"), 2: ("spec", "msg", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "rep_string", "")},
    "ServiceAccount": {1: ("metadata", "msg", "ObjectMeta"), 4: ("automountServiceAccountToken", "bool", "")},
    "DeleteOptions": {1: ("gracePeriodSeconds", "int", ""), 2: ("preconditions", "msg", "Preconditions"),
                      3: ("orphanDependents", "bool", ""), 4: ("propagationPolicy", "string", ""),
                      5: ("dryRun", "rep_string", "")},
    "Preconditions": {1: ("uid", "string", ""), 2: ("resourceVersion", "string", "")},
    "Eviction": {1: ("metadata", "msg", "ObjectMeta"), 2: ("deleteOptions", "msg", "DeleteOptions")},
    "TokenRequest": {1: ("metadata", "msg", "ObjectMeta"), 2: ("spec", "msg", "TokenRequestSpec")},
    "TokenRequestSpec": {1: ("audiences", "rep_string", ""), 3: ("boundObjectRef", "msg", "BoundObjectReference"),
                         4: ("expirationSeconds", "int", "")},
    "BoundObjectReference": {1: ("kind", "string", ""), 2: ("apiVersion", "string", ""), 3: ("name", "string", ""),
                             4: ("uid", "string", "")},
    # Access reviews: the local plane allows everything, so only their metadata matters.
    "SelfSubjectAccessReview": {1: ("metadata", "msg", "ObjectMeta")},
    "SelfSubjectRulesReview": {1: ("metadata", "msg", "ObjectMeta")},
    "SelfSubjectReview": {1: ("metadata", "msg", "ObjectMeta")},
}  # fmt: skip
KINDS = {("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Namespace"), ("v1", "ServiceAccount"),
         ("v1", "DeleteOptions"), ("meta.k8s.io/v1", "DeleteOptions"),
         ("authorization.k8s.io/v1", "SelfSubjectAccessReview"), ("authorization.k8s.io/v1", "SelfSubjectRulesReview"),
         ("authentication.k8s.io/v1", "SelfSubjectReview"), ("policy/v1", "Eviction"), ("authentication.k8s.io/v1", "TokenRequest")}  # fmt: skip


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire == 1:
            yield number, wire, buf[pos : pos + 8]
            pos += 8
        elif wire == 5:
            yield number, wire, buf[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def decode(buf: bytes, schema_name: str) -> dict[str, Any]:
    schema = SCHEMAS[schema_name]
    out: dict[str, Any] = {}
    for number, _, value in _fields(buf):
        if number not in schema:
            continue
        name, kind, nested = schema[number]
        if kind == "string":
            if value:  # gogo protobuf writes empty strings that JSON (omitempty) would leave out
                out[name] = bytes(value).decode()
        elif kind == "raw":
            out[name] = bytes(value)
        elif kind == "int":
            out[name] = _signed(int(value))
        elif kind == "bool":
            if value:
                out[name] = True
        elif kind == "msg":
            out[name] = decode(value, nested)
        elif kind == "rep_msg":
            out.setdefault(name, []).append(decode(value, nested))
        elif kind == "rep_string":
            out.setdefault(name, []).append(bytes(value).decode())
        elif kind == "time":
            t = decode(value, "Time")
            stamp = datetime.datetime.fromtimestamp(t.get("seconds", 0), datetime.UTC)
            out[name] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif kind in ("map_ss", "map_sb"):
            entry = {n: v for n, _, v in _fields(value)}
            key = bytes(entry.get(1, b"")).decode()
            raw = bytes(entry.get(2, b""))
            out.setdefault(name, {})[key] = (
                raw.decode() if kind == "map_ss" else base64.b64encode(raw).decode()
            )
    return out


def decode_object(raw: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object, or 415 for kinds this server cannot decode."""
    if not raw.startswith(MAGIC):
        raise errors.bad_request("provided protobuf body does not start with the Kubernetes prefix")
    try:
        unknown = decode(raw[len(MAGIC) :], "Unknown")
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"error decoding protobuf body: {exc}") from exc
    type_meta = unknown.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if (api_version, kind) not in KINDS:
        raise errors.unsupported_media(["application/json", "application/yaml"])
    try:
        obj = decode(unknown.get("raw", b""), kind)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"error decoding protobuf {kind}: {exc}") from exc
    if kind != "DeleteOptions":
        obj = {"apiVersion": api_version, "kind": kind, **obj}
    return obj
