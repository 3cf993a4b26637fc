"""The chart's optional production objects: ServiceMonitor, NetworkPolicy and PodDisruptionBudget.

Each is checked for what makes it work in a cluster, which a schema cannot see: the ServiceMonitor
selects the metrics Service and names its port; the NetworkPolicy opens exactly the ports the
operator serves and the ones it dials (DNS, the API server, the metrics ports of the pods it
builds); the PodDisruptionBudget selects the operator pod and lets a drain evict it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from chartkit import CHART, NAMESPACE, Manifests, of_kind, only
from test_chart_render import VALUE_SETS

from modelops.api.runconfig import DEFAULT_METRICS_PORT
from modelops.api.serveconfig import SERVE_PORT
from modelops.builders import trainingjob as tj_builders

PRODUCTION = VALUE_SETS["production"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_the_service_monitor_scrapes_the_metrics_service_by_its_port_name(
    render: Callable[..., Manifests],
) -> None:
    manifests = render(PRODUCTION)
    monitor, service = only(manifests, "ServiceMonitor"), only(manifests, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    # It must select nothing else that has a port called metrics: only the one Service carries them.
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == ("/metrics", "30s", "10s")
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    # The per-object gauges' own `namespace` label must survive the scrape: the generated rules match on it.
    assert endpoint["honorLabels"] is True


def test_the_rule_selector_labels_reach_the_per_object_rules_the_operator_writes(
    render: Callable[..., Manifests],
) -> None:
    from modelops.builders.alerts import Options

    values = {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "kps", "team": "ml"}}}}
    manifests = render(values)
    (container,) = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    operator_rule = only(manifests, "PrometheusRule")
    options = Options.from_environ({"MODELOPS_ALERT_RULE_LABELS": env["MODELOPS_ALERT_RULE_LABELS"]})
    assert dict(options.rule_labels) == {"release": "kps", "team": "ml"}
    assert options.rule_labels.items() <= operator_rule["metadata"]["labels"].items()
    assert "MODELOPS_ALERT_RULE_LABELS" not in {
        e["name"] for e in only(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_no_service_monitor_by_default_and_none_without_the_service(
    render: Callable[..., Manifests], helm: Callable[..., Any]
) -> None:
    assert of_kind(render(), "ServiceMonitor") == []
    values = {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}
    result = helm("template", "mo", str(CHART), values=values)
    assert result.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled=true" in result.stderr


def _ports(rule: dict[str, Any]) -> set[tuple[Any, str]]:
    return {(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports", [])}


def test_the_network_policy_admits_only_the_metrics_and_health_ports(
    render: Callable[..., Manifests],
) -> None:
    manifests = render(PRODUCTION)
    policy = only(manifests, "NetworkPolicy")["spec"]
    pod = only(manifests, "Deployment")["spec"]["template"]
    assert selects(policy["podSelector"]["matchLabels"], pod["metadata"]["labels"])
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    container_ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    metrics, health = policy["ingress"]
    assert _ports(metrics) == {("metrics", "TCP")} and _ports(health) == {("health", "TCP")}
    assert {"metrics", "health"} == container_ports
    assert metrics["from"] == PRODUCTION["networkPolicy"]["metricsFrom"]
    assert "from" not in health  # the kubelet's probes come from the node


def test_the_network_policy_lets_the_operator_reach_dns_the_api_server_and_its_pods(
    render: Callable[..., Manifests],
) -> None:
    policy = only(render(PRODUCTION), "NetworkPolicy")["spec"]
    dns, api, workloads, extra = policy["egress"]
    assert _ports(dns) == {(53, "UDP"), (53, "TCP")}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert [peer["ipBlock"]["cidr"] for peer in api["to"]] == ["172.18.0.2/32", "fd00::2/128"]
    assert _ports(api) == {(443, "TCP"), (6443, "TCP")}
    # The ports the operator scrapes are the ones the worker serves on.
    assert _ports(workloads) == {(DEFAULT_METRICS_PORT, "TCP"), (SERVE_PORT, "TCP")}
    (peer,) = workloads["to"]
    assert selects(peer["podSelector"]["matchLabels"], tj_builders.labels("digits"))
    assert peer["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}
    ]
    assert extra == PRODUCTION["networkPolicy"]["extraEgress"][0]


def test_without_watch_namespaces_the_operator_reaches_its_pods_in_every_namespace(
    render: Callable[..., Manifests],
) -> None:
    values = {"networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.96.0.1/32"]}}}
    policy = only(render(values), "NetworkPolicy")["spec"]
    assert policy["egress"][2]["to"][0]["namespaceSelector"] == {}
    assert len(policy["egress"]) == 3


def test_a_network_policy_without_the_api_server_address_is_refused(helm: Callable[..., Any]) -> None:
    result = helm("template", "mo", str(CHART), values={"networkPolicy": {"enabled": True}})
    assert result.returncode != 0
    assert "networkPolicy.enabled needs networkPolicy.apiServer.cidrs" in result.stderr
    assert "kubectl get endpointslices" in result.stderr


def test_the_disruption_budget_lets_a_drain_evict_the_single_operator(
    render: Callable[..., Manifests],
) -> None:
    manifests = render({"replicaCount": 1})
    budget = only(manifests, "PodDisruptionBudget")["spec"]
    deployment = only(manifests, "Deployment")
    assert budget["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    # The eviction API allows a disruption while healthy pods exceed replicas - maxUnavailable:
    # with one replica and maxUnavailable 1, one eviction is allowed, so `kubectl drain` proceeds.
    replicas = deployment["spec"]["replicas"]
    assert replicas - (replicas - budget["maxUnavailable"]) == 1
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert "minAvailable" not in budget


def test_with_two_replicas_the_budget_keeps_the_standby_through_a_drain(
    render: Callable[..., Manifests], helm: Callable[..., Any]
) -> None:
    budget = only(render(), "PodDisruptionBudget")["spec"]
    assert budget == {
        "minAvailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
        "selector": budget["selector"],
    }
    # minAvailable equal to the replicas would block every drain: refused, saying why.
    result = helm("template", "mo", str(CHART), values={"podDisruptionBudget": {"minAvailable": 2}})
    assert result.returncode != 0 and "must be less than replicaCount" in result.stderr


def test_unsafe_leader_election_timings_are_refused(helm: Callable[..., Any]) -> None:
    result = helm("template", "mo", str(CHART), values={"leaderElection": {"renewDeadlineSeconds": 15}})
    assert result.returncode != 0 and "leaderElection.renewDeadlineSeconds (15)" in result.stderr
    result = helm("template", "mo", str(CHART), values={"leaderElection": {"retryPeriodSeconds": 9}})
    assert result.returncode != 0 and "leaderElection.retryPeriodSeconds" in result.stderr


def test_the_disruption_budget_can_refuse_evictions_or_be_left_out(render: Callable[..., Manifests]) -> None:
    single = {**PRODUCTION, "replicaCount": 1}
    assert only(render(single), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 0
    assert of_kind(render({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget") == []


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (
            {"networkPolicy": {"apiServer": {"cidrs": ["kubernetes.default"]}}},
            "/networkPolicy/apiServer/cidrs/0",
        ),
        ({"networkPolicy": {"workloadPorts": [0]}}, "/networkPolicy/workloadPorts/0"),
        ({"networkPolicy": {"dns": {"podSelector": {"app": "dns"}}}}, "'app' not allowed"),
        ({"podDisruptionBudget": {"maxUnavailable": 2}}, "/podDisruptionBudget/maxUnavailable"),
        ({"metrics": {"serviceMonitor": {"interval": "soon"}}}, "/metrics/serviceMonitor/interval"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "/metrics/serviceMonitor/enabled"),
    ],
    ids=["cidr", "port", "selector", "max-unavailable", "interval", "enabled"],
)
def test_bad_production_values_are_refused_naming_the_value(
    helm: Callable[..., Any], values: dict[str, Any], named: str
) -> None:
    result = helm("template", "mo", str(CHART), values=values)
    assert result.returncode != 0 and named in result.stderr, result.stderr
