"""Endpoints from pods, and the ClusterIP proxy forwarding real TCP connections (no API server)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelops_local.client import Client, KubeConfig
from modelops_local.controllers import endpoints
from modelops_local.controllers.actions import ENDPOINTS, SERVICES, Create, Patch
from modelops_local.controllers.proxy import ServiceProxy
from modelops_local.controllers.store import Store

Obj = dict[str, Any]


def svc(**spec: Any) -> Obj:
    base: Obj = {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "s", "labels": {"team": "a"}},
        "spec": {**base, **spec},
    }


def pod(
    name: str, ip: str | None, ready: bool = True, port_name: str = "web", port: int = 8080, **extra: Any
) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": name, "labels": {"app": "web"}, **extra},
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "c", "ports": [{"name": port_name, "containerPort": port}]}],
        },
        "status": {
            "phase": "Running",
            **({"podIP": ip} if ip else {}),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_ready_and_not_ready_addresses_with_named_ports_resolved_per_pod() -> None:
    pods = [
        pod("a", "127.244.0.2"),
        pod("b", "127.244.0.3", ready=False),
        pod("c", "127.244.0.4", port=9090),  # same port name, another number: its own subset
        pod("d", None),  # no IP yet: not an endpoint
        pod("e", "127.244.0.6", port_name="other"),  # cannot serve the named port
        pod("f", "127.244.0.7", deletionTimestamp="2026-01-01T00:00:00Z"),
    ]
    (create,) = endpoints.reconcile(svc(), pods, None).actions
    assert isinstance(create, Create) and create.kind == ENDPOINTS
    body = create.body
    assert body["metadata"]["name"] == "web" and body["metadata"]["labels"] == {"team": "a"}
    subsets = {s["ports"][0]["port"]: s for s in body["subsets"]}
    assert set(subsets) == {8080, 9090}
    assert [a["ip"] for a in subsets[8080]["addresses"]] == ["127.244.0.2"]
    assert [a["ip"] for a in subsets[8080]["notReadyAddresses"]] == ["127.244.0.3"]
    assert subsets[8080]["addresses"][0]["targetRef"] == {
        "kind": "Pod",
        "namespace": "ns",
        "name": "a",
        "uid": "a",
    }
    assert [a["ip"] for a in subsets[9090]["addresses"]] == ["127.244.0.4"]


def test_unchanged_endpoints_are_left_alone_and_changes_patch() -> None:
    pods = [pod("a", "127.244.0.2")]
    (create,) = endpoints.reconcile(svc(), pods, None).actions
    current = {**create.body, "metadata": {**create.body["metadata"], "uid": "e"}}  # type: ignore[union-attr]
    assert endpoints.reconcile(svc(), pods, current).actions == []
    (patch,) = endpoints.reconcile(svc(), [*pods, pod("b", "127.244.0.3")], current).actions
    assert isinstance(patch, Patch) and len(patch.patch["subsets"][0]["addresses"]) == 2


def test_publish_not_ready_and_headless_and_selectorless() -> None:
    (create,) = endpoints.reconcile(
        svc(publishNotReadyAddresses=True), [pod("b", "1.2.3.4", ready=False)], None
    ).actions
    assert [a["ip"] for a in create.body["subsets"][0]["addresses"]] == ["1.2.3.4"]  # type: ignore[union-attr]
    (create,) = endpoints.reconcile(svc(clusterIP="None"), [], None).actions
    assert "service.kubernetes.io/headless" in create.body["metadata"]["labels"]  # type: ignore[union-attr]
    assert endpoints.reconcile(svc(selector=None), [pod("a", "1.2.3.4")], None).actions == []


def test_endpoints_of_deleted_services_are_removed_only_when_ours() -> None:
    ours = {
        "metadata": {
            "name": "gone",
            "namespace": "ns",
            "uid": "1",
            "annotations": {endpoints.MANAGED: "true"},
        }
    }
    manual = {"metadata": {"name": "manual", "namespace": "ns", "uid": "2"}}
    (delete,) = endpoints.orphaned([ours, manual], []).actions
    assert delete.name == "gone"  # type: ignore[union-attr]


def test_endpoint_slices_carry_conditions_and_are_kept_in_step() -> None:
    pods = [pod("a", "127.244.0.2"), pod("b", "127.244.0.3", ready=False)]
    pods.append(pod("t", "127.244.0.4", deletionTimestamp="2026-01-01T00:00:00Z"))
    (create,) = endpoints.reconcile_slices(svc(), pods, []).actions
    assert isinstance(create, Create)
    body = create.body
    assert body["metadata"]["labels"][endpoints.SERVICE_NAME] == "web"
    assert body["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert body["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    conds = {e["targetRef"]["name"]: e["conditions"] for e in body["endpoints"]}
    assert conds["a"] == {"ready": True, "serving": True, "terminating": False}
    assert conds["b"] == {"ready": False, "serving": False, "terminating": False}
    assert conds["t"] == {"ready": False, "serving": True, "terminating": True}
    current = {**body, "metadata": {**body["metadata"], "uid": "x"}}
    assert endpoints.reconcile_slices(svc(), pods, [current]).actions == []
    (patch,) = endpoints.reconcile_slices(svc(), pods[:1], [current]).actions
    assert isinstance(patch, Patch) and len(patch.patch["endpoints"]) == 1
    # When the pods' port moves, the same slice is updated in place.
    moved = [pod("a", "127.244.0.2", port=9000)]
    (patch,) = endpoints.reconcile_slices(svc(), moved, [current]).actions
    assert isinstance(patch, Patch) and patch.patch["ports"][0]["port"] == 9000
    # Two port sets at once need two slices.
    both = [pod("a", "127.244.0.2"), pod("c", "127.244.0.4", port=9090)]
    kinds = sorted(type(a).__name__ for a in endpoints.reconcile_slices(svc(), both, [current]).actions)
    assert kinds == ["Create", "Patch"]


class _Backend:
    """A TCP server on a loopback address that answers with its own address."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read(100)
            writer.write(self.host.encode() + b":" + data)
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(handle, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]


