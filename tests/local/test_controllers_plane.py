"""The local plane's controllers against the real processes: API server, nodes and controllers.

Everything a user would do goes through the real kubectl (apply, rollout status, wait); the tests read
state back over HTTP with the kubeconfig's token, as any client would. Each test works in its own
namespace.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_nodes import Plane as NodesPlane
from fixtures_nodes import start_apiserver, wait_for

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = str(ROOT / ".tools" / "bin" / "kubectl")
IMAGE = "ghcr.io/modelops/worker:test"
# Unusual ports: other local planes (other test modules, a developer's `modelops local up`) may run on
# the same machine at the same time, and pod IPs and ClusterIPs are only unique within one plane.
PORT = 18431
SVC_PORT = 18480
# Every pod listens on the same port: the kubelet turns a bind to "any address" into the pod's own IP.
HTTP_SERVER = ["python", "-m", "http.server", str(PORT)]

# A pod that answers every GET with its own address: shows which backend the proxy picked.
WHOAMI = textwrap.dedent(
    """
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = self.connection.getsockname()[0].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
    """
)

# A pod exposing a Prometheus gauge `load` whose value the test sets through a file.
LOAD = textwrap.dedent(
    """
    import http.server, sys
    path, port = sys.argv[1], int(sys.argv[2])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            try:
                value = open(path).read().strip() or "0"
            except OSError:
                value = "0"
            body = ("# TYPE load gauge\\nload " + value + "\\n").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer(("0.0.0.0", port), H).serve_forever()
    """
)


@dataclass
class Plane(NodesPlane):
    """The nodes tests' plane plus the controllers, and plain HTTP reads with the kubeconfig's token."""

    server: str = ""
    token: str = ""
    ctx: ssl.SSLContext | None = None

    def start_controllers(self) -> None:
        self.start(
            "controllers",
            "modelops_local.controllers",
            "--kubeconfig",
            str(self.kubeconfig),
            "--dir",
            str(self.dir),
            "--hpa-sync-period",
            "1",
            "--job-backoff-base",
            "0.2",
        )

    def connect(self) -> None:
        config = yaml.safe_load(self.kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        self.server = cluster["server"]
        self.token = config["users"][0]["user"]["token"]
        if cluster.get("certificate-authority-data"):
            ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
            self.ctx = ssl.create_default_context(cadata=ca)
        elif cluster.get("certificate-authority"):
            self.ctx = ssl.create_default_context(cafile=str(self.dir / cluster["certificate-authority"]))
        else:
            self.ctx = ssl.create_default_context()

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 90) -> str:
        result = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout + result.stderr

    def apply(self, ns: str, *docs: dict[str, Any]) -> None:
        self.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump_all(docs))

    def get(self, path: str) -> dict[str, Any] | None:
        req = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def obj(self, api: str, plural: str, ns: str, name: str) -> dict[str, Any]:
        base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        found = self.get(f"{base}/namespaces/{ns}/{plural}/{name}")
        assert found is not None, f"{plural} {ns}/{name} not found"
        return found

    def pods(self, ns: str, selector: str = "") -> list[dict[str, Any]]:
        query = f"?labelSelector={selector}" if selector else ""
        return list((self.get(f"/api/v1/namespaces/{ns}/pods{query}") or {}).get("items") or [])

    def namespace(self, name: str) -> str:
        doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))
        return name


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    directory = tmp_path_factory.mktemp("controllers-plane")
    plane = start_apiserver(directory, Plane(directory, directory / "kubeconfig"))
    try:
        plane.connect()
        wait_for("the API server to answer", lambda: plane.get("/api/v1/namespaces") is not None, timeout=30)
        kc = str(plane.kubeconfig)
        plane.start(
            "nodes", "modelops_local.nodes", "--kubeconfig", kc, "--dir", str(directory), "--nodes", "1"
        )
        plane.start_controllers()
        wait_for("a Ready node", lambda: "Ready" in plane.kubectl("get", "nodes", check=False), timeout=60)
        yield plane
    finally:
        plane.stop_all()


def container(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "command": command, **extra}


def deployment(name: str, replicas: int, command: list[str], port: int = PORT, **spec: Any) -> dict[str, Any]:
    probe = {"tcpSocket": {"port": port}, "periodSeconds": 1}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        container(
                            "main",
                            command,
                            ports=[{"name": "http", "containerPort": port}],
                            readinessProbe=probe,
                        )
                    ]
                },
            },
            **spec,
        },
    }


def service(name: str, port: int = SVC_PORT, target: Any = "http") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port, "targetPort": target}]},
    }


def http_get(ip: str, port: int, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=timeout) as resp:
        return resp.read().decode()


def ready_pods(plane: Plane, ns: str, selector: str) -> list[dict[str, Any]]:
    out = []
    for pod in plane.pods(ns, selector):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        conds = pod.get("status", {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
            out.append(pod)
    return out


def test_deployment_rolls_out_and_rolls_again_within_max_unavailable(plane: Plane) -> None:
    ns = plane.namespace("rollout")
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
    plane.apply(ns, deployment("web", 3, HTTP_SERVER, strategy=strategy))
    plane.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=60s")
    plane.kubectl("wait", "-n", ns, "--for=condition=Available", "deployment/web", "--timeout=30s")
    first = plane.obj("apps/v1", "deployments", ns, "web")
    assert first["status"]["availableReplicas"] == 3 and first["status"]["updatedReplicas"] == 3

    change = {
        "metadata": {"annotations": {"kubernetes.io/change-cause": "set V=2"}},
        "spec": {
            "template": {"spec": {"containers": [{"name": "main", "env": [{"name": "V", "value": "2"}]}]}}
        },
    }
    plane.kubectl("patch", "-n", ns, "deployment/web", "-p", json.dumps(change))
    # Watch the pods while the rollout runs: never fewer than replicas - maxUnavailable ready, never
    # more than replicas + maxSurge pods.
    seen_ready: list[int] = []
    seen_total: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = [p for p in plane.pods(ns, "app=web") if not p["metadata"].get("deletionTimestamp")]
        seen_total.append(len(pods))
        seen_ready.append(len(ready_pods(plane, ns, "app=web")))
        d = plane.obj("apps/v1", "deployments", ns, "web")
        s = d.get("status", {})
        if (
            s.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and s.get("updatedReplicas") == s.get("availableReplicas") == s.get("replicas") == 3
        ):
            break
        time.sleep(0.1)
    plane.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=30s")
    assert min(seen_ready) >= 2, seen_ready
    assert max(seen_total) <= 4, seen_total
    rss = plane.get(f"/apis/apps/v1/namespaces/{ns}/replicasets")["items"]  # type: ignore[index]
    by_revision = {
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: rs["spec"]["replicas"]
        for rs in rss
    }
    assert by_revision == {"1": 0, "2": 3}
    history = plane.kubectl("rollout", "history", "-n", ns, "deployment/web")
    assert "1 " in history and "set V=2" in history, history
    for pod in plane.pods(ns, "app=web"):
        assert pod["spec"]["containers"][0].get("env") == [{"name": "V", "value": "2"}]


def test_restarted_controllers_pick_up_where_they_left_without_duplicates(plane: Plane) -> None:
    ns = plane.namespace("restart")
    plane.apply(ns, deployment("web", 3, HTTP_SERVER))
    plane.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=60s")
    before = {p["metadata"]["name"] for p in plane.pods(ns, "app=web")}
    plane.stop("controllers")
    try:
        victim = sorted(before)[0]
        plane.kubectl("delete", "pod", "-n", ns, victim, "--wait=false")
        plane.kubectl("scale", "-n", ns, "deployment/web", "--replicas=4")
    finally:
        plane.start_controllers()
    plane.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=60s")
    time.sleep(2)  # let a duplicate, if any, show up
    pods = [p for p in plane.pods(ns, "app=web") if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 4, [p["metadata"]["name"] for p in pods]
    assert victim not in {p["metadata"]["name"] for p in pods}
    rss = plane.get(f"/apis/apps/v1/namespaces/{ns}/replicasets")["items"]  # type: ignore[index]
    assert len(rss) == 1, "the same template hashes to the same ReplicaSet after a restart"


def test_rollout_that_cannot_progress_fails_kubectl_rollout_status(plane: Plane) -> None:
    ns = plane.namespace("stuck")
    d = deployment("stuck", 1, HTTP_SERVER, progressDeadlineSeconds=3)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "docker.io/library/nginx:1.27"  # never pulls
    plane.apply(ns, d)
    out = plane.kubectl("rollout", "status", "-n", ns, "deployment/stuck", "--timeout=60s", check=False)
    assert "exceeded its progress deadline" in out, out
    status = plane.obj("apps/v1", "deployments", ns, "stuck")["status"]
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    available = next(c for c in status["conditions"] if c["type"] == "Available")
    assert (available["status"], available["reason"]) == ("False", "MinimumReplicasUnavailable")


def test_service_proxies_to_ready_pods_round_robin(plane: Plane) -> None:
    ns = plane.namespace("proxy")
    plane.apply(ns, deployment("whoami", 2, ["python", "-c", WHOAMI, str(PORT)]), service("whoami"))
    plane.kubectl("rollout", "status", "-n", ns, "deployment/whoami", "--timeout=60s")
    ip = plane.obj("v1", "services", ns, "whoami")["spec"]["clusterIP"]
    pod_ips = {p["status"]["podIP"] for p in ready_pods(plane, ns, "app=whoami")}
    assert len(pod_ips) == 2

    def endpoints_ready() -> bool:
        ep = plane.obj("v1", "endpoints", ns, "whoami")
        addrs = [a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []]
        ports = [p["port"] for s in ep.get("subsets") or [] for p in s.get("ports") or []]
        return set(addrs) == pod_ips and ports == [PORT]

    wait_for("endpoints listing both pods on the named target port", endpoints_ready)
    described = plane.kubectl("describe", "service", "-n", ns, "whoami")
    assert all(f"{pod_ip}:{PORT}" in described for pod_ip in pod_ips), described
    answers = [wait_for("the ClusterIP to answer", lambda: _try_get(ip, SVC_PORT))]
    answers += [http_get(ip, SVC_PORT) for _ in range(5)]
    assert set(answers) == pod_ips, answers

    # With no ready endpoint the proxy closes the connection instead of leaving the client hanging
    # until its own timeout.
    plane.kubectl("scale", "-n", ns, "deployment/whoami", "--replicas=0")
    wait_for("endpoints to empty", lambda: not plane.obj("v1", "endpoints", ns, "whoami").get("subsets"))
    with pytest.raises((urllib.error.URLError, ConnectionError, http_client_errors())) as failed:
        http_get(ip, SVC_PORT, timeout=20)
    reason = getattr(failed.value, "reason", failed.value)
    assert not isinstance(reason, TimeoutError), "the client timed out: the proxy held the connection open"


def http_client_errors() -> type[Exception]:
    import http.client

    return http.client.HTTPException


def _try_get(ip: str, port: int) -> str | None:
    try:
        return http_get(ip, port, timeout=2)
    except (OSError, urllib.error.URLError):
        return None


def test_hpa_scales_out_and_back_in_on_a_pod_metric(plane: Plane, tmp_path: Path) -> None:
    ns = plane.namespace("autoscale")
    load = tmp_path / "load"
    load.write_text("1")
    d = deployment("api", 1, ["python", "-c", LOAD, str(load), str(PORT)])
    d["spec"]["template"]["metadata"]["annotations"] = {"prometheus.io/port": str(PORT)}
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "api"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "load"},
                        "target": {"type": "AverageValue", "averageValue": "10"},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 2}},
        },
    }
    plane.apply(ns, d, hpa)
    plane.kubectl("rollout", "status", "-n", ns, "deployment/api", "--timeout=60s")

    def hpa_status() -> dict[str, Any]:
        return plane.obj("autoscaling/v2", "horizontalpodautoscalers", ns, "api").get("status") or {}

    wait_for("the HPA to read the metric", lambda: hpa_status().get("currentMetrics"))
    assert plane.obj("apps/v1", "deployments", ns, "api")["spec"]["replicas"] == 1, (
        "1 of target 10: stay at min"
    )

    load.write_text("40")
    wait_for(
        "scale out to 3", lambda: plane.obj("apps/v1", "deployments", ns, "api")["spec"]["replicas"] == 3
    )
    # The controller scales first and records it in the HPA's status right after: wait for both.
    status = wait_for(
        "the HPA status to record the scale",
        lambda: (s := hpa_status()).get("desiredReplicas") == 3 and s.get("lastScaleTime") and s,
    )
    limited = next(c for c in status["conditions"] if c["type"] == "ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("True", "TooManyReplicas"), (
        "40/10 asks for 4, more than max 3"
    )
    plane.kubectl("rollout", "status", "-n", ns, "deployment/api", "--timeout=60s")

    load.write_text("1")
    wait_for(
        "scale back in to 1", lambda: plane.obj("apps/v1", "deployments", ns, "api")["spec"]["replicas"] == 1
    )
    status = wait_for("status to settle", lambda: (s := hpa_status()).get("currentReplicas") == 1 and s)
    active = next(c for c in status["conditions"] if c["type"] == "ScalingActive")
    assert (active["status"], active["reason"]) == ("True", "ValidMetricFound")
    table = plane.kubectl("get", "hpa", "-n", ns)
    assert "api" in table


def test_hpa_scales_a_custom_resource_through_its_scale_subresource(plane: Plane, tmp_path: Path) -> None:
    ns = plane.namespace("autoscale-cr")
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servers.test.modelops.dev"},
        "spec": {
            "group": "test.modelops.dev",
            "scope": "Namespaced",
            "names": {"plural": "servers", "singular": "server", "kind": "Server"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(crd))
    wait_for("the CRD to be served", lambda: "servers" in plane.kubectl("api-resources", check=False))
    load = tmp_path / "load"
    load.write_text("40")
    d = deployment("backend", 1, ["python", "-c", LOAD, str(load), str(PORT)])
    d["spec"]["template"]["metadata"]["annotations"] = {"prometheus.io/port": str(PORT)}
    server = {
        "apiVersion": "test.modelops.dev/v1",
        "kind": "Server",
        "metadata": {"name": "s"},
        "spec": {"replicas": 1},
    }
    plane.apply(ns, d, server)
    plane.kubectl(
        "patch", "-n", ns, "server/s", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"replicas": 1, "selector": "app=backend"}}),
    )  # fmt: skip
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "s"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "test.modelops.dev/v1", "kind": "Server", "name": "s"},
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "load"},
                        "target": {"type": "AverageValue", "averageValue": "10"},
                    },
                }
            ],
        },
    }
    plane.apply(ns, hpa)
    wait_for(
        "the Server to be scaled through /scale",
        lambda: plane.obj("test.modelops.dev/v1", "servers", ns, "s")["spec"].get("replicas") == 3,
    )
    plane.kubectl("delete", "-f", "-", "--wait=false", stdin=yaml.safe_dump(crd))


def test_job_completes_and_failing_job_hits_backoff_limit(plane: Plane) -> None:
    ns = plane.namespace("jobs")

    def job(name: str, code: int, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [container("main", ["python", "-c", f"raise SystemExit({code})"])],
                    }
                },
                **spec,
            },
        }

    plane.apply(ns, job("ok", 0, completions=3, parallelism=2), job("bad", 3, backoffLimit=2))
    plane.kubectl("wait", "-n", ns, "--for=condition=Complete", "job/ok", "--timeout=60s")
    plane.kubectl("wait", "-n", ns, "--for=condition=Failed", "job/bad", "--timeout=60s")
    ok = plane.obj("batch/v1", "jobs", ns, "ok")["status"]
    assert ok["succeeded"] == 3 and ok.get("completionTime") and ok.get("startTime")
    bad = plane.obj("batch/v1", "jobs", ns, "bad")["status"]
    failed = next(c for c in bad["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert bad["failed"] == 3, "backoffLimit 2 allows two retries after the first failure"
    assert len(plane.pods(ns, "batch.kubernetes.io/job-name=bad")) == 3


def test_cronjob_starts_a_job_on_schedule_and_records_it(plane: Plane) -> None:
    ns = plane.namespace("cron")
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            # `* * * * *` would take up to a minute; the schedule maths is unit-tested, this checks the loop.
            "schedule": "@every 1s",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [container("main", ["python", "-c", "pass"])],
                        }
                    }
                }
            },
        },
    }
    plane.apply(ns, cronjob)

    def status() -> dict[str, Any]:
        return plane.obj("batch/v1", "cronjobs", ns, "tick").get("status") or {}

    done = wait_for("a successful run", lambda: (s := status()).get("lastSuccessfulTime") and s)
    assert done.get("lastScheduleTime")
    jobs = plane.get(f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]  # type: ignore[index]
    assert jobs and all(j["metadata"]["ownerReferences"][0]["kind"] == "CronJob" for j in jobs)
    assert all(
        "batch.kubernetes.io/cronjob-scheduled-timestamp" in j["metadata"]["annotations"] for j in jobs
    )
    plane.kubectl("delete", "-n", ns, "cronjob/tick")


def test_pvc_binds_to_a_directory_a_pod_writes_into(plane: Plane) -> None:
    ns = plane.namespace("volumes")
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "writer"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            "containers": [
                container(
                    "main",
                    ["python", "-c", "open('/data/out.txt', 'w').write('written by the pod')"],
                    volumeMounts=[{"name": "d", "mountPath": "/data"}],
                )
            ],
        },
    }
    plane.apply(ns, claim, pod)
    plane.kubectl("wait", "-n", ns, "--for=jsonpath={.status.phase}=Bound", "pvc/data", "--timeout=30s")
    bound = plane.obj("v1", "persistentvolumeclaims", ns, "data")
    assert bound["status"]["capacity"]["storage"] == "2Gi"
    pv = plane.get(f"/api/v1/persistentvolumes/{bound['spec']['volumeName']}")
    assert pv is not None and pv["spec"]["claimRef"]["name"] == "data"
    plane.kubectl("wait", "-n", ns, "--for=jsonpath={.status.phase}=Succeeded", "pod/writer", "--timeout=60s")
    written = plane.dir / "volumes" / ns / "data" / "out.txt"
    assert written.read_text() == "written by the pod"

    # A claim cloned from this one starts with its content.
    clone = {**claim, "metadata": {"name": "copy"}}
    clone["spec"] = {**claim["spec"], "dataSource": {"kind": "PersistentVolumeClaim", "name": "data"}}
    plane.apply(ns, clone)
    plane.kubectl("wait", "-n", ns, "--for=jsonpath={.status.phase}=Bound", "pvc/copy", "--timeout=30s")
    assert (plane.dir / "volumes" / ns / "copy" / "out.txt").read_text() == "written by the pod"

    plane.kubectl("delete", "-n", ns, "pod/writer", "pvc/data", "--wait=false")
    wait_for(
        "the volume and its directory to go (reclaim policy Delete)", lambda: not written.parent.exists()
    )
    wait_for(
        "the PersistentVolume to go",
        lambda: plane.get(f"/api/v1/persistentvolumes/{pv['metadata']['name']}") is None,
    )


def test_pdb_reports_allowed_disruptions(plane: Plane) -> None:
    ns = plane.namespace("budget")
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
    }
    plane.apply(ns, deployment("web", 2, HTTP_SERVER), pdb)
    plane.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=60s")

    def status() -> dict[str, Any]:
        return plane.obj("policy/v1", "poddisruptionbudgets", ns, "web").get("status") or {}

    s = wait_for("the budget to count both pods", lambda: (s := status()).get("currentHealthy") == 2 and s)
    assert (s["expectedPods"], s["desiredHealthy"], s["disruptionsAllowed"]) == (2, 1, 1)
    allowed = next(c for c in s["conditions"] if c["type"] == "DisruptionAllowed")
    assert (allowed["status"], allowed["reason"]) == ("True", "SufficientPods")
