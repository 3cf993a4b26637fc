"""The asyncio API client the kubelet, scheduler and controllers share (`modelops_local.client`).

Against the real local API server, except the 410 re-list, which needs a server that forgets
history on demand (fault injection with a small aiohttp server).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from fixtures_nodes import Plane, start_apiserver

from modelops_local.client import ApiError, Client, Informer, KubeConfig


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    p = start_apiserver(tmp_path_factory.mktemp("apiclient"))
    yield p
    p.stop("apiserver")


def cm(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "t"}},
        "data": data,
    }


def test_crud_patch_types_and_errors(plane: Plane) -> None:
    async def scenario() -> None:
        async with Client.from_kubeconfig(plane.kubeconfig) as api:
            created = await api.create("v1", "configmaps", "default", cm("one", a="1"))
            assert created["metadata"]["uid"]
            with pytest.raises(ApiError) as exists:
                await api.create("v1", "configmaps", "default", cm("one"))
            assert (exists.value.status, exists.value.reason) == (409, "AlreadyExists")

            listed = await api.list("v1", "configmaps", "default", label_selector="app=t")
            assert [i["metadata"]["name"] for i in listed["items"]] == ["one"]
            assert listed["items"][0]["kind"] == "ConfigMap"

            await api.patch("v1", "configmaps", "default", "one", {"data": {"b": "2"}})
            await api.patch("v1", "configmaps", "default", "one", [{"op": "add", "path": "/data/c", "value": "3"}],
                            patch_type="json")  # fmt: skip
            await api.patch(
                "v1", "configmaps", "default", "one", {"data": {"d": "4"}}, patch_type="strategic"
            )
            applied = await api.patch(
                "v1",
                "configmaps",
                "default",
                "one",
                cm("one", e="5"),
                patch_type="apply",
                field_manager="test",
            )
            assert applied["data"]["e"] == "5"
            got = await api.get("v1", "configmaps", "default", "one")
            assert {"b": "2", "c": "3", "d": "4"}.items() <= got["data"].items()

            stale = dict(created)
            with pytest.raises(ApiError) as conflict:
                await api.update("v1", "configmaps", "default", "one", stale)
            assert conflict.value.status == 409

            await api.delete("v1", "configmaps", "default", "one")
            with pytest.raises(ApiError) as missing:
                await api.get("v1", "configmaps", "default", "one")
            assert (missing.value.status, missing.value.reason) == (404, "NotFound")
            assert "one" in missing.value.message

    asyncio.run(scenario())
    assert "one" not in plane.kubectl("get", "configmaps")


def test_status_subresource_is_written_apart_from_spec(plane: Plane) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "status-test"}}

    async def scenario() -> None:
        async with Client.from_kubeconfig(plane.kubeconfig) as api:
            await api.create("v1", "nodes", None, node)
            await api.patch_status("v1", "nodes", None, "status-test", {"status": {"capacity": {"cpu": "3"}}})

    asyncio.run(scenario())
    out = json.loads(plane.kubectl("get", "node", "status-test", "-o", "json"))
    assert out["status"]["capacity"]["cpu"] == "3"
    plane.kubectl("delete", "node", "status-test")


def test_watch_lists_then_streams_changes(plane: Plane) -> None:
    async def scenario() -> list[tuple[str, str, str]]:
        async with Client.from_kubeconfig(plane.kubeconfig) as api:
            await api.create("v1", "configmaps", "default", cm("before", v="0"))
            seen: list[tuple[str, str, str]] = []

            async def consume() -> None:
                async for kind, obj in api.watch("v1", "configmaps", "default", label_selector="app=t"):
                    seen.append((kind, obj["metadata"]["name"], (obj.get("data") or {}).get("v", "")))
                    if kind == "DELETED" and obj["metadata"]["name"] == "after":
                        return

            task = asyncio.create_task(consume())
            while not seen:
                await asyncio.sleep(0.05)
            await api.create("v1", "configmaps", "default", cm("after", v="1"))
            await api.patch("v1", "configmaps", "default", "after", {"data": {"v": "2"}})
            await api.delete("v1", "configmaps", "default", "after")
            await asyncio.wait_for(task, 30)
            await api.delete("v1", "configmaps", "default", "before")
            return seen

    seen = asyncio.run(scenario())
    assert seen == [
        ("ADDED", "before", "0"),
        ("ADDED", "after", "1"),
        ("MODIFIED", "after", "2"),
        ("DELETED", "after", "2"),
    ]


def test_informer_keeps_a_cache_and_calls_back(plane: Plane) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        async with Client.from_kubeconfig(plane.kubeconfig) as api:
            calls: list[str] = []

            async def handler(kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
                calls.append(f"{kind} {obj['metadata']['name']} old={old is not None}")

            await api.create("v1", "configmaps", "default", cm("inf-a"))
            informer = Informer(api, "v1", "configmaps", "default", label_selector="app=t", handler=handler)
            informer.start()
            await informer.synced.wait()
            await api.create("v1", "configmaps", "default", cm("inf-b"))
            await api.delete("v1", "configmaps", "default", "inf-a")
            while len(calls) < 3:
                await asyncio.sleep(0.05)
            await informer.stop()
            await api.delete("v1", "configmaps", "default", "inf-b")
            return calls, sorted(name for _, name in informer.cache)

    calls, cached = asyncio.run(scenario())
    assert calls == ["ADDED inf-a old=False", "ADDED inf-b old=False", "DELETED inf-a old=True"]
    assert cached == ["inf-b"]


def test_watch_relists_after_410_and_reports_what_was_missed(tmp_path: Path) -> None:
    """History expired while disconnected: the consumer still learns of the deletion it missed."""
    watches = 0
    lists = 0

    async def pods(request: web.Request) -> web.StreamResponse:
        nonlocal watches, lists
        if request.query.get("watch"):
            watches += 1
            resp = web.StreamResponse()
            await resp.prepare(request)
            if watches == 1:
                gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
                await resp.write(json.dumps(gone).encode() + b"\n")
                return resp
            await asyncio.sleep(30)
            return resp
        lists += 1
        items = [{"metadata": {"name": "a", "namespace": "d", "resourceVersion": "1"}}]
        if lists > 1:  # "a" was deleted and "b" created while the history was lost
            items = [{"metadata": {"name": "b", "namespace": "d", "resourceVersion": "7"}}]
        return web.json_response(
            {"kind": "PodList", "metadata": {"resourceVersion": str(lists * 10)}, "items": items}
        )

    async def scenario() -> list[tuple[str, str]]:
        app = web.Application()
        app.router.add_get("/api/v1/pods", pods)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        events: list[tuple[str, str]] = []
        async with Client(KubeConfig(server=f"http://127.0.0.1:{port}", token="t")) as api:
            async for kind, obj in api.watch("v1", "pods"):
                events.append((kind, obj["metadata"]["name"]))
                if len(events) == 3:
                    break
        await runner.cleanup()
        return events

    assert asyncio.run(scenario()) == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]


def test_kubeconfig_errors_name_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(ValueError, match="current-context"):
        KubeConfig.from_file(path)


def test_client_follows_a_rewritten_kubeconfig(plane: Plane, tmp_path: Path) -> None:
    """A restarted API server may listen elsewhere; long-running components must follow it."""
    real = plane.kubeconfig.read_text()
    moved = tmp_path / "kubeconfig"
    # Start with an address where nothing listens (port 9 is "discard", closed on this host).
    moved.write_text(re.sub(r"server: https://127\.0\.0\.1:\d+", "server: https://127.0.0.1:9", real))

    async def scenario() -> str:
        async with Client.from_kubeconfig(moved) as api:
            with pytest.raises(aiohttp.ClientConnectionError):
                await api.list("v1", "namespaces")
            moved.write_text(real)
            os.utime(moved, (time.time() + 5, time.time() + 5))  # a visibly newer file
            listed = await api.list("v1", "namespaces")
            return str(listed["kind"])

    assert asyncio.run(scenario()) == "NamespaceList"
