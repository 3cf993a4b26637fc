"""The kubelet's pure rules for a pod's environment: $(VAR) expansion, path and name rewriting, DNS.

(Named test_scheduling_* only to sit with the other node tests of the local plane.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelops_local.nodes.containers import default_command, expand, image_repository, rewrite_paths
from modelops_local.nodes.network import (
    IPAllocator,
    cluster_hosts,
    render_hosts,
    resolve,
    rewrite_cluster_names,
    service_env,
    unresolved_cluster_names,
)


def svc(name: str, ns: str = "default", ip: str = "None", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 8080}], **spec},
    }


def pod(name: str, ip: str, ns: str = "default", ready: bool = True, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "t"}},
        "spec": spec,
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_var_expansion_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING) stays", env) == "$(MISSING) stays"
    assert expand("$$(A) is escaped", env) == "$(A) is escaped"


def test_only_the_projects_images_run() -> None:
    assert default_command("ghcr.io/modelops/worker:1.0") == ["modelops-worker"]
    assert default_command("ghcr.io/modelops/operator@sha256:abc") == ["modelops", "operator"]
    assert default_command("ghcr.io/modelops/worker-evil:1") is None
    assert default_command("nginx") is None
    assert image_repository("localhost:5000/x/y:tag@sha256:00") == "localhost:5000/x/y"


def test_mount_paths_are_rewritten_only_at_path_boundaries() -> None:
    mounts = {"/data": Path("/host/vol/data"), "/data/ckpt": Path("/host/vol/ckpt"), "/": Path("/x")}
    assert rewrite_paths("--out=/data/model.pt", mounts) == "--out=/host/vol/data/model.pt"
    assert rewrite_paths("/data/ckpt/last.pt", mounts) == "/host/vol/ckpt/last.pt"
    assert rewrite_paths("/database/x", mounts) == "/database/x"
    assert rewrite_paths("http://host/data/x", mounts) == "http://host/data/x"
    assert rewrite_paths("a:/data:b", mounts) == "a:/host/vol/data:b"


def test_dns_records_for_services_headless_members_and_pod_hostnames() -> None:
    services = [svc("web", ip="127.96.0.10"), svc("peers", selector={"app": "t"})]
    pods = [
        pod("r0", "127.244.0.2", hostname="r0", subdomain="peers"),
        pod("r1", "127.244.0.3", ready=False, hostname="r1", subdomain="peers"),
    ]
    records = cluster_hosts(services, pods)
    assert resolve(records, "web", "default") == ["127.96.0.10"]
    assert resolve(records, "web.default.svc.cluster.local", "other") == ["127.96.0.10"]
    # Headless service names answer with ready members only; hostnames are published at once.
    assert resolve(records, "peers", "default") == ["127.244.0.2"]
    assert resolve(records, "r1.peers", "default") == ["127.244.0.3"]
    assert resolve(records, "web", "other") == ["127.96.0.10"]  # the short form, as in the design
    assert "127.96.0.10 web.default.svc.cluster.local" in render_hosts(records)


def test_cluster_names_in_env_become_ips_but_words_and_paths_do_not() -> None:
    records = cluster_hosts(
        [svc("web", ip="127.96.0.10"), svc("peers", selector={"app": "t"})],
        [pod("r0", "127.244.0.2", hostname="r0", subdomain="peers")],
    )
    assert rewrite_cluster_names("r0.peers", records, "default") == "127.244.0.2"
    assert rewrite_cluster_names("tcp://r0.peers:29500", records, "default") == "tcp://127.244.0.2:29500"
    # Short Service names stay as written (a bare word may be a model's name); the pod's resolver
    # answers them at connect time. The `.svc` spelling is unmistakable and is replaced.
    assert rewrite_cluster_names("web:8080", records, "default") == "web:8080"
    assert rewrite_cluster_names("http://web/v2", records, "default") == "http://web/v2"
    assert rewrite_cluster_names("http://web.default.svc/v2", records, "default") == "http://127.96.0.10/v2"
    assert rewrite_cluster_names("serve web traffic", records, "default") == "serve web traffic"
    assert rewrite_cluster_names("/data/web.default/x", records, "default") == "/data/web.default/x"
    assert rewrite_cluster_names("model.pt", records, "default") == "model.pt"


def test_the_kubelet_waits_only_for_rendezvous_peers() -> None:
    services = [svc("peers"), svc("web", ip="127.96.0.10")]
    assert unresolved_cluster_names("r0.peers:29500", "default", services) == ["r0.peers"]
    assert unresolved_cluster_names("r0.peers.default.svc.cluster.local", "default", services)
    assert unresolved_cluster_names("collector.monitoring.svc:4317", "default", services) == []
    assert unresolved_cluster_names("web.default", "default", services) == []


def test_service_links_like_docker_links() -> None:
    env = service_env([svc("my-api", ip="127.96.0.7"), svc("other", ns="x", ip="127.96.0.8")], "default")
    assert env["MY_API_SERVICE_HOST"] == "127.96.0.7"
    assert env["MY_API_SERVICE_PORT"] == "8080"
    assert env["MY_API_SERVICE_PORT_HTTP"] == "8080"
    assert env["MY_API_PORT_8080_TCP_ADDR"] == "127.96.0.7"
    assert not any(k.startswith("OTHER_") for k in env)


def test_pod_ips_are_unique_and_not_reused_at_once() -> None:
    ips = IPAllocator(busy=set)
    ips.seen("127.244.0.9")
    a = ips.allocate("a")
    b = ips.allocate("b")
    assert a == "127.244.0.10"
    assert b == "127.244.0.11"
    ips.release("a")
    assert ips.allocate("c") == "127.244.0.12"
    assert ips.allocate("b") == b


def test_addresses_bound_by_other_planes_are_skipped() -> None:
    ips = IPAllocator(busy=lambda: {"127.244.0.2", "127.244.0.3"})
    assert ips.allocate("a") == "127.244.0.4"
    other = IPAllocator(seed="/tmp/another-plane", busy=set)
    assert other.allocate("a") != "127.244.0.2"


class Store:
    """ConfigMaps and Secrets in memory: container_env only reads them."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects

    async def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        from modelops_local.client import ApiError

        if (plural, name) not in self.objects:
            raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
        return self.objects[(plural, name)]

    async def create(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("container_env never creates")


def test_env_sources_resolve_like_the_kubelet() -> None:
    import asyncio
    import base64

    from modelops_local.nodes.containers import container_env

    store = Store(
        {
            ("configmaps", "cfg"): {"data": {"mode": "fast"}},
            ("secrets", "creds"): {"data": {"token": base64.b64encode(b"s3cr3t").decode()}},
        }
    )
    container = {
        "name": "main",
        "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}},
        "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "S_"}],
        "env": [
            {
                "name": "MEM_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {
                "name": "CPU_M",
                "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
            },
            {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {
                "name": "MISSING",
                "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": True}},
            },
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
    }
    pod = {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"nodeName": "n1", "containers": [container]},
    }
    env = asyncio.run(container_env(store, pod, container, {"cpu": "4"}, {"WEB_SERVICE_HOST": "127.96.0.9"}))
    assert env["S_token"] == "s3cr3t"
    assert env["MEM_MI"] == "1024"
    assert env["CPU_M"] == "250"
    assert env["CPU_LIMIT"] == "4"  # no limit: the node's allocatable, as the downward API reports
    assert "MISSING" not in env
    assert env["MODE"] == "fast"
    assert env["NODE"] == "n1"
    assert env["WEB_SERVICE_HOST"] == "127.96.0.9"
