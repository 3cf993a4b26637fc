"""Pod networking on one host: pod IPs, cluster DNS names, service env vars.

All local pods share the host's network stack. Each pod gets its own loopback address from
127.244.0.0/16 (Linux routes all of 127/8 to lo), Service ClusterIPs come from the API server, and
cluster DNS is a hosts file (`DIR/hosts`) that the injected `sitecustomize` reads. Names are written
fully qualified (`web.ns.svc.cluster.local`) plus the short forms of the shared design; the resolver
applies the pod's search path so a short name means the pod's own namespace first, as on a cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Obj = dict[str, Any]

POD_NETWORK = ipaddress.ip_network("127.244.0.0/16")
CLUSTER_DOMAIN = "cluster.local"


_LISTEN = "0A"
_bound_cache: tuple[float, set[str]] = (0.0, set())


def host_bound_ips(proc_net: str = "/proc/net", max_age: float = 1.0) -> set[str]:
    """IPv4 addresses that some listening socket on this machine is bound to (any plane, any program).

    Cached for `max_age` seconds: /proc/net/tcp of a busy machine has thousands of lines, and a burst
    of pod starts must not read it once per pod.
    """
    global _bound_cache
    now = time.monotonic()
    if proc_net == "/proc/net" and now - _bound_cache[0] < max_age:
        return _bound_cache[1]
    found: set[str] = set()
    for name in ("tcp", "udp"):
        try:
            with open(os.path.join(proc_net, name), encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split(None, 4)
                    # TCP sockets count only while listening; every bound UDP socket counts.
                    if name == "tcp" and fields[3] != _LISTEN:
                        continue
                    hex_ip = fields[1].split(":", 1)[0]
                    # /proc/net/tcp prints the address in host (little-endian) byte order.
                    found.add(str(ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(hex_ip), "little"))))
        except (OSError, ValueError, IndexError):
            continue
    if proc_net == "/proc/net":
        _bound_cache = (now, found)
    return found


class IPAllocator:
    """Hands out pod IPs; an IP is free again once its pod is released.

    Every local plane on a machine shares its loopback, so two planes (say, two test runs) must not
    hand out the same address: each starts at an offset derived from its directory, and addresses
    that some socket on the machine is bound to are skipped.
    """

    def __init__(self, seed: str = "", busy: Callable[[], set[str]] = host_bound_ips) -> None:
        self._busy = busy
        self._used: dict[str, str] = {}  # ip -> pod uid
        # .0 and .1 are skipped so no pod looks like a network or gateway address.
        self._first = int(POD_NETWORK.network_address) + 2
        self._last = int(POD_NETWORK.broadcast_address) - 1
        offset = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 256 * 256 if seed else 0
        self._next = self._first + offset

    def reserve(self, uid: str, ip: str) -> None:
        self._used[ip] = uid
        self.seen(ip)

    def seen(self, ip: str) -> None:
        """Move past an IP a pod has had, so a new pod does not look like an old one in listings."""
        with contextlib.suppress(ValueError):
            value = int(ipaddress.ip_address(ip))
            if self._first <= value < self._last:
                self._next = max(self._next, value + 1)

    def allocate(self, uid: str) -> str:
        for ip, owner in self._used.items():
            if owner == uid:
                return ip
        busy = self._busy()
        for _ in range(self._last - self._first + 1):
            candidate = str(ipaddress.ip_address(self._next))
            self._next = self._first if self._next >= self._last else self._next + 1
            if candidate not in self._used and candidate not in busy:
                self._used[candidate] = uid
                return candidate
        raise RuntimeError("the pod network 127.244.0.0/16 is exhausted; delete finished pods")

    def release(self, uid: str) -> None:
        for ip in [ip for ip, owner in self._used.items() if owner == uid]:
            del self._used[ip]


def _svc_names(name: str, ns: str) -> list[str]:
    return [f"{name}.{ns}.svc.{CLUSTER_DOMAIN}", f"{name}.{ns}.svc", f"{name}.{ns}", name]


def _pod_ip(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("podIP") or "")


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def cluster_hosts(
    services: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """(ip, name) records of cluster DNS: Services, headless Service members, hostname.subdomain pods."""
    pod_list = [
        p for p in pods if _pod_ip(p) and (p.get("status") or {}).get("phase") not in {"Succeeded", "Failed"}
    ]
    records: list[tuple[str, str]] = []
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        name, ns = str(meta.get("name")), str(meta.get("namespace") or "default")
        cluster_ip = spec.get("clusterIP")
        if spec.get("type") == "ExternalName":
            continue
        if cluster_ip and cluster_ip != "None":
            records += [(str(cluster_ip), n) for n in _svc_names(name, ns)]
            continue
        # Headless: the name resolves to the ready pods it selects, as CoreDNS answers from endpoints.
        selector = spec.get("selector") or {}
        publish_all = bool(spec.get("publishNotReadyAddresses"))
        for pod in pod_list:
            pmeta = pod.get("metadata") or {}
            if pmeta.get("namespace") != ns or not _selects(selector, pmeta.get("labels") or {}):
                continue
            if publish_all or _pod_ready(pod):
                records += [(_pod_ip(pod), n) for n in _svc_names(name, ns)]
    for pod in pod_list:
        pmeta, pspec = pod.get("metadata") or {}, pod.get("spec") or {}
        subdomain = pspec.get("subdomain")
        if not subdomain:
            continue
        hostname = pspec.get("hostname") or pmeta.get("name")
        ns = pmeta.get("namespace") or "default"
        # Published as soon as the pod has an IP (not only when ready) so that rendezvous peers such
        # as torchrun's rank 0 can be found while they are still starting.
        for n in _svc_names(f"{hostname}.{subdomain}", str(ns)):
            records.append((_pod_ip(pod), n))
    return records


def render_hosts(records: Iterable[tuple[str, str]]) -> str:
    by_ip: dict[str, list[str]] = {}
    for ip, name in records:
        names = by_ip.setdefault(ip, [])
        if name not in names:
            names.append(name)
    lines = ["# Cluster DNS of the modelops local plane; written by the kubelet, do not edit."]
    lines += [f"{ip} {' '.join(names)}" for ip, names in sorted(by_ip.items())]
    return "\n".join(lines) + "\n"


def write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".hosts.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # every pod reads it, whatever user it runs as (names and IPs only)
    os.replace(tmp, path)


def resolve(records: Iterable[tuple[str, str]], name: str, namespace: str) -> list[str]:
    """The IPs of `name` as a pod in `namespace` would resolve it (search path, ndots:5)."""
    table: dict[str, list[str]] = {}
    for ip, n in records:
        table.setdefault(n.lower(), []).append(ip)
    lowered = name.lower()
    if lowered.endswith("."):
        candidates = [lowered.rstrip(".")]
    else:
        candidates = [f"{lowered}.{namespace}.svc.{CLUSTER_DOMAIN}", f"{lowered}.svc.{CLUSTER_DOMAIN}"]
        candidates += [f"{lowered}.{CLUSTER_DOMAIN}", lowered]
    for candidate in candidates:
        if candidate in table:
            return table[candidate]
    return []


_HOST_TOKEN = re.compile(
    r"(?<![\w.-])([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*)(?![\w-])"
)


def _cluster_dns_name(token: str, records: list[tuple[str, str]], namespace: str) -> bool:
    """Whether `token` is unmistakably a cluster DNS name: a Service name spelled with its `.svc` zone
    (`web.ns.svc`, `web.ns.svc.cluster.local`) or a pod hostname under a headless Service
    (`rank-0.ranks`, `rank-0.ranks.ns`, with or without the zone), the rendezvous form."""
    name = token.lower().rstrip(".")
    if name.endswith((".svc", f".svc.{CLUSTER_DOMAIN}")):
        return True
    labels = name.split(".")
    if len(labels) not in {2, 3}:
        return False
    full = f"{name}.svc.{CLUSTER_DOMAIN}" if len(labels) == 3 else f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}"
    # A Service's own name has no dot, so `<a>.<b>.<ns>.svc.cluster.local` is always a pod hostname.
    return any(n.lower() == full for _, n in records)


def rewrite_cluster_names(value: str, records: list[tuple[str, str]], namespace: str) -> str:
    """Replace unmistakable cluster DNS names in an env value by IPs, for code that bypasses Python's
    resolver (torch's TCPStore resolves `MASTER_ADDR` in C++).

    Only a Service name with its `.svc` zone and a pod hostname under a headless Service are replaced
    (see `_cluster_dns_name`), wherever they appear. Anything else stays as written, as on a cluster:
    a bare word such as `echo` is a model's name as often as a host's, so bare and short names
    (`web`, `web:8080`, `http://web/v2`, `web.ns`) are left to the pod's resolver
    (sitecustomize's getaddrinfo), which resolves them when the program connects.
    """

    def sub(m: re.Match[str]) -> str:
        token = m.group(1)
        if "." not in token or _looks_like_ip(token):
            return token
        start = m.start(1)
        if start >= 1 and value[start - 1] == "/" and value[start - 2 : start] != "//":
            return token  # a path component such as /data/web.default, not a host
        if not _cluster_dns_name(token, records, namespace):
            return token
        ips = resolve(records, token, namespace)
        return ips[0] if ips else token

    return _HOST_TOKEN.sub(sub, value)


def _looks_like_ip(token: str) -> bool:
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return False
    return True


def unresolved_cluster_names(value: str, namespace: str, services: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names in `value` of pods under an existing headless Service (`rank-0.ranks`, with or without
    `.ns.svc.cluster.local`), the form of a rendezvous address.

    Such a peer may still be starting, so the kubelet waits for its address before starting a
    container. Other names are not waited for: a Service either exists (and resolves) or not.
    """
    headless = {
        (str((s.get("metadata") or {}).get("name")), str((s.get("metadata") or {}).get("namespace")))
        for s in services
        if (s.get("spec") or {}).get("clusterIP") == "None"
    }
    found: list[str] = []
    for m in _HOST_TOKEN.finditer(value):
        token = m.group(1).lower()
        if "." not in token or _looks_like_ip(token):
            continue
        for suffix in (f".svc.{CLUSTER_DOMAIN}", ".svc"):
            if token.endswith(suffix):
                token = token[: -len(suffix)]
                break
        labels = token.split(".")
        if len(labels) in {2, 3} and (labels[1], labels[2] if len(labels) == 3 else namespace) in headless:
            found.append(m.group(1))
    return found


def service_env(services: Iterable[Mapping[str, Any]], namespace: str) -> dict[str, str]:
    """The `{SVC}_SERVICE_HOST/PORT` and docker-link variables of a namespace's Services."""
    env: dict[str, str] = {}
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        if meta.get("namespace") != namespace:
            continue
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        prefix = str(meta.get("name")).upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = str(ip)
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{str(port['name']).upper().replace('-', '_')}"] = str(
                    port["port"]
                )
        first_proto = str(ports[0].get("protocol") or "TCP").lower()
        env[f"{prefix}_PORT"] = f"{first_proto}://{ip}:{ports[0].get('port')}"
        for port in ports:
            proto = str(port.get("protocol") or "TCP")
            base = f"{prefix}_PORT_{port.get('port')}_{proto.upper()}"
            env[base] = f"{proto.lower()}://{ip}:{port.get('port')}"
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(port.get("port"))
            env[f"{base}_ADDR"] = str(ip)
    return env
