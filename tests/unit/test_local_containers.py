"""The pure parts of the container runtime and of exec/port-forward: SPDY framing, RBAC, engine flags.

The real thing (kubectl against a podman plane) is tests/e2e/test_containers_e2e.py; these pin what
that test cannot show cheaply: SPDY bytes as moby/spdystream (kubectl's implementation) writes them,
every way an RBAC rule can match or not, and the engine flags a pod spec turns into.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from modelops_local.apiserver import rbac, spdy, streaming
from modelops_local.apiserver.errors import ApiError
from modelops_local.nodes import engine

# A SYN_STREAM for stream 1 with the header `streamtype: stdout`, as moby/spdystream v0.2 writes it
# (Go's zlib with the SPDY/3 dictionary): the bytes a real client sends.
MOBY_SYN_STREAM = (
    b"\x80\x03\x00\x01\x00\x00\x00\x2b\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x78\xf9\xe3\xc6\xa7\xc2"
    b"\x62\x60\x60\x60\x04\xa7\xb3\x92\xa2\xd4\xc4\x5c\x68\x51\xc2\x56\x5c\x92\x92\x5f\x5a\x02\x00\x00"
    b"\x00\xff\xff"
)


def test_spdy_reads_a_header_block_compressed_by_spdystream_even_split_across_messages() -> None:
    codec = spdy.Codec()
    assert codec.feed(MOBY_SYN_STREAM[:11]) == []
    (frame,) = codec.feed(MOBY_SYN_STREAM[11:])
    assert (frame.kind, frame.stream_id, frame.headers) == (spdy.SYN_STREAM, 1, {"streamtype": "stdout"})


def test_spdy_frames_the_server_writes() -> None:
    server, client = spdy.Codec(), spdy.Codec()
    wire = server.syn_reply(3) + server.data(3, b"x" * 70000, fin=True) + server.ping(7)
    wire += server.rst_stream(5)
    frames = client.feed(wire)
    kinds = [(f.kind, f.stream_id, len(f.data), f.flags) for f in frames]
    # 70000 bytes go as two DATA frames, FIN on the last only.
    assert kinds == [(spdy.SYN_REPLY, 3, 0, 0), (0, 3, 65535, 0), (0, 3, 4465, spdy.FLAG_FIN),
                     (spdy.PING, 0, 0, 0), (spdy.RST_STREAM, 5, 0, 0)]  # fmt: skip
    assert frames[3].status == 7
    with pytest.raises(spdy.ProtocolError, match="SPDY version 2"):
        spdy.Codec().feed(struct.pack(">HHI", 0x8002, 1, 0))


class Store:
    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        self.objects = objects

    def list(self, skey: str, ns: str | None) -> list[dict[str, Any]]:
        return [
            o for o in self.objects.get(skey, []) if ns is None or o["metadata"].get("namespace", "") == ns
        ]

    def get(self, skey: str, ns: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.list(skey, ns) if o["metadata"]["name"] == name), None)


class Who:
    def __init__(self, username: str, *groups: str) -> None:
        self.username, self.groups = username, ("system:authenticated", *groups)


def role(kind: str, name: str, ns: str, **rule: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": ns}, "rules": [{"apiGroups": [""], **rule}]}


def binding(name: str, ns: str, ref: tuple[str, str], *subjects: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "roleRef": {"kind": ref[0], "name": ref[1]},
            "subjects": list(subjects)}  # fmt: skip


SA = "system:serviceaccount:team:debugger"


def test_rbac_grants_exec_only_as_create_on_the_subresource() -> None:
    store = Store(
        {
            "rbac.authorization.k8s.io/roles": [
                role("Role", "exec", "team", resources=["pods/exec"], verbs=["create"]),
                role("Role", "get-only", "team", resources=["pods/exec"], verbs=["get"]),
                role("Role", "one-pod", "team", resources=["pods/*"], verbs=["*"], resourceNames=["web"]),
            ],
            "rbac.authorization.k8s.io/clusterroles": [
                role("ClusterRole", "pf", "", resources=["pods/portforward"], verbs=["create"])
            ],
            "rbac.authorization.k8s.io/rolebindings": [
                binding("a", "team", ("Role", "exec"), {"kind": "ServiceAccount", "name": "debugger"}),
                binding("b", "team", ("Role", "get-only"), {"kind": "User", "name": "viewer"}),
                binding("c", "team", ("Role", "one-pod"), {"kind": "Group", "name": "web-admins"}),
            ],
            "rbac.authorization.k8s.io/clusterrolebindings": [
                binding(
                    "d",
                    "",
                    ("ClusterRole", "pf"),
                    {"kind": "ServiceAccount", "name": "fwd", "namespace": "ops"},
                )
            ],
        }
    )
    ok = lambda who, resource, ns="team", name="x": rbac.allowed(store, who, "create", "", resource, ns, name)  # noqa: E731
    assert ok(Who(SA), "pods/exec")
    assert not ok(Who(SA), "pods/exec", ns="other"), "a RoleBinding holds in its own namespace only"
    assert not ok(Who(SA), "pods/portforward")
    assert not ok(Who("viewer"), "pods/exec"), "get on pods/exec is not create"
    assert ok(Who("someone", "web-admins"), "pods/portforward", name="web")
    assert not ok(Who("someone", "web-admins"), "pods/portforward", name="db"), "resourceNames"
    assert ok(Who("system:serviceaccount:ops:fwd"), "pods/portforward", ns="anywhere"), "ClusterRoleBinding"
    assert ok(Who("kubernetes-admin", "system:masters"), "pods/exec")
    with pytest.raises(ApiError) as refused:
        rbac.require(store, Who("viewer"), "create", "pods/exec", "team", "web")
    assert refused.value.code == 403
    assert refused.value.message == (
        'pods "web" is forbidden: User "viewer" cannot create resource "pods/exec" in API group "" in the '
        'namespace "team"'
    )


def test_stream_paths_are_the_pod_subresources() -> None:
    assert streaming.is_stream_path("/api/v1/namespaces/a/pods/b/exec")
    assert streaming.is_stream_path("/api/v1/namespaces/a/pods/b/portforward")
    assert not streaming.is_stream_path("/api/v1/namespaces/a/pods/b/log")
    assert not streaming.is_stream_path("/api/v1/namespaces/a/pods/exec")


def test_engine_flags_from_a_pod_spec() -> None:
    assert engine.pull_policy({"image": "localhost/x"}) == "Always"
    assert engine.pull_policy({"image": "localhost/x:latest"}) == "Always"
    assert engine.pull_policy({"image": "localhost:5000/x:1"}) == "IfNotPresent"
    assert engine.pull_policy({"image": "x@sha256:" + "0" * 64}) == "IfNotPresent"
    assert engine.pull_policy({"image": "x:1", "imagePullPolicy": "Never"}) == "Never"
    pod = {"spec": {"securityContext": {"runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [3000]}}}
    container = {
        "securityContext": {
            "runAsGroup": 1001,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
        "command": ["python3", "-c", "$(CODE)"],
        "args": ["$(MISSING)", "$$(ESCAPED)"],
    }
    assert engine.security_args(pod, container, 2000) == [
        "--user", "1000:1001", "--group-add", "3000", "--group-add", "2000", "--read-only",
        "--security-opt", "no-new-privileges", "--cap-drop", "ALL",
    ]  # fmt: skip
    assert engine.limit_args(container) == ["--memory", str(64 * 2**20), "--cpus", "0.5"]
    from modelops_local.nodes.containers import expand

    before, after = engine.command_args(container, lambda t: expand(t, {"CODE": "print(1)"}))
    assert before == ["--entrypoint", "python3"]
    assert after == ["-c", "print(1)", "$(MISSING)", "$(ESCAPED)"]
    assert engine.command_args({"args": ["serve"]}, str) == ([], ["serve"]), "args alone replace CMD"
    assert engine.image_uid("") == 0 and engine.image_uid("65532:65532") == 65532
    assert engine.image_uid("nonroot") is None


def test_a_missing_engine_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(engine.EngineError, match=r"`docker` command is not installed.*--runtime process"):
        engine.Engine.detect("docker")
