"""The local kubelet as a user sees it through kubectl: pods run, log, fail, restart, stop and talk."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_nodes import WORKER_IMAGE, Plane, start_apiserver, start_plane, wait_for


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    yield from start_plane(
        tmp_path_factory.mktemp("kubelet"),
        *("--nodes", "1", "--gpus", "2", "--backoff-base", "1", "--config-resync-seconds", "1"),
    )


def pod(name: str, code: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": WORKER_IMAGE, "command": ["python", "-c", code]}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": spec.pop("labels", {})},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def state(p: dict[str, Any], container: int = 0) -> dict[str, Any]:
    statuses = p.get("status", {}).get("containerStatuses") or [{}]
    return statuses[container].get("state", {})  # type: ignore[no-any-return]


def condition(p: dict[str, Any], type_: str) -> str | None:
    for c in p.get("status", {}).get("conditions") or []:
        if c["type"] == type_:
            return str(c["status"])
    return None


def test_python_pod_succeeds_with_readable_logs_and_downward_env(plane: Plane) -> None:
    code = (
        "import os; print('hello from', os.environ['POD'], os.environ['IP']);"
        "print('gpus', os.environ.get('NVIDIA_VISIBLE_DEVICES'), repr(os.environ['CUDA_VISIBLE_DEVICES']));"
        "open(os.environ['MSG'], 'w').write('{\"accuracy\": 0.9}')"
    )
    manifest = pod(
        "hello",
        code,
        container={
            "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                # The default terminationMessagePath is rewritten to the container's own file.
                {"name": "MSG", "value": "/dev/termination-log"},
            ],
            "resources": {"limits": {"nvidia.com/gpu": "1"}},
        },
    )
    plane.apply(manifest)
    p = plane.wait_phase("hello", "Succeeded")
    ip = p["status"]["podIP"]
    assert ip.startswith("127.244.")
    logs = plane.kubectl("logs", "hello")
    assert f"hello from hello {ip}" in logs
    assert "gpus 0 ''" in logs or "gpus 1 ''" in logs
    terminated = state(p)["terminated"]
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"
    assert terminated["message"] == '{"accuracy": 0.9}'
    assert condition(p, "Ready") == "False"
    assert condition(p, "PodScheduled") == "True"


def test_failing_pod_reports_exit_code_and_termination_message(plane: Plane) -> None:
    manifest = pod(
        "broken",
        # Written as on a cluster: the injected sitecustomize redirects the open().
        "import sys; open('/dev/termination-log', 'w').write('bad config: lr'); sys.exit(3)",
    )
    manifest["spec"]["containers"].append(
        {
            "name": "fallback",
            "image": WORKER_IMAGE,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "command": ["python", "-c", "import sys; print('Traceback: it broke'); sys.exit(4)"],
        }
    )
    plane.apply(manifest)
    p = plane.wait_phase("broken", "Failed")
    by_name = {s["name"]: s["state"]["terminated"] for s in p["status"]["containerStatuses"]}
    assert by_name["main"]["exitCode"] == 3
    assert by_name["main"]["reason"] == "Error"
    assert by_name["main"]["message"] == "bad config: lr"
    assert by_name["fallback"]["exitCode"] == 4
    assert "Traceback: it broke" in by_name["fallback"]["message"]
    assert "Error" in plane.kubectl("get", "pod", "broken")


def test_unknown_image_fails_like_a_pull_error(plane: Plane) -> None:
    manifest = pod("nginx", "")
    manifest["spec"]["containers"][0] = {"name": "main", "image": "nginx:1.27"}
    plane.apply(manifest)
    seen: set[str] = set()

    def reasons() -> bool:
        p = plane.pod("nginx") or {}
        waiting = state(p).get("waiting") or {}
        if waiting.get("reason"):
            seen.add(waiting["reason"])
            assert (
                "runs only the project's images" in waiting.get("message", "")
                or waiting["reason"] != "ErrImagePull"
            )
        return {"ErrImagePull", "ImagePullBackOff"} <= seen

    wait_for("ErrImagePull then ImagePullBackOff", reasons, timeout=30)
    assert (plane.pod("nginx") or {})["status"]["phase"] == "Pending"
    assert "Failed to pull image" in plane.kubectl("describe", "pod", "nginx")
    plane.kubectl("delete", "pod", "nginx", "--wait=true")


def test_readiness_probe_gates_ready(plane: Plane) -> None:
    server = (
        "import http.server, os\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if os.path.exists('/flags/ready') else 503); self.end_headers()\n"
        "http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n"
    )
    manifest = pod(
        "gated",
        server,
        restartPolicy="Always",
        volumes=[{"name": "flags", "emptyDir": {}}],
        container={
            "ports": [{"name": "http", "containerPort": 8080}],
            "volumeMounts": [{"name": "flags", "mountPath": "/flags"}],
            "readinessProbe": {
                "httpGet": {"path": "/", "port": "http"},
                "periodSeconds": 1,
                "failureThreshold": 1,
            },
        },
    )
    plane.apply(manifest)
    plane.wait_pod(
        "gated",
        lambda p: "Readiness probe failed" in plane.kubectl("describe", "pod", "gated"),
        "a failed readiness probe",
    )
    p = plane.pod("gated") or {}
    assert p["status"]["phase"] == "Running"
    assert condition(p, "Ready") == "False"
    assert p["status"]["containerStatuses"][0]["ready"] is False
    (plane.pod_dir("gated") / "volumes" / "flags" / "ready").write_text("")
    p = plane.wait_pod("gated", lambda p: condition(p, "Ready") == "True", "Ready=True")
    assert p["status"]["containerStatuses"][0]["ready"] is True
    plane.kubectl("delete", "pod", "gated", "--wait=true")


def test_on_failure_restarts_and_keeps_previous_logs(plane: Plane) -> None:
    code = (
        "import os, sys\n"
        "p = '/work/count'\n"
        "n = int(open(p).read()) if os.path.exists(p) else 0\n"
        "open(p, 'w').write(str(n + 1))\n"
        "print('attempt', n)\n"
        "sys.exit(0 if n >= 1 else 1)\n"
    )
    manifest = pod(
        "flaky",
        code,
        restartPolicy="OnFailure",
        volumes=[{"name": "work", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
    )
    plane.apply(manifest)
    p = plane.wait_phase("flaky", "Succeeded")
    status = p["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert "attempt 1" in plane.kubectl("logs", "flaky")
    assert "attempt 0" in plane.kubectl("logs", "flaky", "--previous")


def test_crash_loop_backs_off(plane: Plane) -> None:
    plane.apply(pod("crasher", "import sys; sys.exit(2)", restartPolicy="Always"))
    p = plane.wait_pod(
        "crasher",
        lambda p: (state(p).get("waiting") or {}).get("reason") == "CrashLoopBackOff",
        "CrashLoopBackOff",
    )
    status = p["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["exitCode"] == 2
    assert status["restartCount"] >= 1
    assert p["status"]["phase"] == "Running"
    plane.kubectl("delete", "pod", "crasher", "--wait=true")


def test_delete_sends_sigterm_then_removes_the_pod(plane: Plane) -> None:
    code = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('got SIGTERM, saving checkpoint', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('running', flush=True)\n"
        "while True: time.sleep(0.1)\n"
    )
    plane.apply(pod("sleeper", code, terminationGracePeriodSeconds=10))
    plane.wait_pod("sleeper", lambda p: "running" in plane.kubectl("logs", "sleeper", check=False), "output")
    log_file = plane.pod_dir("sleeper") / "main" / "0.log"
    plane.kubectl("delete", "pod", "sleeper", "--wait=false")
    wait_for("the pod to disappear", lambda: plane.pod("sleeper") is None)
    assert "got SIGTERM, saving checkpoint" in log_file.read_text()


def test_process_that_ignores_sigterm_is_killed_after_the_grace_period(plane: Plane) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    plane.apply(pod("stubborn", code, terminationGracePeriodSeconds=1))
    plane.wait_pod("stubborn", lambda p: "up" in plane.kubectl("logs", "stubborn", check=False), "output")
    pid = int((plane.pod_dir("stubborn") / "main" / "pid").read_text())
    plane.kubectl("delete", "pod", "stubborn", "--wait=false")
    wait_for("the pod to disappear", lambda: plane.pod("stubborn") is None)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_crashing_pod_leaves_others_running(plane: Plane) -> None:
    plane.apply(
        pod("steady", "import time; print('steady', flush=True); time.sleep(600)", restartPolicy="Always")
    )
    plane.wait_phase("steady", "Running")
    pid = int((plane.pod_dir("steady") / "main" / "pid").read_text())
    plane.apply(pod("segv", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))
    p = plane.wait_phase("segv", "Failed")
    assert state(p)["terminated"]["exitCode"] == 128 + signal.SIGSEGV
    steady = plane.pod("steady") or {}
    assert steady["status"]["phase"] == "Running"
    assert steady["status"]["containerStatuses"][0]["restartCount"] == 0
    os.kill(pid, 0)  # still alive
    plane.kubectl("delete", "pod", "steady", "--grace-period=1", "--wait=true")


def test_config_secret_downward_volumes_and_env(plane: Plane) -> None:
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg"},
            "data": {"lr": "0.1", "mode": "fast"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"token": "s3cr3t"},
        },
    )
    code = (
        "import os\n"
        "print('cm', open('/etc/cfg/lr').read(), 'secret', open('/etc/creds/token').read())\n"
        "print('labels', open('/etc/info/labels').read().strip())\n"
        "print('env', os.environ['LR'], os.environ['TOKEN'], os.environ['CFG_mode'], os.environ['GREETING'])\n"
        "print('cwd', os.getcwd().endswith('/rootfs/app'), os.path.exists('../etc/cfg/lr'))\n"
    )
    manifest = pod(
        "configured",
        code,
        labels={"team": "ml"},
        volumes=[
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "creds", "secret": {"secretName": "creds"}},
            {
                "name": "info",
                "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
            },
        ],
        container={
            "workingDir": "/app",
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "creds", "mountPath": "/etc/creds"},
                {"name": "info", "mountPath": "/etc/info"},
            ],
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "LR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "lr"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "GREETING", "value": "lr=$(LR) $$(LR)"},
            ],
        },
    )
    plane.apply(manifest)
    plane.wait_phase("configured", "Succeeded")
    logs = plane.kubectl("logs", "configured")
    assert "cm 0.1 secret s3cr3t" in logs
    assert 'labels team="ml"' in logs
    assert "env 0.1 s3cr3t fast lr=0.1 $(LR)" in logs
    assert "cwd True True" in logs


def test_missing_configmap_is_a_config_error_until_it_exists(plane: Plane) -> None:
    manifest = pod(
        "needs-cfg",
        "import os; print('got', os.environ['X'])",
        container={"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "x"}}}]},
    )
    plane.apply(manifest)
    p = plane.wait_pod(
        "needs-cfg",
        lambda p: (state(p).get("waiting") or {}).get("reason") == "CreateContainerConfigError",
        "CreateContainerConfigError",
    )
    assert state(p)["waiting"]["message"] == 'configmap "later" not found'
    plane.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"}, "data": {"x": "42"}})
    plane.wait_phase("needs-cfg", "Succeeded")
    assert "got 42" in plane.kubectl("logs", "needs-cfg")


def test_init_containers_run_first_in_order(plane: Plane) -> None:
    manifest = pod(
        "with-init",
        "print(open('/shared/log').read())",
        volumes=[{"name": "shared", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
    )
    mount = [{"name": "shared", "mountPath": "/shared"}]
    manifest["spec"]["initContainers"] = [
        {"name": f"init-{i}", "image": WORKER_IMAGE, "volumeMounts": mount,
         "command": ["python", "-c", f"open('/shared/log', 'a').write('init-{i};')"]}
        for i in (1, 2)
    ]  # fmt: skip
    plane.apply(manifest)
    p = plane.wait_phase("with-init", "Succeeded")
    assert "init-1;init-2;" in plane.kubectl("logs", "with-init")
    assert [s["state"]["terminated"]["reason"] for s in p["status"]["initContainerStatuses"]] == [
        "Completed"
    ] * 2
    assert condition(p, "Initialized") == "True"


def test_services_resolve_and_pods_share_a_port(plane: Plane) -> None:
    server = (
        "import http.server, os\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(os.environ['NAME'].encode())\n"
        "http.server.HTTPServer(('0.0.0.0', 9090), H).serve_forever()\n"
    )
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ranks"},
            "spec": {"clusterIP": "None", "selector": {"app": "rank"}, "ports": [{"port": 9090}]},
        }
    ]
    for i in range(2):
        docs.append(
            pod(
                f"rank-{i}",
                server,
                labels={"app": "rank"},
                restartPolicy="Always",
                hostname=f"rank-{i}",
                subdomain="ranks",
                container={"env": [{"name": "NAME", "value": f"rank-{i}"}]},
            )
        )
    plane.apply(*docs)
    for i in range(2):
        plane.wait_phase(f"rank-{i}", "Running")
    client = (
        "import os, urllib.request\n"
        "for host in ['rank-0.ranks', 'rank-1.ranks.default.svc.cluster.local']:\n"
        "    print(host, urllib.request.urlopen(f'http://{host}:9090/', timeout=5).read().decode())\n"
        "print('master', os.environ['MASTER'])\n"
    )
    manifest = pod("client", client, container={"env": [{"name": "MASTER", "value": "rank-0.ranks:9090"}]})
    plane.apply(manifest)
    plane.wait_pod(
        "client",
        lambda p: p["status"].get("phase") in {"Succeeded", "Failed"},
        "the client to finish",
    )
    logs = plane.kubectl("logs", "client")
    rank0_ip = (plane.pod("rank-0") or {})["status"]["podIP"]
    assert "rank-0.ranks rank-0" in logs, logs
    assert "rank-1.ranks.default.svc.cluster.local rank-1" in logs, logs
    # Env values carry IPs for code that does not resolve through Python (torch's TCPStore).
    assert f"master {rank0_ip}:9090" in logs
    for i in range(2):
        plane.kubectl("delete", "pod", f"rank-{i}", "--grace-period=1", "--wait=false")


def test_node_restart_resumes_running_pods(plane: Plane) -> None:
    plane.apply(
        pod("survivor", "import time; print('up', flush=True); time.sleep(600)", restartPolicy="Always")
    )
    plane.wait_phase("survivor", "Running")
    ip = (plane.pod("survivor") or {})["status"]["podIP"]
    plane.stop("nodes")
    plane.start_nodes()
    p = plane.wait_pod(
        "survivor",
        lambda p: restarts(p) == 1 and "running" in state(p),
        "a restart after the kubelet came back",
    )
    assert p["status"]["podIP"] == ip
    assert p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 137
    plane.kubectl("delete", "pod", "survivor", "--grace-period=1", "--wait=true")


def test_gpus_are_assigned_distinct_devices(plane: Plane, tmp_path: Path) -> None:
    code = (
        "import os, time; print('devices', os.environ['NVIDIA_VISIBLE_DEVICES'], flush=True); time.sleep(600)"
    )
    gpu = {"resources": {"limits": {"nvidia.com/gpu": "1"}}}
    plane.apply(pod("gpu-a", code, container=gpu), pod("gpu-b", code, container=gpu))
    devices = set()
    for name in ("gpu-a", "gpu-b"):
        plane.wait_pod(name, lambda p, n=name: "devices" in plane.kubectl("logs", n, check=False), "output")
        devices.add(plane.kubectl("logs", name).split()[1])
    assert devices == {"0", "1"}
    plane.kubectl("delete", "pod", "gpu-a", "gpu-b", "--grace-period=1", "--wait=true")


def test_failing_liveness_probe_restarts_the_container(plane: Plane) -> None:
    manifest = pod(
        "unhealthy",
        "import time; print('serving nothing', flush=True); time.sleep(600)",
        restartPolicy="Always",
        terminationGracePeriodSeconds=1,
        container={"livenessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1, "failureThreshold": 2}},
    )
    plane.apply(manifest)
    p = plane.wait_pod("unhealthy", lambda p: restarts(p) >= 1, "a liveness restart")
    assert p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 128 + signal.SIGTERM
    describe = plane.kubectl("describe", "pod", "unhealthy")
    assert "Liveness probe failed" in describe
    assert "failed liveness probe, will be restarted" in describe
    plane.kubectl("delete", "pod", "unhealthy", "--wait=true")


def test_startup_probe_holds_back_started_and_ready(plane: Plane) -> None:
    check = "import os, sys; sys.exit(0 if os.path.exists('/flags/started') else 1)"
    manifest = pod(
        "slow-start",
        "import time; time.sleep(600)",
        restartPolicy="Always",
        terminationGracePeriodSeconds=1,
        volumes=[{"name": "flags", "emptyDir": {}}],
        container={
            "volumeMounts": [{"name": "flags", "mountPath": "/flags"}],
            "startupProbe": {
                "exec": {"command": ["python", "-c", check]},
                "periodSeconds": 1,
                "failureThreshold": 600,
            },
        },
    )
    plane.apply(manifest)
    plane.wait_pod(
        "slow-start",
        lambda p: "Startup probe failed" in plane.kubectl("describe", "pod", "slow-start"),
        "a failed startup probe",
    )
    status = (plane.pod("slow-start") or {})["status"]["containerStatuses"][0]
    assert "running" in status["state"]
    assert status["started"] is False
    assert status["ready"] is False
    (plane.pod_dir("slow-start") / "volumes" / "flags" / "started").write_text("")
    p = plane.wait_pod("slow-start", lambda p: condition(p, "Ready") == "True", "Ready after startup")
    assert p["status"]["containerStatuses"][0]["started"] is True
    plane.kubectl("delete", "pod", "slow-start", "--wait=true")


def test_active_deadline_fails_the_pod(plane: Plane) -> None:
    plane.apply(
        pod(
            "deadline",
            "import time; time.sleep(600)",
            activeDeadlineSeconds=2,
            terminationGracePeriodSeconds=1,
        )
    )
    p = plane.wait_phase("deadline", "Failed")
    assert p["status"]["reason"] == "DeadlineExceeded"
    assert "terminated" in state(p)


def test_pre_stop_hook_runs_before_sigterm(plane: Plane, tmp_path: Path) -> None:
    code = (
        "import os, signal, sys, time\n"
        "def bye(*_):\n"
        "    print('prestop ran first:', os.path.exists('/out/prestop'), flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('up', flush=True)\n"
        "while True: time.sleep(0.1)\n"
    )
    hook = {"exec": {"command": ["python", "-c", "open('/out/prestop', 'w').write('done')"]}}
    manifest = pod(
        "hooked",
        code,
        terminationGracePeriodSeconds=10,
        volumes=[{"name": "out", "hostPath": {"path": str(tmp_path)}}],
        container={"volumeMounts": [{"name": "out", "mountPath": "/out"}], "lifecycle": {"preStop": hook}},
    )
    plane.apply(manifest)
    plane.wait_pod("hooked", lambda p: "up" in plane.kubectl("logs", "hooked", check=False), "output")
    log_file = plane.pod_dir("hooked") / "main" / "0.log"
    plane.kubectl("delete", "pod", "hooked", "--wait=false")
    wait_for("the pod to disappear", lambda: plane.pod("hooked") is None)
    assert (tmp_path / "prestop").read_text() == "done"
    assert "prestop ran first: True" in log_file.read_text()


def test_memory_over_the_limit_is_oom_killed(plane: Plane) -> None:
    code = "import time; hog = b'x' * (300 * 2**20); print('allocated', flush=True); time.sleep(120)"
    plane.apply(pod("hog", code, container={"resources": {"limits": {"memory": "100Mi"}}}))
    p = plane.wait_phase("hog", "Failed")
    terminated = state(p)["terminated"]
    assert terminated["reason"] == "OOMKilled"
    assert terminated["exitCode"] == 137
    assert "over its memory limit 100Mi" in plane.kubectl("describe", "pod", "hog")


def test_claim_is_mounted_from_its_volumes_host_path_once_bound(plane: Plane, tmp_path: Path) -> None:
    claim_dir = tmp_path / "claim"
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "pv-ckpt"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": str(claim_dir)},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "ckpt"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
                "volumeName": "pv-ckpt",
            },
        },
    )
    manifest = pod(
        "trainer",
        "open('/ckpt/model.txt', 'w').write('weights')",
        volumes=[{"name": "ckpt", "persistentVolumeClaim": {"claimName": "ckpt"}}],
        container={"volumeMounts": [{"name": "ckpt", "mountPath": "/ckpt"}]},
    )
    plane.apply(manifest)
    # The controllers bind claims on a full plane; here the test plays that part once the pod waits.
    wait_for("FailedMount", lambda: "is not bound yet" in plane.kubectl("describe", "pod", "trainer"))
    assert (plane.pod("trainer") or {})["status"]["phase"] == "Pending"
    plane.kubectl(
        "patch", "pvc", "ckpt", "--subresource=status", "--type=merge", "-p", '{"status": {"phase": "Bound"}}'
    )
    plane.wait_phase("trainer", "Succeeded")
    assert (claim_dir / "model.txt").read_text() == "weights"


def test_nodes_carry_on_across_an_api_server_restart(plane: Plane) -> None:
    plane.apply(
        pod("before", "import time; time.sleep(600)", restartPolicy="Always", terminationGracePeriodSeconds=1)
    )
    plane.wait_phase("before", "Running")
    plane.stop("apiserver")
    start_apiserver(plane.dir, plane)
    plane.apply(pod("after", "print('scheduled and run after the restart')"))
    plane.wait_phase("after", "Succeeded", timeout=60)
    assert "after the restart" in plane.kubectl("logs", "after")
    assert (plane.pod("before") or {})["status"]["containerStatuses"][0]["restartCount"] == 0
    plane.kubectl("delete", "pod", "before", "--wait=true")


def test_readiness_gate_holds_ready_until_its_condition_is_true(plane: Plane) -> None:
    manifest = pod(
        "gated-lb",
        "import time; time.sleep(600)",
        restartPolicy="Always",
        terminationGracePeriodSeconds=1,
        readinessGates=[{"conditionType": "example.com/lb-ready"}],
    )
    plane.apply(manifest)
    p = plane.wait_pod("gated-lb", lambda p: condition(p, "ContainersReady") == "True", "containers ready")
    ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "ReadinessGatesNotReady"
    gate = {"status": {"conditions": [{"type": "example.com/lb-ready", "status": "True"}]}}
    plane.kubectl(
        "patch", "pod", "gated-lb", "--subresource=status", "--type=strategic", "-p", json.dumps(gate)
    )
    p = plane.wait_pod("gated-lb", lambda p: condition(p, "Ready") == "True", "Ready once the gate is open")
    assert condition(p, "example.com/lb-ready") == "True"  # the kubelet's own updates keep it
    assert "reason" not in next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
    plane.kubectl("delete", "pod", "gated-lb", "--wait=true")


def test_in_cluster_clients_log_in_with_the_projected_service_account(plane: Plane) -> None:
    probe = plane.kubectl("create", "token", "default", check=False)
    if "NotFound" in probe or "not found" in probe or "the server could not find" in probe:
        pytest.skip("this API server has no TokenRequest (serviceaccounts/token) yet")
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    code = (
        "import json, os, kubernetes\n"
        # Built at run time: the literal mountPath in args would be rewritten to the host directory.
        "sa = json.loads(os.environ['MODELOPS_LOCAL_MOUNTS'])['/var/run/secrets/' + 'kubernetes.io/serviceaccount']\n"
        "from kubernetes.config.incluster_config import InClusterConfigLoader\n"
        "InClusterConfigLoader(token_filename=sa + '/token', cert_filename=sa + '/ca.crt').load_and_set()\n"
        "print('namespace', open(sa + '/namespace').read())\n"
        "print('server version', kubernetes.client.VersionApi().get_code().git_version)\n"
    )
    sources = [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]
    manifest = pod(
        "in-cluster",
        code,
        automountServiceAccountToken=False,
        volumes=[{"name": "sa", "projected": {"sources": sources}}],
        container={"volumeMounts": [{"name": "sa", "mountPath": sa_dir, "readOnly": True}]},
    )
    plane.apply(manifest)
    p = plane.wait_pod(
        "in-cluster", lambda p: p["status"].get("phase") in {"Succeeded", "Failed"}, "the login"
    )
    logs = plane.kubectl("logs", "in-cluster")
    assert p["status"]["phase"] == "Succeeded", logs
    assert "namespace default" in logs
    assert "server version v1." in logs


def test_sidecar_starts_before_the_app_and_stops_after_it(plane: Plane) -> None:
    sidecar_code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('sidecar stopping', flush=True), sys.exit(0)))\n"
        "open('/shared/ready', 'w').write('yes')\n"
        "while True: time.sleep(0.1)\n"
    )
    ready = "import os, sys; sys.exit(0 if os.path.exists('/shared/ready') else 1)"
    manifest = pod(
        "with-sidecar",
        "print('app saw the sidecar:', open('/shared/ready').read())",
        terminationGracePeriodSeconds=5,
        volumes=[{"name": "shared", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
    )
    manifest["spec"]["initContainers"] = [
        {
            "name": "proxy",
            "image": WORKER_IMAGE,
            "restartPolicy": "Always",
            "command": ["python", "-c", sidecar_code],
            "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            "startupProbe": {"exec": {"command": ["python", "-c", ready]}, "periodSeconds": 1},
        }
    ]
    plane.apply(manifest)
    p = plane.wait_pod(
        "with-sidecar",
        lambda p: "terminated" in ((p["status"].get("initContainerStatuses") or [{}])[0].get("state") or {}),
        "the sidecar to stop after the app",
    )
    assert p["status"]["phase"] == "Succeeded"
    assert "app saw the sidecar: yes" in plane.kubectl("logs", "with-sidecar")
    assert "sidecar stopping" in plane.kubectl("logs", "with-sidecar", "-c", "proxy")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {b"Z", b"X"}


def test_a_killed_kubelet_leaves_no_container_processes_behind(plane: Plane) -> None:
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "open('/work/child', 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    manifest = pod(
        "parent",
        code,
        restartPolicy="Always",
        terminationGracePeriodSeconds=1,
        volumes=[{"name": "work", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
    )
    plane.apply(manifest)
    child_file = wait_for(
        "the grandchild's pid",
        lambda: next(
            (p for p in plane.dir.glob("pods/default/parent/*/volumes/work/child") if p.read_text()), None
        ),
    )
    grandchild = int(child_file.read_text())
    main_pid = int((plane.pod_dir("parent") / "main" / "pid").read_text())
    plane.procs.pop("nodes").kill()  # no chance to clean up
    wait_for("the container's main process to die with the kubelet", lambda: not alive(main_pid))
    assert alive(grandchild)  # only PDEATHSIG so far: the grandchild is an orphan
    plane.start_nodes()
    plane.wait_pod("parent", lambda p: restarts(p) == 1, "a restart", timeout=60)
    wait_for("the orphan to be killed", lambda: not alive(grandchild))
    plane.kubectl("delete", "pod", "parent", "--wait=true")


def test_force_delete_kills_the_processes_at_once(plane: Plane) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    plane.apply(pod("forced", code, terminationGracePeriodSeconds=300))
    plane.wait_pod("forced", lambda p: "up" in plane.kubectl("logs", "forced", check=False), "output")
    pid = int((plane.pod_dir("forced") / "main" / "pid").read_text())
    plane.kubectl("delete", "pod", "forced", "--grace-period=0", "--force")
    assert plane.pod("forced") is None  # gone from the API at once; the kubelet must catch up
    wait_for("the process to be killed", lambda: not alive(pid), timeout=15)


def test_python_code_reaches_volumes_at_their_mount_paths(plane: Plane) -> None:
    # The path is built at run time, so only the injected pathmap (not args rewriting) can redirect it.
    code = (
        "import os, pathlib\n"
        "root = '/' + 'models'\n"
        "os.makedirs(root + '/v1', exist_ok=True)\n"
        "pathlib.Path(root + '/v1/weights.bin').write_bytes(b'abc')\n"
        "print('listed', os.listdir(root + '/v1'), os.path.getsize(root + '/v1/weights.bin'))\n"
    )
    manifest = pod(
        "writer",
        code,
        volumes=[{"name": "models", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "models", "mountPath": "/models"}]},
    )
    plane.apply(manifest)
    plane.wait_phase("writer", "Succeeded")
    assert "listed ['weights.bin'] 3" in plane.kubectl("logs", "writer")
    assert (plane.pod_dir("writer") / "volumes" / "models" / "v1" / "weights.bin").read_bytes() == b"abc"
    assert not os.path.exists("/models")


def test_configmap_edits_reach_the_mounted_file(plane: Plane) -> None:
    plane.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "live"}, "data": {"rate": "1"}}
    )
    manifest = pod(
        "reader",
        "import time; time.sleep(600)",
        restartPolicy="Always",
        terminationGracePeriodSeconds=1,
        volumes=[{"name": "cfg", "configMap": {"name": "live"}}],
        container={"volumeMounts": [{"name": "cfg", "mountPath": "/etc/live"}]},
    )
    plane.apply(manifest)
    plane.wait_phase("reader", "Running")
    rate = plane.pod_dir("reader") / "volumes" / "cfg" / "rate"
    assert rate.read_text() == "1"
    plane.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "live"}, "data": {"rate": "2"}}
    )
    wait_for("the new value in the file", lambda: rate.read_text() == "2")
    plane.kubectl("delete", "pod", "reader", "--wait=false")


def test_env_values_and_command_paths_arrive_as_written_on_a_cluster(plane: Plane) -> None:
    # A Service named like a model: its name in an env value is the model's name, not a host.
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo"},
            "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 80}]},
        }
    )
    # A script kept in the plane's directory (under /tmp in tests) while the pod mounts an emptyDir
    # at /tmp: the plane's own files are the "image" here, never the volume.
    writer = plane.dir / "fidelity_writer.py"
    writer.write_text(
        "open('/tmp/run.py', 'w').write('import os, socket, sys\\n"
        'print("model", os.environ["MODELOPS_MODEL_NAME"], "url", os.environ["URL"])\\n'
        'print("args", sys.argv[1:])\\n'
        'print("resolves", socket.gethostbyname("echo"))\\n\')\n'
    )
    mount = [{"name": "scratch", "mountPath": "/tmp"}]
    manifest = pod(
        "fidelity",
        "",
        volumes=[{"name": "scratch", "emptyDir": {}}],
        # Missing pull Secret: a Warning event, yet the (public) image is pulled and runs, as by a kubelet.
        imagePullSecrets=[{"name": "no-such-registry-login"}],
        initContainers=[
            {
                "name": "write",
                "image": WORKER_IMAGE,
                "command": ["python", str(writer)],
                "volumeMounts": mount,
            }
        ],
        container={
            # The script lies in the volume (a command path under the mountPath); /tmpfoo is not it.
            "command": ["python", "/tmp/run.py"],
            "args": ["/tmpfoo/x", "/tmp+x"],
            "env": [
                {"name": "MODELOPS_MODEL_NAME", "value": "echo"},
                {"name": "URL", "value": "http://echo:80/v2"},
            ],
            "volumeMounts": mount,
        },
    )
    plane.apply(manifest)
    plane.wait_phase("fidelity", "Succeeded", timeout=60)
    logs = plane.kubectl("logs", "fidelity")
    svc_ip = json.loads(plane.kubectl("get", "service", "echo", "-o", "json"))["spec"]["clusterIP"]
    assert "model echo url http://echo:80/v2" in logs, logs
    assert "args ['/tmpfoo/x', '/tmp+x']" in logs, logs
    # The name still resolves when the program looks it up, as cluster DNS would answer.
    assert f"resolves {svc_ip}" in logs, logs
    assert (plane.pod_dir("fidelity") / "volumes" / "scratch" / "run.py").exists()
    describe = plane.kubectl("describe", "pod", "fidelity")
    assert "FailedToRetrieveImagePullSecret" in describe, describe
    assert "Unable to retrieve some image pull secrets (no-such-registry-login)" in describe, describe
    plane.kubectl("delete", "service", "echo", "--wait=false")


def restarts(pod: dict[str, Any]) -> int:
    """The first container's restart count; 0 before the kubelet has reported any container status."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return int(statuses[0].get("restartCount") or 0)
