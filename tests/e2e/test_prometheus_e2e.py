"""A real Prometheus scrapes the local plane, loads the rules the operator generated, and alerts.

Debian's `prometheus` (built without Kubernetes service discovery) runs on loopback with a generated
config: the operator's /metrics as a static target (honor_labels, as the chart's docs ask), and the
pods through a file_sd list the test keeps current from `kubectl get pods` (what kubernetes_sd plus
the relabelling in docs/alerts.md would produce). The rules are read back from the objects the
operator wrote: the ConfigMap fallback for TrainingJobs (no Prometheus Operator yet), then a
PrometheusRule once its CRD is installed.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localplane import Plane

REPO = Path(__file__).resolve().parents[2]
NS = "default"
SERVICE = "digits-classifier"  # the quickstart InferenceService (the job's headless Service is "digits")

pytestmark = pytest.mark.e2e

# What the operator discovers: the group, version and names of Prometheus Operator's CRD (the
# upstream CRD's full schema is not needed to hold the rules).
PROMETHEUS_RULE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "prometheusrules.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {
            "kind": "PrometheusRule",
            "listKind": "PrometheusRuleList",
            "plural": "prometheusrules",
            "singular": "prometheusrule",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                        },
                    }
                },
            }
        ],
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """One prometheus process on loopback; its rule files and pod targets are files the test writes."""

    def __init__(self, directory: Path, plane: Plane) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("prometheus not installed: scripts/bootstrap.sh installs Debian's prometheus package")
        self.dir, self.plane = directory, plane
        (directory / "rules").mkdir(parents=True)
        (directory / "targets.json").write_text("[]")
        operator_port = json.loads((plane.dir / "plane.json").read_text())["operator_metrics_port"]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules/*.yaml"],
            "scrape_configs": [
                {
                    "job_name": "modelops-operator",
                    "honor_labels": True,
                    "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}],
                },
                {
                    "job_name": "modelops-pods",
                    "file_sd_configs": [{"files": ["targets.json"], "refresh_interval": "1s"}],
                },
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.log = (directory / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            cwd=directory,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait("Prometheus to be ready", lambda: self._ready())

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def api(self, path: str, **query: str) -> Any:
        url = f"{self.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(query) if query else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])

    def query(self, promql: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=promql)["result"])

    def load_rules(self, name: str, groups: list[dict[str, Any]]) -> None:
        """Write a rule file and have Prometheus reload (SIGHUP), as a config-reloader sidecar does."""
        (self.dir / "rules" / f"{name}.yaml").write_text(yaml.safe_dump({"groups": groups}))
        self.process.send_signal(signal.SIGHUP)

    def refresh_targets(self) -> None:
        """The running pods' metrics ports (training `metrics`, serving `http`), labelled namespace and pod."""
        targets = []
        for pod in self.plane.get("pods", "-n", NS)["items"]:
            ip = (pod.get("status") or {}).get("podIP")
            if not ip or pod["status"].get("phase") != "Running":
                continue
            for container in pod["spec"]["containers"]:
                for port in container.get("ports") or []:
                    if port.get("name") in ("metrics", "http"):
                        targets.append(
                            {
                                "targets": [f"{ip}:{port['containerPort']}"],
                                "labels": {"namespace": NS, "pod": pod["metadata"]["name"]},
                            }
                        )
        path = self.dir / "targets.json"
        path.with_suffix(".tmp").write_text(json.dumps(targets))
        path.with_suffix(".tmp").replace(path)  # file_sd must never read a half-written file

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited:\n{(self.dir / 'prometheus.log').read_text()[-3000:]}")
            if value := check():
                return value
            time.sleep(1)
        log = (self.dir / "prometheus.log").read_text()[-2000:]
        pytest.fail(
            f"timed out after {timeout:.0f}s waiting for {what}\n--- prometheus\n{log}\n{self.plane.logs()}"
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("prometheus") / "plane")
    lp.modelops("local", "up", "--dir", str(lp.dir))
    try:
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


