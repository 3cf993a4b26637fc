"""The local plane with `--runtime podman`: user images run as real containers, and kubectl reaches in.

One plane for the module (`modelops local up --runtime podman`, operator included), driven with the real
kubectl 1.33; images are built here from Debian packages (`containerkit.py`), no registry anywhere:

- a TrainingJob with a user's own image (`spec.image`: a pure-Python trainer, no modelops code in it)
  trains in a container as the operator's restricted pod (user 65532, read-only root, the checkpoint
  claim bind-mounted) and reports its result through the termination message;
- an InferenceService with a custom predictor image becomes Ready on its V2 health probes and answers
  V2 inference through `kubectl port-forward svc/...`;
- the container runtime applies the securityContext (user, groups, read-only root), the memory limit
  (OOMKilled, 137), exit codes, logs and termination messages, and a missing image is ErrImagePull with
  the engine's own reason;
- `kubectl exec` (stdout and stderr apart, exit codes, stdin), `kubectl cp` (files and directories, both
  ways) and `kubectl port-forward` (real HTTP) work on a container pod and on a process pod (the worker
  image, which podman does not hold, runs as a process on the same plane: both runtimes, one plane);
- a ServiceAccount without `pods/exec` / `pods/portforward` is refused with the API server's 403, one
  with a Role granting `create` on them is let in, and the audit log records `create`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import containerkit
import pytest
from localplane import KUBECTL, Plane

pytestmark = pytest.mark.e2e

PROCESS_IMAGE = "ghcr.io/modelops/worker:containers-test"  # podman holds no such image: a process pod

TRAINER = r'''
"""A user's training code in their own image: plain Python, the modelops contract by hand."""
import hashlib, json, math, os, random

random.seed(0)
points = [(random.uniform(-1, 1), random.uniform(-1, 1)) for _ in range(400)]
data = [((a, b), 1 if a + b > 0 else 0) for a, b in points]
w, bias, lr = [0.0, 0.0], 0.0, float(os.environ.get("LEARNING_RATE", "0.5"))
for epoch in range(30):
    for (a, b), label in data:
        p = 1 / (1 + math.exp(-(w[0] * a + w[1] * b + bias)))
        w[0] -= lr * (p - label) * a; w[1] -= lr * (p - label) * b; bias -= lr * (p - label)
accuracy = sum((w[0] * a + w[1] * b + bias > 0) == bool(label) for (a, b), label in data) / len(data)
out = os.environ["MODELOPS_OUTPUT_DIR"]
os.makedirs(out, exist_ok=True)
path = os.path.join(out, "model.json")
with open(path, "w") as f:
    json.dump({"w": w, "b": bias}, f)
digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
print(f"trained as uid {os.getuid()}: accuracy {accuracy:.3f}", flush=True)
try:
    open("/i-am-read-only", "w")
    print("root file system: writable")
except OSError:
    print("root file system: read-only")
result = {"status": "Succeeded", "reason": "Succeeded", "message": "30 epochs in a user image",
          "metrics": {"accuracy": accuracy, "loss": 0.1},
          "artifact": {"path": "model.json", "sha256": digest, "sizeBytes": os.path.getsize(path),
                       "format": "torchscript"}}
with open("/dev/termination-log", "w") as f:
    f.write(json.dumps(result))
'''

PREDICTOR = r'''
"""A user's own predictor image: the Open Inference Protocol v2 over http.server."""
import http.server, json
from affine import affine  # from the image's own PYTHONPATH (/app/lib), kept next to the plane's

class H(http.server.BaseHTTPRequestHandler):
    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        if self.path in ("/v2/health/live", "/v2/health/ready"):
            return self.answer(200, {})
        self.answer(404, {"error": "no such path"})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        doubled = [affine(x) for x in body["inputs"][0]["data"]]
        self.answer(200, {"model_name": "affine", "outputs": [{"name": "y", "datatype": "FP64",
                                                              "shape": [len(doubled)], "data": doubled}]})
    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
