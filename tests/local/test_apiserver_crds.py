"""CustomResourceDefinitions as kubectl users meet them: register, apply objects, validation, explain,
printer columns, status/scale subresources, generation, wait, and removal with the CRD.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from apiserver_harness import ApiServer, Kubectl

FIXTURES = Path(__file__).parent / "fixtures"
WIDGET = """apiVersion: example.com/v1
kind: Widget
metadata: {{name: {name}, namespace: default}}
spec: {{size: {size}}}
"""


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    out = kubectl("apply", "-f", str(FIXTURES)).stdout
    assert "widgets.example.com" in out and "prometheusrules.monitoring.coreos.com" in out
    kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s")


def test_crd_status_and_discovery(crds: None, apiserver: ApiServer, kubectl: Kubectl) -> None:
    crd = json.loads(kubectl("get", "crd", "widgets.example.com", "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"
    code, body = apiserver.request("/apis/example.com")
    group = json.loads(body)
    assert code == 200 and group["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    resources = kubectl("api-resources", "--api-group=example.com", "--no-headers").stdout
    assert "widgets" in resources and "wd" in resources


def test_apply_custom_objects_and_printer_columns(crds: None, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=WIDGET.format(name="cols", size="small"))
    rule = (
        "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: r, namespace: default}\n"
        "spec:\n  groups:\n  - name: g\n    rules:\n    - {alert: Down, expr: up == 0, for: 5m}\n"
    )
    assert "created" in kubectl("apply", "-f", "-", stdin=rule).stdout
    assert "unchanged" in kubectl("apply", "-f", "-", stdin=rule).stdout
    table = kubectl("get", "widget", "cols").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "READY", "AGE"]
    assert table[1].split()[:2] == ["cols", "small"]
    obj = json.loads(kubectl("get", "wd", "cols", "-o", "json").stdout)
    assert obj["spec"] == {"size": "small", "replicas": 1, "color": "blue"}, "schema defaults are applied"
    assert obj["metadata"]["generation"] == 1
    assert "apiVersion: example.com/v1" in kubectl("get", "wd", "cols", "-o", "yaml").stdout


def test_invalid_custom_objects_are_rejected_naming_fields(crds: None, kubectl: Kubectl) -> None:
    bad = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {size: medium, replicas: -1}\n"
    result = kubectl("apply", "-f", "-", stdin=bad, check=False)
    assert result.returncode != 0
    assert 'The Widget "bad" is invalid' in result.stderr
    assert 'spec.size: Unsupported value: "medium"' in result.stderr
    assert "spec.replicas" in result.stderr
    unknown = (
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {size: small, colour: red}\n"
    )
    result = kubectl("apply", "-f", "-", stdin=unknown, check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.colour"' in result.stderr
    assert kubectl("get", "wd", "bad", check=False).returncode != 0


def test_explain_custom_resource(crds: None, kubectl: Kubectl) -> None:
    out = kubectl("explain", "widget.spec").stdout
    assert "What the widget should be." in out
    assert "How big the widget is." in out
    assert "-required-" in out


def test_status_scale_generation_and_wait(crds: None, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=WIDGET.format(name="gen", size="small"))
    kubectl("patch", "wd", "gen", "--type=merge", "-p", '{"spec":{"size":"large"}}')
    kubectl("patch", "wd", "gen", "--type=merge", "-p", '{"metadata":{"labels":{"a":"b"}}}')
    obj = json.loads(kubectl("get", "wd", "gen", "-o", "json").stdout)
    assert obj["metadata"]["generation"] == 2, "spec change bumps generation, metadata change does not"
    kubectl("patch", "wd", "gen", "--type=merge", "-p", '{"status":{"replicas":5}}')
    assert "status" not in json.loads(kubectl("get", "wd", "gen", "-o", "json").stdout)
    ready = '{"status":{"replicas":1,"conditions":[{"type":"Ready","status":"True","reason":"Up"}]}}'
    kubectl("patch", "wd", "gen", "--subresource=status", "--type=merge", "-p", ready)
    out = kubectl("wait", "--for=condition=Ready", "wd/gen", "--timeout=5s").stdout
    assert "condition met" in out
    assert kubectl("get", "wd", "gen").stdout.splitlines()[1].split()[2] == "True"
    bad = '{"status":{"replicas":"many"}}'
    result = kubectl("patch", "wd", "gen", "--subresource=status", "--type=merge", "-p", bad, check=False)
    assert result.returncode != 0 and "status.replicas" in result.stderr, "status is validated too"
    kubectl("scale", "wd", "gen", "--replicas=3")
    obj = json.loads(kubectl("get", "wd", "gen", "-o", "json").stdout)
    assert obj["spec"]["replicas"] == 3 and obj["metadata"]["generation"] == 3
    assert obj["status"]["replicas"] == 1


def test_strategic_merge_is_refused_for_custom_resources(crds: None, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=WIDGET.format(name="smp", size="small"))
    result = kubectl("patch", "wd", "smp", "--type=strategic", "-p", '{"spec":{"size":"large"}}', check=False)
    assert result.returncode != 0
    assert "application/merge-patch+json" in result.stderr


def test_server_side_apply_custom_resource(crds: None, kubectl: Kubectl) -> None:
    one = (
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: ssa}\nspec: {size: small, tags: [a, b]}\n"
    )
    kubectl("apply", "--server-side", "--field-manager=tool", "-f", "-", stdin=one)
    two = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: ssa}\nspec: {size: large}\n"
    kubectl("apply", "--server-side", "--field-manager=tool", "-f", "-", stdin=two)
    obj = json.loads(kubectl("get", "wd", "ssa", "-o", "json", "--show-managed-fields").stdout)
    assert obj["spec"]["size"] == "large"
    assert "tags" not in obj["spec"], "a field the manager stopped applying is removed"
    managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
    assert ("tool", "Apply") in managers


def test_objects_served_at_every_version(crds: None, kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=WIDGET.format(name="vers", size="small"))
    old = json.loads(kubectl("get", "widgets.v1beta1.example.com", "vers", "-o", "json").stdout)
    assert old["apiVersion"] == "example.com/v1beta1" and old["spec"]["size"] == "small"


def test_deleting_crd_deletes_its_objects(kubectl: Kubectl) -> None:
    crd = (
        (FIXTURES / "widgets-crd.yaml").read_text().replace("widgets", "gadgets").replace("Widget", "Gadget")
    )
    crd = crd.replace("shortNames: [wd]", "shortNames: [gd]").replace("singular: widget", "singular: gadget")
    kubectl("apply", "-f", "-", stdin=crd)
    kubectl("apply", "-f", "-", stdin=WIDGET.format(name="g1", size="small").replace("Widget", "Gadget"))
    kubectl("delete", "crd", "gadgets.example.com", "--timeout=20s")
    deadline = time.monotonic() + 10
    while "gadgets" in kubectl("api-resources", "--api-group=example.com", "--no-headers").stdout:
        assert time.monotonic() < deadline, "the CRD's resource is still served"
        time.sleep(0.1)
    kubectl("apply", "-f", "-", stdin=crd)
    assert "No resources found" in kubectl("get", "gadgets", "-A").stderr
    kubectl("delete", "crd", "gadgets.example.com")


def test_object_of_a_missing_crd_is_reported_like_a_real_cluster(kubectl: Kubectl) -> None:
    gizmo = "apiVersion: example.com/v1\nkind: Gizmo\nmetadata: {name: g}\nspec: {size: small}\n"
    result = kubectl("apply", "-f", "-", stdin=gizmo, check=False)
    assert result.returncode != 0
    assert 'no matches for kind "Gizmo" in version "example.com/v1"' in result.stderr
    assert "ensure CRDs are installed first" in result.stderr