@pytest.fixture(scope="module")
def prometheus(plane: Plane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = Prometheus(tmp_path_factory.mktemp("prometheus-server"), plane)
    try:
        yield prom
    finally:
        prom.stop()


def quickstart_job(name: str, **spec: Any) -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load((REPO / "examples/quickstart/10-trainingjob.yaml").read_text())
    job["metadata"]["name"] = name
    job["spec"].pop("backup", None)  # backups are not what this test watches
    job["spec"].update(spec)
    return job


def alerting_status(plane: Plane, kind: str, name: str) -> dict[str, Any] | None:
    status = plane.get(kind, name).get("status") or {}
    found: dict[str, Any] | None = status.get("alerting")
    return found


def alerts_for(prom: Prometheus, label: str, name: str) -> dict[str, str]:
    """alertname -> state of the alerts Prometheus holds for one object."""
    return {a["labels"]["alertname"]: a["state"] for a in prom.alerts() if a["labels"].get(label) == name}


def test_a_failed_job_fires_its_alert_while_a_healthy_running_job_stays_quiet(
    plane: Plane, prometheus: Prometheus
) -> None:
    digits = quickstart_job("digits", alerts={"stalledAfter": "10m"})
    # Long enough to be scraped twice while it runs, even when the first scrape comes late (12 and then 60 epochs
    # were over before the second scrape on a quiet machine); the next test serves what it trains.
    digits["spec"]["hyperparameters"]["epochs"] = 250
    broken = quickstart_job("too-few-rows", dataValidation={"minRows": 100000})  # digits has 1,797 rows
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([digits, broken]))

    # No Prometheus Operator: the rules land in a ConfigMap, and the status says so and why.
    groups = []
    for name in ("digits", "too-few-rows"):
        st = prometheus.wait(f"status.alerting of {name}", lambda n=name: alerting_status(plane, "tj", n))
        assert st["ruleKind"] == "ConfigMap" and st["name"] == f"{name}-trainingjob-alerts", st
        assert "Prometheus Operator is not installed" in st["message"]
        cm = plane.get("configmap", st["name"])
        assert cm["metadata"]["ownerReferences"][0]["name"] == name
        groups += yaml.safe_load(cm["data"]["rules.yaml"])["groups"]
    prometheus.load_rules("trainingjobs", groups)

    # While it trains, the job is scraped at its pod (its steps advance in Prometheus), its rules evaluate
    # cleanly, and none of them fires.
    def steps() -> float:
        prometheus.refresh_targets()
        found = prometheus.query(f'modelops_training_step{{namespace="{NS}",pod="digits-0"}}')
        return float(found[0]["value"][1]) if found else 0.0

    first = prometheus.wait("Prometheus to scrape digits-0's steps", steps, timeout=180)
    prometheus.wait("digits-0's steps to advance in Prometheus", lambda: steps() > first, timeout=120)
    rule_groups = {g["name"]: g for g in prometheus.api("rules")["groups"]}
    ours = rule_groups[f"modelops.trainingjob.{NS}.digits"]["rules"]
    assert {r["name"] for r in ours} >= {"ModelopsTrainingJobFailed", "ModelopsTrainingStalled"}
    assert all(r["health"] == "ok" for r in ours), ours
    assert alerts_for(prometheus, "trainingjob", "digits") == {}
    # The per-object gauges come from the operator's own /metrics.
    phase = prometheus.query(f'modelops_trainingjob_phase{{namespace="{NS}",name="digits",phase="Running"}}')
    assert phase and phase[0]["value"][1] == "1"

    def failed_alert() -> dict[str, Any] | None:
        prometheus.refresh_targets()
        return next(
            (
                a
                for a in prometheus.alerts()
                if a["labels"]["alertname"] == "ModelopsTrainingJobFailed"
                and a["labels"].get("trainingjob") == "too-few-rows"
                and a["state"] == "firing"
            ),
            None,
        )

    alert = prometheus.wait("ModelopsTrainingJobFailed to fire for too-few-rows", failed_alert, timeout=180)
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["namespace"] == NS
    assert alert["annotations"]["summary"] == "TrainingJob default/too-few-rows failed"
    assert alert["annotations"]["runbook_url"].endswith("/docs/runbooks/ModelopsTrainingJobFailed.md")

    # A ConfigMap of that name that someone else owns is never taken over: the status says so.
    theirs = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "squat-trainingjob-alerts"}}
    theirs["data"] = {"note": "not the operator's"}
    plane.kubectl("apply", "-f", "-", input=json.dumps(theirs))
    squat = quickstart_job("squat", runPolicy={"suspend": True})
    plane.kubectl("apply", "-f", "-", input=json.dumps(squat))
    st = prometheus.wait("status.alerting of squat", lambda: alerting_status(plane, "tj", "squat"))
    assert st.get("ruleKind") is None  # null is dropped by the merge patch
    assert "exists and is not owned by this TrainingJob" in st["message"], st
    assert plane.get("configmap", "squat-trainingjob-alerts")["data"] == {"note": "not the operator's"}

    # The rule object is owned by its job: deleting the job deletes it.
    plane.kubectl("delete", "trainingjob/too-few-rows", "--timeout=60s")
    prometheus.wait(
        "the ConfigMap of too-few-rows to be garbage collected",
        lambda: "too-few-rows-trainingjob-alerts" not in plane.kubectl("get", "configmaps", "-o", "name"),
        timeout=60,
    )


