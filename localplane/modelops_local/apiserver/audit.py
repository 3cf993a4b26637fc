"""An audit log of every API request, so what a component really does can be read back (and turned into RBAC).

Each request becomes one JSON line in `DIR/audit.log`, an `audit.k8s.io/v1` Event at level Metadata
as kube-apiserver writes with `--audit-log-path`, so the tools that read real audit logs (audit2rbac,
jq recipes) read this one. The verb, resource, subresource, namespace and name come from
`request_info`, a port of kube-apiserver's RequestInfoFactory: the same values RBAC authorizes, so a
role derived from the log is the role the component needs on a real cluster.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .serviceaccounts import Identity

API_PREFIXES: Final = frozenset({"api", "apis"})
# Verbs that appear as the first path segment after the version (`/api/v1/watch/...`).
_SPECIAL_VERBS: Final = frozenset({"proxy", "watch"})
# For these, segments after the name are the proxied path, not a subresource.
_SPECIAL_VERBS_NO_SUBRESOURCES: Final = frozenset({"proxy"})
# `/namespaces/{ns}/status` is the namespace's own subresource, not a resource called "status".
_NAMESPACE_SUBRESOURCES: Final = frozenset({"status", "finalize"})
_METHOD_VERBS: Final = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@dataclass(frozen=True)
class RequestInfo:
    """What a request does, in the terms RBAC rules are written in."""

    is_resource_request: bool
    verb: str
    path: str
    api_prefix: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def request_info(method: str, path: str, query: Mapping[str, str] | None = None) -> RequestInfo:
    """Classify a request exactly as kube-apiserver's RequestInfoFactory does.

    `query` is the decoded query string (first value per key). Non-resource paths (`/healthz`,
    `/api`, `/apis/apps/v1`, `/openapi/v3`) get the lower-cased HTTP method as verb. For resources:
    POST create, GET/HEAD get, PUT update, PATCH patch, DELETE delete; a GET without a name is list,
    or watch with `?watch=` anything but `0`/`false` or the `/watch/` path prefix; a DELETE without a
    name is deletecollection; a list or watch with `fieldSelector=metadata.name=X` names X.
    """
    query = query or {}
    info: dict[str, Any] = {"is_resource_request": False, "verb": method.lower(), "path": path, "name": ""}
    parts = [p for p in path.strip("/").split("/") if p != ""] if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in API_PREFIXES:
        return RequestInfo(**info)
    info["api_prefix"] = parts[0]
    parts = parts[1:]
    if info["api_prefix"] == "apis":
        if len(parts) < 3:
            return RequestInfo(**info)
        info["api_group"] = parts[0]
        parts = parts[1:]
    info["is_resource_request"] = True
    info["api_version"] = parts[0]
    parts = parts[1:]
    if parts[0] in _SPECIAL_VERBS:
        if len(parts) < 2:
            # kube-apiserver rejects this form; the log still records what was asked.
            info["verb"] = parts[0]
            return RequestInfo(**info)
        info["verb"] = parts[0]
        parts = parts[1:]
    else:
        info["verb"] = _METHOD_VERBS.get(method.upper(), "")
    if parts[0] == "namespaces" and len(parts) > 1:
        info["namespace"] = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    if len(parts) >= 3 and info["verb"] not in _SPECIAL_VERBS_NO_SUBRESOURCES:
        info["subresource"] = parts[2]
    if len(parts) >= 2:
        info["name"] = parts[1]
    info["resource"] = parts[0]
    if not info["name"] and info["verb"] == "get":
        watch = query.get("watch")
        info["verb"] = "watch" if watch is not None and watch.lower() not in ("0", "false") else "list"
        named = _exact_name(query.get("fieldSelector", ""))
        if named:
            info["name"] = named
    if not info["name"] and info["verb"] == "delete":
        info["verb"] = "deletecollection"
    return RequestInfo(**info)


def _exact_name(selector: str) -> str:
    """X when a field selector requires `metadata.name=X` (and X is a valid path segment)."""
    for term in _split_unescaped(selector, ","):
        for op in ("==", "="):
            key, sep, value = term.partition(op)
            if sep and not key.endswith("!"):
                if key.strip() == "metadata.name":
                    name = value.replace("\\,", ",").replace("\\=", "=").replace("\\\\", "\\")
                    if name not in (".", "..") and "/" not in name and "%" not in name:
                        return name
                break
    return ""


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == sep:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return [t for t in out if t]


def _timestamp(moment: datetime) -> str:
    # Formatted by hand: strftime was a noticeable share of a GET's CPU, and every request logs two.
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
        f"{moment.second:02d}.{moment.microsecond:06d}Z"
    )


def audit_event(
    info: RequestInfo,
    *,
    user: Identity | None,
    code: int,
    request_uri: str,
    source_ip: str = "",
    user_agent: str = "",
    received: datetime | None = None,
    completed: datetime | None = None,
    audit_id: str | None = None,
    stage: str = "ResponseComplete",
) -> dict[str, Any]:
    """One `audit.k8s.io/v1` Event at level Metadata (stage ResponseComplete, or ResponseStarted)."""
    completed = completed or datetime.now(UTC)
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id or str(uuid.uuid4()),
        "stage": stage,
        "requestURI": request_uri,
        "verb": info.verb,
        "user": user.user_info() if user is not None else {"username": "system:anonymous",
                                                             "groups": ["system:unauthenticated"]},
        "sourceIPs": [source_ip] if source_ip else [],
    }  # fmt: skip
    if user_agent:
        event["userAgent"] = user_agent
    if info.is_resource_request:
        ref: dict[str, str] = {"resource": info.resource}
        if info.namespace:
            ref["namespace"] = info.namespace
        if info.name:
            ref["name"] = info.name
        ref["apiGroup"] = info.api_group
        ref["apiVersion"] = info.api_version
        if info.subresource:
            ref["subresource"] = info.subresource
        event["objectRef"] = ref
    event["responseStatus"] = {"metadata": {}, "code": code}
    stamp = _timestamp(completed)
    event["requestReceivedTimestamp"] = stamp if received is None else _timestamp(received)
    event["stageTimestamp"] = stamp
    return event


class AuditLog:
    """Appends one JSON line per request to a file (`DIR/audit.log`), rotating at `max_bytes`.

    Every line is flushed as written, so the log is complete up to the last request even when the
    server is killed. Safe to call from several threads.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 100 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def record(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        *,
        user: Identity | None,
        code: int,
        request_uri: str | None = None,
        source_ip: str = "",
        user_agent: str = "",
        received: datetime | None = None,
        stage: str = "ResponseComplete",
        audit_id: str | None = None,
    ) -> dict[str, Any]:
        """Write the event of one request and return it.

        Call once per request when its response status is known. A watch can last for the life of
        its client, so (as kube-apiserver does) also record it with `stage="ResponseStarted"` when
        its response begins, then complete it with the same `audit_id`; otherwise a running
        component's watches appear only once they end. `user` is None when authentication failed.
        """
        info = request_info(method, path, query)
        event = audit_event(
            info,
            user=user,
            code=code,
            request_uri=request_uri or path,
            source_ip=source_ip,
            user_agent=user_agent,
            received=received,
            audit_id=audit_id,
            stage=stage,
        )
        self.write(event)
        return event

    def write(self, event: Mapping[str, Any]) -> None:
        # One os.write per line (O_APPEND): as durable as a flushed file object, without its layers.
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            fd = self._open()
            if self._size and self._size + len(line) > self.max_bytes:
                os.close(fd)
                self._fd = None
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                fd = self._open()
            written = os.write(fd, line)
            while written < len(line):  # a short write (disk nearly full, signal): finish the line
                written += os.write(fd, line[written:])
            self._size += len(line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All events of an audit log file (a test's and a later RBAC generator's reader)."""
    events: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                events.append(json.loads(line))
    return events