'''

WEB = "import http.server as h, functools, os; os.chdir('/data'); h.ThreadingHTTPServer(('', 8080), h.SimpleHTTPRequestHandler).serve_forever()"


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    return {
        "base": containerkit.base_image(),
        "trainer": containerkit.build(
            "modelops-test-trainer",
            {"train.py": TRAINER},
            'FROM {BASE}\nCOPY train.py /app/train.py\nUSER 65532:65532\nENTRYPOINT ["python3", "/app/train.py"]\n',
        ),
        "predictor": containerkit.build(
            "modelops-test-predictor",
            {"serve.py": PREDICTOR, "lib/affine.py": "def affine(x):\n    return 2 * x + 1\n"},
            'FROM {BASE}\nCOPY serve.py /app/serve.py\nCOPY lib /app/lib\nENV PYTHONPATH=/app/lib\nUSER 65532:65532\nENTRYPOINT ["python3", "/app/serve.py"]\n',
        ),
    }


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, images: dict[str, str]) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("containers") / "plane")
    lp.env.update(containerkit.podman_env())
    lp.modelops("local", "up", "--runtime", "podman", "--dir", str(lp.dir))
    try:
        pods = [
            pod("web-container", images["base"], ["python3", "-c", WEB]),
            pod("web-process", PROCESS_IMAGE, ["python", "-c", WEB]),
        ]
        lp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
        lp.kubectl("wait", "pod/web-container", "pod/web-process", "--for=condition=Ready", "--timeout=120s",
                   timeout=130)  # fmt: skip
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def pod(name: str, image: str, command: list[str], **extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }
    container.update(extra.pop("container", {}))
    container = {k: v for k, v in container.items() if v is not None}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532},
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [container],
            **extra,
        },
    }


def kubectl(
    plane: Plane, *args: str, stdin: bytes | None = None, token: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    auth = [f"--token={token}"] if token else []
    return subprocess.run(
        [str(KUBECTL), *auth, *args], input=stdin, capture_output=True, timeout=120, env=plane.env
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortForward:
    """`kubectl port-forward <target> :<port>` running; `.port` is the local end it chose."""

    def __init__(self, plane: Plane, target: str, remote: int, token: str | None = None) -> None:
        self.local = free_port()
        auth = [f"--token={token}"] if token else []
        self.proc = subprocess.Popen(
            [str(KUBECTL), *auth, "port-forward", target, f"{self.local}:{remote}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=plane.env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if "Forwarding from" not in line:
            self.proc.kill()
            raise AssertionError(
                f"kubectl port-forward {target}: {line}{self.proc.communicate()[1].decode()}"
            )

    def __enter__(self) -> PortForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def http(url: str, body: Any = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, response.read()


def container_id(plane: Plane, name: str) -> str:
    return str(plane.get("pod", name)["status"]["containerStatuses"][0].get("containerID", ""))


RUNTIMES = {"container": "web-container", "process": "web-process"}


def test_the_plane_runs_each_pod_on_the_runtime_that_holds_its_image(plane: Plane) -> None:
    assert container_id(plane, "web-container").startswith("podman://")
    assert container_id(plane, "web-process").startswith("local://")
    node = plane.get("node", "local-node-1")
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("podman://")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_keeps_stdout_stderr_and_the_exit_code_apart(plane: Plane, runtime: str) -> None:
    done = kubectl(
        plane, "exec", RUNTIMES[runtime], "--", "sh", "-c", "echo out; echo err >&2; id -u; exit 7"
    )
    assert done.returncode == 7, done.stderr
    assert done.stdout.decode().splitlines() == ["out", "65532"]
    assert b"err" in done.stderr and b"out" not in done.stderr
    ok = kubectl(plane, "exec", RUNTIMES[runtime], "--", "true")
    assert ok.returncode == 0 and ok.stdout == b""
    missing = kubectl(plane, "exec", RUNTIMES[runtime], "--", "no-such-command")
    assert missing.returncode != 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_passes_stdin_through_to_its_end(plane: Plane, runtime: str) -> None:
    payload = os.urandom(300_000)
    done = kubectl(plane, "exec", "-i", RUNTIMES[runtime], "--", "sh", "-c", "cat > /data/blob; wc -c < /data/blob; sha256sum /data/blob",
                   stdin=payload)  # fmt: skip
    assert done.returncode == 0, done.stderr
    count, digest = done.stdout.decode().split()[:2]
    assert int(count) == len(payload) and digest == hashlib.sha256(payload).hexdigest()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cp_copies_files_and_directories_both_ways(plane: Plane, runtime: str, tmp_path: Path) -> None:
    name = RUNTIMES[runtime]
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    up = kubectl(plane, "cp", str(tree), f"{name}:/data/tree")
    assert up.returncode == 0, up.stderr
    listing = kubectl(
        plane, "exec", name, "--", "sh", "-c", "cd /data/tree && find . -type f | sort && cat a.txt"
    )
    assert listing.stdout.decode().split() == ["./a.txt", "./sub/b.bin", "alpha"]
    back = tmp_path / "back"
    down = kubectl(plane, "cp", f"{name}:/data/tree", str(back))
    assert down.returncode == 0, down.stderr
    assert (back / "a.txt").read_text() == "alpha\n"
    assert (back / "sub" / "b.bin").read_bytes() == (tree / "sub" / "b.bin").read_bytes()
    single = kubectl(plane, "cp", f"{name}:/data/tree/a.txt", str(tmp_path / "single.txt"))
    assert single.returncode == 0 and (tmp_path / "single.txt").read_text() == "alpha\n"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_port_forward_carries_real_http(plane: Plane, runtime: str) -> None:
    name = RUNTIMES[runtime]
    kubectl(plane, "exec", name, "--", "sh", "-c", f"echo hello from {runtime} > /data/hello.txt")
    big = kubectl(
        plane, "exec", name, "--", "sh", "-c", "head -c 2000000 /dev/zero | tr '\\0' x > /data/big.txt"
    )
    assert big.returncode == 0, big.stderr
    with PortForward(plane, f"pod/{name}", 8080) as pf:
        for _ in range(3):  # one forward, several connections
            code, body = http(f"http://127.0.0.1:{pf.local}/hello.txt")
            assert code == 200 and body == f"hello from {runtime}\n".encode()
        code, body = http(f"http://127.0.0.1:{pf.local}/big.txt")
        assert code == 200 and body == b"x" * 2_000_000


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_official_python_client_execs_and_forwards_too(plane: Plane, runtime: str) -> None:
    """kubernetes-client/python speaks the kubelet's channel protocols (v5/v4), not SPDY."""
    from kubernetes import client, config
    from kubernetes.stream import portforward, stream

    api = client.CoreV1Api(config.new_client_from_config(str(plane.dir / "kubeconfig")))
    name = RUNTIMES[runtime]
    command = ["sh", "-c", "cat > /data/py.txt; echo stored; echo warn >&2; exit 4"]
    resp = stream(api.connect_get_namespaced_pod_exec, name, "default", command=command, stdin=True,
                  stdout=True, stderr=True, tty=False, _preload_content=False)  # fmt: skip
    resp.write_stdin("from python\n")
    resp.update(timeout=1)
    resp.close_channel(0)  # v5: the end of stdin
    resp.run_forever(timeout=30)
    assert not resp.is_open(), "the command ends once its stdin is closed"
    assert (resp.read_stdout(), resp.read_stderr(), resp.returncode) == ("stored\n", "warn\n", 4)
    forward = portforward(api.connect_get_namespaced_pod_portforward, name, "default", ports="8080")
    sock = forward.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET /py.txt HTTP/1.0\r\n\r\n")
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"\r\n\r\nfrom python\n"), answer


def test_port_forward_to_a_closed_port_reports_the_pods_refusal(plane: Plane) -> None:
    with PortForward(plane, "pod/web-container", 9) as pf:
        with pytest.raises(OSError):
            http(f"http://127.0.0.1:{pf.local}/")
        pf.proc.wait(timeout=30)  # kubectl 1.33 ends the forward on a stream error
        stderr = pf.proc.communicate()[1].decode()
    assert "error forwarding port 9 to pod web-container" in stderr and "connection refused" in stderr, stderr


def test_deleting_a_container_pod_sends_sigterm_within_the_grace_period(
    plane: Plane, images: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the container's user 65532 writes here through the bind mount
    code = (
        "import signal, sys, time\n"
        "def term(*a):\n    open('/out/term', 'w').write('TERM'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, term)\nprint('waiting', flush=True)\nwhile True: time.sleep(0.1)"
    )
    manifest = pod("graceful", images["base"], ["python3", "-c", code], container={"readinessProbe": None})
    manifest["spec"]["terminationGracePeriodSeconds"] = 60
    manifest["spec"]["volumes"].append({"name": "out", "hostPath": {"path": str(out)}})
    manifest["spec"]["containers"][0]["volumeMounts"].append({"name": "out", "mountPath": "/out"})
    plane.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    plane.kubectl("wait", "pod/graceful", "--for=condition=Ready", "--timeout=90s", timeout=100)
    plane.wait_for("the container to run", lambda: "waiting" in plane.kubectl("logs", "graceful"), timeout=30)
    began = time.monotonic()
    plane.kubectl("delete", "pod", "graceful", "--timeout=90s", timeout=100)
    # Well within the 60 s grace period: the container ended on SIGTERM, not on the SIGKILL after it.
    assert time.monotonic() - began < 30
    assert (out / "term").read_text() == "TERM"


def test_rbac_refuses_exec_and_port_forward_without_the_grant(plane: Plane) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "debugger"},
        "rules": [{"apiGroups": [""], "resources": ["pods/exec", "pods/portforward"], "verbs": ["create"]}],
    }
    getter = {
        **role,
        "metadata": {"name": "getter"},
        "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}],
    }
    bindings = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": who},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": what},
            "subjects": [{"kind": "ServiceAccount", "name": who, "namespace": "default"}],
        }
        for who, what in (("debugger", "debugger"), ("viewer", "getter"))
    ]
    accounts = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": n}}
        for n in ("viewer", "debugger")
    ]
    plane.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, getter, *bindings, *accounts]}),
    )
    viewer = plane.kubectl("create", "token", "viewer").strip()
    debugger = plane.kubectl("create", "token", "debugger").strip()

    refused = kubectl(plane, "exec", "web-container", "--", "true", token=viewer)
    assert refused.returncode != 0
    assert ('pods "web-container" is forbidden: User "system:serviceaccount:default:viewer" cannot create '
            'resource "pods/exec"') in refused.stderr.decode()  # fmt: skip
    with pytest.raises(AssertionError, match='cannot create resource "pods/portforward"'):
        PortForward(plane, "pod/web-process", 8080, token=viewer).__exit__()
    allowed = kubectl(plane, "exec", "web-process", "--", "echo", "let in", token=debugger)
    assert allowed.returncode == 0 and allowed.stdout == b"let in\n", allowed.stderr
    with PortForward(plane, "pod/web-container", 8080, token=debugger) as pf:
        assert http(f"http://127.0.0.1:{pf.local}/")[0] == 200
    audit = [json.loads(line) for line in (plane.dir / "audit.log").read_text().splitlines() if line]
    execs = [e for e in audit if (e.get("objectRef") or {}).get("subresource") == "exec"]
    assert execs and {e["verb"] for e in execs} == {"create"}
    assert {e["responseStatus"]["code"] for e in execs if "viewer" in e["user"]["username"]} == {403}


def test_container_applies_the_security_context_limits_and_termination_message(
    plane: Plane, images: dict[str, str]
) -> None:
    script = (
        "id -u; id -G; touch /rootfs-write 2>/dev/null && echo writable || echo read-only; "
        "echo '{\"score\": 1}' > /dev/termination-log; echo bye >&2; exit 3"
    )
    done = pod("secured", images["base"], ["sh", "-c", script], restartPolicy="Never",
               container={"readinessProbe": None, "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}})  # fmt: skip
    done["spec"]["securityContext"]["supplementalGroups"] = [4242]
    hog = pod("hog", images["base"], ["python3", "-c", "x = bytearray(400 * 2**20); x[::4096] = b'y' * len(x[::4096])"],
              restartPolicy="Never", container={"readinessProbe": None, "resources": {"limits": {"memory": "64Mi"}}})  # fmt: skip
    missing = pod("missing", "localhost/no-such-image:1", ["true"], container={"readinessProbe": None})
    plane.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [done, hog, missing]}),
    )

    def terminated(name: str) -> dict[str, Any] | None:
        st = (plane.get("pod", name)["status"].get("containerStatuses") or [{}])[0].get("state", {})
        return st.get("terminated")

    plane.wait_for("the secured pod to end", lambda: terminated("secured"), timeout=90)
    state = terminated("secured")
    assert state is not None and state["exitCode"] == 3 and state["reason"] == "Error"
    assert json.loads(state["message"]) == {"score": 1}
    out = plane.kubectl("logs", "secured").split()
    assert out[0] == "65532" and "4242" in out[1].split() + out[2:4] and "read-only" in out and "bye" in out

    plane.wait_for("the memory hog to end", lambda: terminated("hog"), timeout=90)
    state = terminated("hog")
    assert state is not None and state["reason"] == "OOMKilled" and state["exitCode"] == 137, state

    def pull_failed() -> dict[str, Any] | None:
        st = (plane.get("pod", "missing")["status"].get("containerStatuses") or [{}])[0].get("state", {})
        waiting = st.get("waiting") or {}
        return waiting if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    plane.wait_for("the missing image to fail its pull", pull_failed, timeout=90)
    events = plane.kubectl("get", "events", "--field-selector", "involvedObject.name=missing", "-o", "json")
    messages = [e["message"] for e in json.loads(events)["items"] if e["reason"] == "Failed"]
    assert any(
        'Failed to pull image "localhost/no-such-image:1"' in m and "pinging container registry" in m
        for m in messages
    ), messages


def test_a_trainingjob_with_a_user_image_trains_in_a_container(plane: Plane, images: dict[str, str]) -> None:
    job = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "own-image"},
        "spec": {"image": images["trainer"], "env": [{"name": "LEARNING_RATE", "value": "0.3"}]},
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(job))
    plane.kubectl("wait", "trainingjob/own-image", "--for=condition=Succeeded", "--timeout=150s", timeout=160)
    status = plane.get("trainingjob", "own-image")["status"]
    assert status["metrics"]["accuracy"] > 0.95, status
    pods = plane.get("pods", "-l", "modelops.dev/trainingjob=own-image")["items"]
    assert pods and pods[0]["status"]["containerStatuses"][0]["containerID"].startswith("podman://")
    logs = plane.kubectl("logs", pods[0]["metadata"]["name"])
    match = re.search(r"trained as uid (\d+): accuracy ([0-9.]+)", logs)
    assert match and match.group(1) == "65532", logs
    assert "root file system: read-only" in logs


def test_a_custom_predictor_image_serves_v2_through_a_service_port_forward(
    plane: Plane, images: dict[str, str]
) -> None:
    isvc = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "affine"},
        "spec": {
            "predictor": {"image": images["predictor"]},
            "resources": {"cpu": "100m", "memory": "128Mi"},
        },
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(isvc))
    plane.kubectl("wait", "inferenceservice/affine", "--for=condition=Ready", "--timeout=150s", timeout=160)
    pods = plane.get("pods", "-l", "modelops.dev/inferenceservice=affine")["items"]
    assert pods and all(
        p["status"]["containerStatuses"][0]["containerID"].startswith("podman://") for p in pods
    )
    with PortForward(plane, "svc/affine", 80) as pf:
        request = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [3], "data": [1, 2, 3.5]}]}
        code, body = http(f"http://127.0.0.1:{pf.local}/v2/models/affine/infer", request)
    assert code == 200 and json.loads(body)["outputs"][0]["data"] == [3, 5, 8], body