async def _ask(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"hi")
    await writer.drain()
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def _store_with(service: Obj, eps: Obj | None) -> Store:
    store = Store(Client(KubeConfig(server="http://127.0.0.1:1")))
    store.watch(SERVICES)
    store.watch(ENDPOINTS)
    store.informers[SERVICES].cache[("ns", "web")] = service
    if eps is not None:
        store.informers[ENDPOINTS].cache[("ns", "web")] = eps
    return store


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_proxy_balances_over_ready_endpoints_and_skips_dead_ones() -> None:
    async def scenario() -> None:
        b1, b2 = _Backend("127.0.0.2"), _Backend("127.0.0.3")
        await b1.start()
        await b2.start()
        dead_port = _free_port()
        cluster_ip, port = "127.96.250.1", _free_port()
        service = {
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": port}]},
        }
        eps = {
            "metadata": {"name": "web", "namespace": "ns"},
            "subsets": [
                {"addresses": [{"ip": "127.0.0.2"}], "ports": [{"name": "http", "port": b1.port}]},
                {"addresses": [{"ip": "127.0.0.3"}], "ports": [{"name": "http", "port": b2.port}]},
                {"addresses": [{"ip": "127.0.0.4"}], "ports": [{"name": "http", "port": dead_port}]},
            ],
        }
        store = _store_with(service, eps)
        proxy = ServiceProxy(store)
        try:
            await proxy.sync(store)
            answers = [await _ask(cluster_ip, port) for _ in range(6)]
            assert {a.split(b":")[0] for a in answers} == {b"127.0.0.2", b"127.0.0.3"}
            assert all(a.endswith(b":hi") for a in answers), "request bytes reach the backend"
            # No endpoints: the client sees its connection closed, not a hang.
            store.informers[ENDPOINTS].cache[("ns", "web")] = {"metadata": {"name": "web", "namespace": "ns"}}
            assert await _ask(cluster_ip, port) == b""
            # The Service goes away: so does the listener.
            store.informers[SERVICES].cache.clear()
            await proxy.sync(store)
            with pytest.raises(OSError):
                await _ask(cluster_ip, port)
        finally:
            await proxy.close()
            for b in (b1, b2):
                assert b.server is not None
                b.server.close()

    asyncio.run(scenario())


def test_node_ports_listen_on_the_node_address_and_load_balancers_get_their_cluster_ip() -> None:
    from modelops_local.controllers.proxy import desired_listeners

    lb = {
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "127.96.0.9",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
        },
    }
    headless = {
        "metadata": {"name": "h", "namespace": "ns"},
        "spec": {"clusterIP": "None", "ports": [{"port": 1}]},
    }
    assert desired_listeners([lb, headless]) == {
        ("127.96.0.9", 80): ("ns", "web", "http"),
        ("127.0.0.1", 30080): ("ns", "web", "http"),
    }
    (status,) = endpoints.load_balancer_status(lb).actions
    assert status.status["loadBalancer"]["ingress"][0]["ip"] == "127.96.0.9"  # type: ignore[union-attr]
    assert endpoints.load_balancer_status(headless).actions == []


def test_proxy_retries_an_address_someone_else_holds() -> None:
    import socket

    async def scenario() -> None:
        port = _free_port()
        cluster_ip = "127.96.250.2"
        service = {
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": port}]},
        }
        store = _store_with(service, None)
        proxy = ServiceProxy(store)
        squatter = socket.socket()
        squatter.bind((cluster_ip, port))
        squatter.listen()
        try:
            (first,) = await proxy.sync(store)
            assert not proxy.listeners and first.requeue_after is not None, "asks to be woken to try again"
        finally:
            squatter.close()
        (second,) = await proxy.sync(store)
        assert (cluster_ip, port) in proxy.listeners and second.requeue_after is None
        await proxy.close()

    asyncio.run(scenario())
