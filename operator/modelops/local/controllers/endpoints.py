"""Endpoints controller: which pod addresses stand behind each Service.

Follows pkg/controller/endpoint upstream: pods matching the Service's selector that have an IP and are
not finished (nor being deleted, unless `publishNotReadyAddresses`) become addresses, ready ones under
`addresses` and the rest under `notReadyAddresses`; a named `targetPort` is resolved per pod from its
container ports, so pods that name the port differently land in different subsets. Services without a
selector keep whatever Endpoints their owner writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from . import common as c
from .actions import ENDPOINTS, Create, Delete, Patch, Result

Obj = dict[str, Any]

MANAGED = "modelops.dev/endpoints-controller"


def resolve_target_port(svc_port: Obj, pod: Obj) -> int | None:
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    text = str(target)
    if text.isdigit():
        return int(text)
    protocol = svc_port.get("protocol", "TCP")
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == text and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def subsets_for(svc: Obj, pods: Sequence[Obj]) -> list[Obj]:
    spec = svc.get("spec") or {}
    selector = spec.get("selector") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[str, tuple[list[Obj], list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not c.service_selector_matches(selector, c.labels_of(pod)):
            continue
        status = pod.get("status") or {}
        ip = status.get("podIP")
        if not ip or c.pod_is_terminal(pod) or (c.is_deleting(pod) and not publish):
            continue
        ports: list[Obj] = []
        for sp in spec.get("ports") or []:
            target = resolve_target_port(sp, pod)
            if target is None:
                continue
            port: Obj = {"port": target, "protocol": sp.get("protocol", "TCP")}
            if sp.get("name"):
                port["name"] = sp["name"]
            ports.append(port)
        if spec.get("ports") and not ports:
            continue
        address: Obj = {
            "ip": ip,
            "targetRef": {
                "kind": "Pod",
                "namespace": c.namespace_of(pod),
                "name": c.name_of(pod),
                "uid": c.uid_of(pod),
            },
        }
        pspec = pod.get("spec") or {}
        if pspec.get("nodeName"):
            address["nodeName"] = pspec["nodeName"]
        if pspec.get("hostname") and pspec.get("subdomain") == c.name_of(svc):
            address["hostname"] = pspec["hostname"]
        key = json.dumps(sorted(ports, key=lambda p: (p.get("name", ""), p["port"])), sort_keys=True)
        ready_list, not_ready, _ = groups.setdefault(key, ([], [], ports))
        (ready_list if publish or c.pod_is_ready(pod) else not_ready).append(address)
    subsets: list[Obj] = []
    for _, (ready_list, not_ready, ports) in sorted(groups.items()):
        subset: Obj = {}
        if ready_list:
            subset["addresses"] = sorted(ready_list, key=lambda a: a["ip"])
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=lambda a: a["ip"])
        if ports:
            subset["ports"] = sorted(ports, key=lambda p: (p.get("name", ""), p["port"]))
        subsets.append(subset)
    return subsets


def reconcile(svc: Obj, pods: Sequence[Obj], current: Obj | None) -> Result:
    result = Result()
    spec = svc.get("spec") or {}
    if c.is_deleting(svc) or not spec.get("selector") or spec.get("type") == "ExternalName":
        return result
    ns, name = c.namespace_of(svc), c.name_of(svc)
    subsets = subsets_for(svc, pods)
    labels = c.labels_of(svc)
    if spec.get("clusterIP") == "None":
        labels["service.kubernetes.io/headless"] = ""
    if current is None:
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": {MANAGED: "true"}},
            "subsets": subsets,
        }
        result.actions.append(Create(ENDPOINTS, ns, body))
    elif (current.get("subsets") or []) != subsets or c.labels_of(current) != labels:
        patch: Obj = {"subsets": subsets, "metadata": {"labels": labels, "annotations": {MANAGED: "true"}}}
        stale = {k: None for k in c.labels_of(current) if k not in labels}
        patch["metadata"]["labels"] = {**stale, **labels}
        result.actions.append(Patch(ENDPOINTS, ns, name, patch))
    return result


def orphaned(endpoints: Sequence[Obj], services: Sequence[Obj]) -> Result:
    """Endpoints this controller wrote whose Service is gone (upstream deletes them the same way)."""
    result = Result()
    live = {(c.namespace_of(s), c.name_of(s)) for s in services}
    for ep in endpoints:
        key = (c.namespace_of(ep), c.name_of(ep))
        if key not in live and c.annotations_of(ep).get(MANAGED) == "true" and not c.is_deleting(ep):
            result.actions.append(Delete(ENDPOINTS, key[0], key[1], c.uid_of(ep)))
    return result


def backends(endpoints: Obj | None, port_name: str) -> list[tuple[str, int]]:
    """Ready (ip, port) pairs serving the Service port named `port_name` ("" for an unnamed port)."""
    out: list[tuple[str, int]] = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = subset.get("ports") or []
        match = [p for p in ports if (p.get("name") or "") == port_name]
        if not match and len(ports) == 1 and not port_name:
            match = ports
        for port in match:
            if port.get("protocol", "TCP") != "TCP":
                continue
            for address in subset.get("addresses") or []:
                out.append((str(address["ip"]), int(port["port"])))
    return out
