"""The kubelet's projected volumes: a pod's kube-api-access volume written, refreshed, and its failures named.

The volume code talks to an HTTP server through the shared `modelops.local.client.Client`. The server
here is a small aiohttp app whose TokenRequest endpoint is `serviceaccounts.token_request` itself (the
local API server does not route `serviceaccounts/{name}/token` until the lead wires that hook in), so
the tokens on disk are the real ones; it can be told to fail, to test retries. The last test runs
against the real local API server, which routes TokenRequest since it wired the hooks in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_local_pathmap import run_apiserver

from modelops.local.apiserver import serviceaccounts as sa
from modelops.local.client import ApiError, Client, KubeConfig
from modelops.local.nodes import serviceaccount_volume as sav

KEY = b"s" * 32


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The real local API server (TLS, bearer token), once for this module."""
    yield from run_apiserver(tmp_path_factory.mktemp("plane"))


CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
Obj = dict[str, Any]


class FakePlane:
    """Objects by (plural, namespace, name), TokenRequests logged, failures injectable."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.token_requests: list[Obj] = []
        self.fail_tokens = 0
        self.expire_in: int | None = None  # answer this expirationTimestamp offset instead

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/{plural}/{name}", self.get)
        app.router.add_post("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token", self.token)
        return app

    async def get(self, request: web.Request) -> web.Response:
        m = request.match_info
        obj = self.objects.get((m["plural"], m["ns"], m["name"]))
        if obj is None:
            status = {"kind": "Status", "code": 404, "reason": "NotFound",
                      "message": f'{m["plural"]} "{m["name"]}" not found'}  # fmt: skip
            return web.json_response(status, status=404)
        return web.json_response(obj)

    async def token(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.token_requests.append(body)
        if self.fail_tokens:
            self.fail_tokens -= 1
            return web.json_response({"kind": "Status", "code": 500, "message": "etcd is sad"}, status=500)
        m = request.match_info
        ref = (body.get("spec") or {}).get("boundObjectRef") or {}
        bound = self.objects.get(("pods", m["ns"], ref.get("name", "")))
        account = self.objects.get(("serviceaccounts", m["ns"], m["name"]))
        code, answer = sa.token_request(
            body, account, KEY, time.time(), bound_object=bound, namespace=m["ns"], name=m["name"]
        )
        if code == 201 and self.expire_in is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + self.expire_in))
            answer["status"]["expirationTimestamp"] = stamp
        return web.json_response(answer, status=code)

    def add(self, obj: Obj) -> Obj:
        kind = obj["kind"]
        plural = {
            "ConfigMap": "configmaps",
            "Secret": "secrets",
            "Pod": "pods",
            "ServiceAccount": "serviceaccounts",
        }[kind]
        meta = obj["metadata"]
        meta.setdefault("uid", f"uid-{meta['name']}")
        self.objects[(plural, meta["namespace"], meta["name"])] = obj
        return obj


@contextlib.asynccontextmanager
async def serving(plane: FakePlane) -> AsyncIterator[Client]:
    runner = web.AppRunner(plane.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = Client(KubeConfig(server=f"http://127.0.0.1:{port}", token="t"))
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()


def run(scenario: Callable[[Client, FakePlane], Awaitable[None]], plane: FakePlane) -> None:
    async def main() -> None:
        async with serving(plane) as client:
            await scenario(client, plane)

    asyncio.run(main())


def admitted_pod(plane: FakePlane, **spec: Any) -> Obj:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "op-0", "namespace": "ml", "uid": "pod-uid", "labels": {"app": "op", "tier": "ctl"}},
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {"name": "main", "image": "ghcr.io/modelops/operator:dev",
                 "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}}}
            ],
            **spec,
        },
    }  # fmt: skip
    pod = sa.admit_pod(body, namespace="ml", suffix="q2x4z")
    plane.add(pod)
    plane.add(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "ml"}}
    )
    plane.add(sa.root_ca_configmap(CA, "ml"))
    return pod


def token_volume(pod: Obj) -> Obj:
    return next(v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))


def test_the_kube_api_access_volume_holds_a_pod_bound_token_the_ca_and_the_namespace(tmp_path: Path) -> None:
    plane = FakePlane()
    pod = admitted_pod(plane)
    target = tmp_path / "kube-api-access-q2x4z"

    async def scenario(client: Client, plane: FakePlane) -> None:
        volume = await sav.materialise(client, pod, token_volume(pod), target)
        assert volume.refresh_at is not None and volume.refresh_at > time.time() + 2800

    run(scenario, plane)
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith("..")) == [
        "ca.crt",
        "namespace",
        "token",
    ]
    assert (target / "ca.crt").read_text() == CA
    assert (target / "namespace").read_text() == "ml"
    # The kubelet's layout: visible names link through ..data to a timestamped directory.
    assert os.readlink(target / "token") == "..data/token"
    assert os.readlink(target / "..data").startswith("..20")
    assert (target / "token").stat().st_mode & 0o777 == 0o644
    who = sa.verify_token(KEY, (target / "token").read_text(), time.time())
    assert who is not None
    assert (who.username, who.pod_name, who.pod_uid) == (
        "system:serviceaccount:ml:default",
        "op-0",
        "pod-uid",
    )
    (sent,) = plane.token_requests
    assert sent["spec"]["expirationSeconds"] == 3607
    assert sent["spec"]["boundObjectRef"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "op-0",
        "uid": "pod-uid",
    }
    assert "audiences" not in sent["spec"]


def test_the_token_is_renewed_at_80_percent_of_its_lifetime_and_swapped_in_whole(tmp_path: Path) -> None:
    plane = FakePlane()
    pod = admitted_pod(plane)
    target = tmp_path / "vol"

    async def scenario(client: Client, plane: FakePlane) -> None:
        volume = await sav.materialise(client, pod, token_volume(pod), target)
        assert volume.refresh_at is not None
        issued = volume.refresh_at - 0.8 * 3607
        assert abs(issued - time.time()) < 5
        first = (target / "token").read_text()
        first_dir = os.readlink(target / "..data")
        await volume.write(now=volume.refresh_at - 1)  # not due: the same token is written again
        assert len(plane.token_requests) == 1 and (target / "token").read_text() == first
        await volume.write(now=volume.refresh_at + 1)
        assert len(plane.token_requests) == 2
        second = (target / "token").read_text()
        assert second != first and sa.verify_token(KEY, second, time.time()) is not None
        assert not (target / first_dir).exists()  # the old generation is gone, not left behind
        assert len([p for p in target.iterdir() if p.name.startswith("..2")]) == 1

    run(scenario, plane)


def test_keep_fresh_renews_when_due_and_retries_a_failed_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sav, "RETRY_SECONDS", 0.05)
    plane = FakePlane()
    pod = admitted_pod(plane)
    target = tmp_path / "vol"

    async def scenario(client: Client, plane: FakePlane) -> None:
        # The server answers tokens that are already 80% through their life: due at once.
        plane.expire_in = 600
        volume = await sav.materialise(client, pod, token_volume(pod), target)
        first = (target / "token").read_text()
        plane.expire_in = None
        plane.fail_tokens = 2
        task = asyncio.create_task(volume.keep_fresh())
        try:
            for _ in range(200):
                if len(plane.token_requests) >= 4 and (target / "token").read_text() != first:
                    break
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert len(plane.token_requests) == 4  # first, two failures, then the renewal
        assert (target / "token").read_text() != first
        assert volume.refresh_at is not None and volume.refresh_at > time.time() + 2800

    run(scenario, plane)


def test_a_missing_ca_configmap_or_account_is_a_volume_error_that_names_it(tmp_path: Path) -> None:
    plane = FakePlane()
    pod = admitted_pod(plane)
    del plane.objects[("configmaps", "ml", "kube-root-ca.crt")]

    async def scenario(client: Client, plane: FakePlane) -> None:
        with pytest.raises(sav.VolumeError, match=r'configmap "kube-root-ca\.crt" not found'):
            await sav.materialise(client, pod, token_volume(pod), tmp_path / "a")
        plane.add(sa.root_ca_configmap(CA, "ml"))
        del plane.objects[("serviceaccounts", "ml", "default")]
        with pytest.raises(
            sav.VolumeError, match='failed to fetch token: serviceaccounts "default" not found'
        ):
            await sav.materialise(client, pod, token_volume(pod), tmp_path / "b")

    run(scenario, plane)
    assert not (tmp_path / "a" / "token").exists()


def test_configmap_secret_and_downward_api_sources_with_items_modes_and_optional(tmp_path: Path) -> None:
    plane = FakePlane()
    pod = admitted_pod(plane, serviceAccountName="default")
    plane.add(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "ml"},
            "data": {"a.yaml": "x: 1", "b": "2"},
            "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()},
        }
    )
    plane.add({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "ml"},
               "data": {"password": base64.b64encode(b"hunter2").decode()}})  # fmt: skip
    volume = {
        "name": "all",
        "projected": {
            "defaultMode": 0o440,
            "sources": [
                {"configMap": {"name": "cfg"}},
                {"secret": {"name": "creds", "items": [{"key": "password", "path": "db/password", "mode": 0o400}]}},
                {"configMap": {"name": "absent", "optional": True}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                            {"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}},
                            {"path": "mem", "resourceFieldRef": {"containerName": "main",
                                                                 "resource": "limits.memory", "divisor": "1Mi"}},
                            {"path": "cpu", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu",
                                                                 "divisor": "1"}},
                        ]
                    }
                },
            ],
        },
    }  # fmt: skip
    target = tmp_path / "all"

    async def scenario(client: Client, plane: FakePlane) -> None:
        written = await sav.materialise(client, pod, volume, target)
        assert written.refresh_at is None  # no token: nothing to renew
        # A key removed from the ConfigMap disappears on the next write; nested directories stay whole.
        plane.objects[("configmaps", "ml", "cfg")]["data"].pop("b")
        await written.write()
        plane.objects[("secrets", "ml", "creds")]["data"] = {}
        with pytest.raises(sav.VolumeError, match='secret "creds" has no key "password"'):
            await written.write()

    run(scenario, plane)
    assert (target / "a.yaml").read_text() == "x: 1"
    assert not (target / "b").exists()
    assert (target / "blob").read_bytes() == b"\x00\x01"
    assert (target / "db" / "password").read_text() == "hunter2"
    assert (target / "db" / "password").stat().st_mode & 0o777 == 0o400
    assert (target / "a.yaml").stat().st_mode & 0o777 == 0o440
    assert (target / "labels").read_text() == 'app="op"\ntier="ctl"'
    assert (target / "node").read_text() == "node-1"
    assert (target / "mem").read_text() == "256"
    assert (target / "cpu").read_text() == "1"  # 500m rounded up, as the downward API does


def test_paths_that_escape_the_volume_are_refused(tmp_path: Path) -> None:
    plane = FakePlane()
    pod = admitted_pod(plane)
    for bad in ("../escape", "/abs", "..data/x"):
        volume = {
            "name": "v",
            "downwardAPI": {"items": [{"path": bad, "fieldRef": {"fieldPath": "metadata.name"}}]},
        }

        async def scenario(client: Client, plane: FakePlane, volume: Obj = volume) -> None:
            with pytest.raises(sav.VolumeError, match="fix the volume"):
                await sav.materialise(client, pod, volume, tmp_path / "v")

        run(scenario, plane)
    assert not (tmp_path / "escape").exists()


def test_in_cluster_env_names_the_api_server_or_the_kubernetes_service() -> None:
    direct = sav.in_cluster_env("https://127.0.0.1:40123")
    assert direct["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert direct["KUBERNETES_SERVICE_PORT"] == direct["KUBERNETES_SERVICE_PORT_HTTPS"] == "40123"
    assert direct["KUBERNETES_PORT_40123_TCP_ADDR"] == "127.0.0.1"
    service = sav.in_cluster_env("https://127.0.0.1:40123", via_service=True)
    assert (service["KUBERNETES_SERVICE_HOST"], service["KUBERNETES_SERVICE_PORT"]) == ("127.96.0.1", "443")
    assert service["KUBERNETES_PORT"] == "tcp://127.96.0.1:443"
    assert (sav.KUBERNETES_SERVICE_IP, sav.KUBERNETES_SERVICE_PORT) == (
        sa.KUBERNETES_SERVICE_IP,
        sa.KUBERNETES_SERVICE_PORT,
    )
    env = sav.mounts_env({"/var/run/secrets/kubernetes.io/serviceaccount": Path("/pods/x/v")})
    assert json.loads(env["MODELOPS_LOCAL_MOUNTS"]) == {
        "/var/run/secrets/kubernetes.io/serviceaccount": "/pods/x/v"
    }


def test_against_the_real_api_server_the_volume_logs_the_pod_in_as_its_account(
    apiserver: dict[str, str], tmp_path: Path
) -> None:
    admin = KubeConfig(server=apiserver["url"], token=apiserver["token"], ca_data=apiserver["ca"].encode())
    ns = f"sav-{uuid.uuid4().hex[:6]}"
    target = tmp_path / "kube-api-access"

    async def main() -> None:
        async with Client(admin) as api:
            await api.create("v1", "namespaces", None, {"metadata": {"name": ns}})
            body = {"metadata": {"name": "op-0"}, "spec": {"containers": [{"name": "main", "image": "ghcr.io/modelops/operator:dev"}]}}  # fmt: skip
            pod = await api.create("v1", "pods", ns, body)
            await sav.materialise(api, pod, token_volume(pod), target)
            as_pod = KubeConfig(
                server=admin.server,
                token=(target / "token").read_text(),
                ca_data=(target / "ca.crt").read_bytes(),
            )
            async with Client(as_pod) as inside:
                review = await inside.create("authentication.k8s.io/v1", "selfsubjectreviews", None,
                                             {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})  # fmt: skip
                assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:default"
                assert (await inside.get("v1", "pods", ns, "op-0"))["metadata"]["uid"] == pod["metadata"][
                    "uid"
                ]
                await api.delete("v1", "pods", ns, "op-0", grace_period_seconds=0)
                with pytest.raises(ApiError) as refused:
                    await inside.get("v1", "pods", ns, "op-0")
                assert refused.value.status == 401  # the token died with its pod

    asyncio.run(main())
    assert (target / "namespace").read_text() == ns
    assert (target / "ca.crt").read_text() == apiserver["ca"]
