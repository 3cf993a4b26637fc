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
from .actions import ENDPOINTS, ENDPOINTSLICES, SERVICES, Create, Delete, Patch, Result, Status

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


def load_balancer_status(svc: Obj) -> Result:
    """LoadBalancer Services get their ClusterIP as ingress address: reachable here, and proxied."""
    result = Result()
    spec = svc.get("spec") or {}
    ip = spec.get("clusterIP")
    if spec.get("type") != "LoadBalancer" or not ip or ip == "None" or c.is_deleting(svc):
        return result
    want = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}
    status = {**(svc.get("status") or {}), **want}
    result.actions.append(Status(SERVICES, c.namespace_of(svc), c.name_of(svc), status))
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


SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"


def _slice_endpoint(pod: Obj, svc: Obj, publish: bool) -> Obj:
    pspec = pod.get("spec") or {}
    ready = c.pod_is_ready(pod)
    terminating = c.is_deleting(pod)
    endpoint: Obj = {
        "addresses": [str((pod.get("status") or {}).get("podIP"))],
        "conditions": {
            "ready": publish or (ready and not terminating),
            "serving": publish or ready,
            "terminating": terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": c.namespace_of(pod),
            "name": c.name_of(pod),
            "uid": c.uid_of(pod),
        },
    }
    if pspec.get("nodeName"):
        endpoint["nodeName"] = pspec["nodeName"]
    if pspec.get("hostname") and pspec.get("subdomain") == c.name_of(svc):
        endpoint["hostname"] = pspec["hostname"]
    return endpoint


def slices_for(svc: Obj, pods: Sequence[Obj]) -> list[Obj]:
    """EndpointSlices (discovery.k8s.io/v1) for a Service: one per distinct resolved port set."""
    spec = svc.get("spec") or {}
    selector = spec.get("selector") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[str, tuple[list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not c.service_selector_matches(selector, c.labels_of(pod)):
            continue
        if not (pod.get("status") or {}).get("podIP") or c.pod_is_terminal(pod):
            continue
        ports: list[Obj] = []
        for sp in spec.get("ports") or []:
            target = resolve_target_port(sp, pod)
            if target is None:
                continue
            ports.append(
                {"name": sp.get("name") or "", "port": target, "protocol": sp.get("protocol", "TCP")}
            )
        if spec.get("ports") and not ports:
            continue
        ports.sort(key=lambda p: (p["name"], p["port"]))
        key = json.dumps(ports, sort_keys=True)
        groups.setdefault(key, ([], ports))[0].append(_slice_endpoint(pod, svc, publish))
    if not groups:
        groups["[]"] = ([], [])
    labels = {**c.labels_of(svc), SERVICE_NAME: c.name_of(svc), MANAGED_BY: SLICE_CONTROLLER}
    if spec.get("clusterIP") == "None":
        labels["service.kubernetes.io/headless"] = ""
    out: list[Obj] = []
    for index, (_, (eps, ports)) in enumerate(sorted(groups.items())):
        # Named by position, not by port set: the usual single slice keeps its name (and is updated
        # in place) when the pods' ports first resolve or change.
        digest = _short_hash(f"{c.name_of(svc)}/{index}")
        out.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{c.name_of(svc)}-{digest}",
                    "namespace": c.namespace_of(svc),
                    "labels": labels,
                    "ownerReferences": [
                        {
                            **c.owner_reference(svc, "v1", "Service"),
                            "blockOwnerDeletion": True,
                            "controller": True,
                        }
                    ],
                },
                "addressType": "IPv4",
                "endpoints": sorted(eps, key=lambda e: e["addresses"][0]),
                "ports": ports,
            }
        )
    return out


def _short_hash(text: str) -> str:
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    out = ""
    for _ in range(5):
        h, r = divmod(h, len(alphabet))
        out += alphabet[r]
    return out


def reconcile_slices(svc: Obj, pods: Sequence[Obj], existing: Sequence[Obj]) -> Result:
    """Create, update and delete the Service's EndpointSlices (only the ones this controller manages)."""
    result = Result()
    spec = svc.get("spec") or {}
    if c.is_deleting(svc) or not spec.get("selector") or spec.get("type") == "ExternalName":
        return result
    ns = c.namespace_of(svc)
    mine = {
        c.name_of(s): s
        for s in existing
        if c.labels_of(s).get(SERVICE_NAME) == c.name_of(svc)
        and c.labels_of(s).get(MANAGED_BY) == SLICE_CONTROLLER
    }
    for want in slices_for(svc, pods):
        name = want["metadata"]["name"]
        have = mine.pop(name, None)
        if have is None:
            result.actions.append(Create(ENDPOINTSLICES, ns, want))
        elif (
            (have.get("endpoints") or []) != want["endpoints"]
            or (have.get("ports") or []) != want["ports"]
            or c.labels_of(have) != want["metadata"]["labels"]
        ):
            stale = {k: None for k in c.labels_of(have) if k not in want["metadata"]["labels"]}
            patch = {
                "metadata": {"labels": {**stale, **want["metadata"]["labels"]}},
                "endpoints": want["endpoints"],
                "ports": want["ports"],
            }
            result.actions.append(Patch(ENDPOINTSLICES, ns, name, patch))
    for name, extra in mine.items():
        result.actions.append(Delete(ENDPOINTSLICES, ns, name, c.uid_of(extra)))
    return result