def infer(address: str, rows: list[list[float]]) -> int:
    body = {"inputs": [{"name": "input", "shape": [len(rows), 64], "datatype": "FP32", "data": rows}]}
    request = urllib.request.Request(
        f"http://{address}/v2/models/{SERVICE}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def test_a_service_slower_than_its_slo_fires_the_latency_alert_from_a_prometheus_rule(
    plane: Plane, prometheus: Prometheus
) -> None:
    # Prometheus Operator's CRD arrives: the next object's rules are a PrometheusRule.
    plane.kubectl("apply", "-f", "-", input=json.dumps(PROMETHEUS_RULE_CRD))
    plane.kubectl(
        "wait", "crd/prometheusrules.monitoring.coreos.com", "--for=condition=Established", "--timeout=30s"
    )
    plane.kubectl("wait", "trainingjob/digits", "--for=condition=Succeeded", "--timeout=240s", timeout=250)
    plane.kubectl("wait", "modelversion/digits-1", "--for=condition=Ready", "--timeout=120s", timeout=130)

    isvc: dict[str, Any] = yaml.safe_load((REPO / "examples/quickstart/30-inferenceservice.yaml").read_text())
    isvc["spec"]["resources"] = {"cpu": "250m", "memory": "768Mi"}
    # A 1 ms p99 SLO that big requests cannot meet, judged over 20s and firing without a pending period.
    isvc["spec"]["alerts"] = {"p99LatencyMs": 1, "window": "20s", "pendingFor": "0s"}
    plane.kubectl("apply", "-f", "-", input=json.dumps(isvc))

    st = prometheus.wait(
        "status.alerting of the InferenceService",
        lambda: alerting_status(plane, "inferenceservice", SERVICE),
    )
    assert st["ruleKind"] == "PrometheusRule" and st["name"] == f"{SERVICE}-inferenceservice-alerts", st
    rule = plane.get("prometheusrule", st["name"])
    assert rule["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    prometheus.load_rules("inferenceservice", rule["spec"]["groups"])
    plane.kubectl(
        "wait", f"inferenceservice/{SERVICE}", "--for=condition=Ready", "--timeout=180s", timeout=190
    )

    address = f"{plane.get('service', SERVICE)['spec']['clusterIP']}:80"
    rows = [[float((i * 7 + j) % 17) for j in range(64)] for i in range(1000)]  # under batching.maxQueueSize

    def latency_alert() -> str | None:
        prometheus.refresh_targets()
        assert infer(address, rows) == 200
        return alerts_for(prometheus, "inferenceservice", SERVICE).get("ModelopsInferenceLatencyHigh")

    state = prometheus.wait(
        "ModelopsInferenceLatencyHigh to fire", lambda: latency_alert() == "firing", timeout=120
    )
    assert state
    firing = next(
        a
        for a in prometheus.alerts()
        if a["labels"]["alertname"] == "ModelopsInferenceLatencyHigh" and a["labels"].get("model") == SERVICE
    )
    assert "above the SLO of 1 ms" in firing["annotations"]["description"]
    assert f"InferenceService {NS}/{SERVICE}" in firing["annotations"]["description"]
    # Every request succeeded: the error-rate rule evaluates and stays silent.
    assert "ModelopsInferenceErrorRateHigh" not in alerts_for(prometheus, "inferenceservice", SERVICE)
    served = prometheus.query(
        f'sum(modelops_serving_requests_total{{namespace="{NS}",model="{SERVICE}",code="200"}})'
    )
    assert served and float(served[0]["value"][1]) > 0
