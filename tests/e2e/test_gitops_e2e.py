"""GitOps on the local plane: the examples applied as Argo CD applies them, and the RBAC of the chart
measured against what the operator really calls.

One plane without its own operator (`modelops local up --no-operator`); the chart installed with the
real helm, so the operator runs in its pod as the chart's ServiceAccount, exactly as in a cluster.

- Idempotence: `kubectl apply --server-side` of the examples twice; the second apply changes nothing
  (same resourceVersion and generation). After the operator has reconciled them (a TrainingJob
  trained, its ModelVersion verified, the InferenceServices reconciled), a third apply still changes
  no generation and meets no conflict, and no field manager but the applier owns a field of any
  applied spec: the operator never writes to a spec, so Argo CD's self-heal never fights it.
- RBAC: every request of the operator's ServiceAccount in the plane's audit log (an
  `audit.k8s.io/v1` log, verb/resource as kube-apiserver's RBAC sees them) over that whole flow,
  deletions included, compared both ways with the ClusterRole helm installed: every call is
  granted, and every grant is used or listed in UNUSED_GRANTS with the reason it is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localplane import Plane

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "modelops-system"
OPERATOR = f"system:serviceaccount:{NAMESPACE}:modelops"
APPLIER = "kubectl"

# The examples that run without GPUs: the quickstart (train, register, serve), a ModelVersion from a
# URI with promotion gates, and a canary InferenceService. The GPU examples would stay Unschedulable.
EXAMPLES = [
    "examples/quickstart/10-trainingjob.yaml",
    "examples/quickstart/30-inferenceservice.yaml",
    "examples/modelversion-from-uri.yaml",
    "examples/inferenceservice-canary.yaml",
]

Triple = tuple[str, str, str]

# Grants of the chart that no call of this flow uses, by the reason each stays. Keep it short: every
# entry is a permission a security review has to take on trust. Verb "*": every verb of a resource
# whose API the local plane does not serve.
UNUSED_GRANTS: dict[str, set[Triple]] = {
    "The local plane has no Gateway API: with it, an InferenceService's canary gets an HTTPRoute for "
    "weighted traffic, read, applied and deleted like the other children.": {
        ("gateway.networking.k8s.io", "httproutes", "*")
    },
    "The local plane has no Prometheus Operator: alert rules go to ConfigMaps there, to PrometheusRules "
    "where the CRD exists (docs/alerts.md).": {("monitoring.coreos.com", "prometheusrules", "*")},
    "The local plane has no VolumeSnapshot CRD: snapshot backups list, create and prune them.": {
        ("snapshot.storage.k8s.io", "volumesnapshots", "*")
    },
    "Only when a backup policy changes or is dropped (the copy CronJob is re-applied or deleted) or a "
    "restore runs (a Job); the examples set one policy and never change it.": {
        ("batch", "cronjobs", "patch"),
        ("batch", "cronjobs", "delete"),
        ("batch", "jobs", "create"),
    },
    "Only for a TuningJob, which this flow leaves out (a search trains many models): it reads, creates and "
    "deletes its trial TrainingJobs and patches its own status; tests/e2e/test_tuningjob_e2e.py checks "
    "those calls against the same RBAC.": {
        ("modelops.dev", "trainingjobs", "create"),
        ("modelops.dev", "trainingjobs", "delete"),
        ("modelops.dev", "trainingjobs", "get"),
        ("modelops.dev", "tuningjobs", "get"),
        ("modelops.dev", "tuningjobs", "patch"),
        ("modelops.dev", "tuningjobs/status", "patch"),
    },
    "Only while a pod is stuck starting (a claim or Secret missing, an image not pulled): the operator "
    "lists the namespace's events to report the kubelet's FailedMount or pull-secret message; whether "
    "this flow hits one depends on timing, tests/e2e/test_stalled_and_byo_e2e.py always does.": {
        ("", "events", "list")
    },
    "Only with version retention on (MODELOPS_RETAIN_UNALIASED_VERSIONS, off by default): the registry "
    "deletes a model's oldest unaliased versions.": {("modelops.dev", "modelversions", "delete")},
    "Only when the spec stops wanting a child (a canary scaled away, autoscaling or alerts turned off): "
    "deleting the parent leaves its children to the garbage collector, not to the operator.": {
        ("", "services", "delete"),
        ("", "configmaps", "delete"),
        ("apps", "deployments", "delete"),
        ("autoscaling", "horizontalpodautoscalers", "delete"),
        ("policy", "poddisruptionbudgets", "delete"),
    },
}

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("gitops") / "plane")
    lp.modelops("local", "up", "--dir", str(lp.dir), "--no-operator")
    try:
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def apply(plane: Plane) -> dict[tuple[str, str], dict[str, Any]]:
    """`kubectl apply --server-side` of the examples, as Argo CD's ServerSideApply=true sync does."""
    args = ["apply", "--server-side", "-o", "json"]
    for example in EXAMPLES:
        args += ["-f", str(REPO / example)]
    text = plane.kubectl(*args)
    # One JSON document, a List, or several documents one after the other, depending on the count.
    decoder, position, items = json.JSONDecoder(), 0, []
    while position < len(text.rstrip()):
        while text[position].isspace():
            position += 1
        doc, position = decoder.raw_decode(text, position)
        items += doc["items"] if doc.get("kind") == "List" else [doc]
    applied = {(o["kind"], o["metadata"]["name"]): o for o in items}
    assert set(applied) == example_objects(), f"kubectl apply printed {sorted(applied)}:\n{text[:2000]}"
    return applied


def example_objects() -> set[tuple[str, str]]:
    return {
        (doc["kind"], doc["metadata"]["name"])
        for example in EXAMPLES
        for doc in yaml.safe_load_all((REPO / example).read_text())
        if doc
    }


def fetch(plane: Plane, kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = plane.get(kind.lower(), name, "--show-managed-fields")
    return found


def observed(plane: Plane, kind: str, name: str) -> bool:
    obj = plane.get(kind.lower(), name)
    return bool((obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"])


def ready(plane: Plane, kind: str, name: str) -> bool:
    conditions = (plane.get(kind.lower(), name).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def phase(plane: Plane, kind: str, name: str) -> str:
    obj = plane.get(kind.lower(), name, "--ignore-not-found")
    return str(((obj or {}).get("status") or {}).get("phase") or "")


def spec_owners(obj: dict[str, Any]) -> set[str]:
    return {
        entry["manager"]
        for entry in obj["metadata"].get("managedFields") or []
        if "f:spec" in (entry.get("fieldsV1") or {})
    }


def test_applying_the_examples_twice_changes_nothing(plane: Plane) -> None:
    # No operator yet: nothing but the two applies writes, so resourceVersion must not move.
    first = apply(plane)
    second = apply(plane)
    for key, obj in first.items():
        again = second[key]
        assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"], key
        assert again["metadata"]["generation"] == obj["metadata"]["generation"] == 1, key


def test_the_operator_reconciles_the_examples_without_writing_a_spec(plane: Plane) -> None:
    before = {key: fetch(plane, *key) for key in apply(plane)}
    plane.kubectl("create", "namespace", NAMESPACE)
    plane.helm(
        "install",
        "modelops",
        str(REPO / "charts" / "modelops"),
        "-n",
        NAMESPACE,
        "--wait",
        "--timeout",
        "180s",
    )

    plane.wait_for(
        "the TrainingJob to succeed", lambda: phase(plane, "TrainingJob", "digits") == "Succeeded", 600
    )
    plane.wait_for(
        "ModelVersion digits-1 to be registered",
        lambda: phase(plane, "ModelVersion", "digits-1") != "",
        120,
    )
    # The quickstart's InferenceService serves that version: its Deployment, Service, HPA and PDB.
    serving = yaml.safe_load((REPO / "examples" / "quickstart" / "30-inferenceservice.yaml").read_text())
    plane.wait_for(
        f"InferenceService {serving['metadata']['name']} to be Ready",
        lambda: ready(plane, "InferenceService", serving["metadata"]["name"]),
        300,
    )
    for kind, name in before:
        plane.wait_for(
            f"the operator to observe {kind}/{name}", lambda k=kind, n=name: observed(plane, k, n), 180
        )

    after_reconcile = apply(
        plane
    )  # Argo CD's next sync: no conflict (kubectl fails on one), no new generation
    for (kind, name), obj in before.items():
        now = fetch(plane, kind, name)
        assert now["metadata"]["generation"] == 1, f"{kind}/{name}: something changed its spec"
        assert after_reconcile[(kind, name)]["metadata"]["generation"] == 1
        assert now["spec"] == obj["spec"], f"{kind}/{name}: the spec differs from what was applied"
        assert spec_owners(now) == {APPLIER}, (
            f"{kind}/{name}: spec fields owned by {sorted(spec_owners(now) - {APPLIER})}"
        )
        # The operator did write here (status, finalizers, annotations): the check is not vacuous.
        assert {e["manager"] for e in now["metadata"]["managedFields"]} - {APPLIER}, f"{kind}/{name}"


def explained(grant: Triple, allowed: set[Triple]) -> bool:
    group, resource, _ = grant
    return grant in allowed or (group, resource, "*") in allowed


def granted(rules: list[dict[str, Any]]) -> set[Triple]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def used(audit_log: Path, username: str) -> set[Triple]:
    """(apiGroup, resource[/subresource], verb) of every resource request `username` made."""
    calls: set[Triple] = set()
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if event["user"].get("username") != username or not ref.get("resource"):
            continue  # discovery (/api, /apis/...) is a non-resource URL every account may read
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        calls.add((ref.get("apiGroup", ""), resource, event["verb"]))
        if event["verb"] == "patch" and (event.get("responseStatus") or {}).get("code") == 201:
            # A server-side apply that created the object: kube-apiserver authorizes `create` too
            # (handlers/patch.go, createAuthorizerAttributes), so the role needs both verbs.
            calls.add((ref.get("apiGroup", ""), resource, "create"))
    return calls


def test_the_operator_used_exactly_the_rbac_the_chart_grants(plane: Plane) -> None:
    role = plane.get("clusterrole", "modelops")
    # Leader election's Lease is granted by a Role in the release namespace (leases only).
    election = plane.get("role", "modelops-leader-election", "-n", NAMESPACE)
    # Deleting exercises the finalizers and the clean-up paths; the ModelVersion the operator
    # registered goes last, once nothing serves it.
    plane.kubectl(
        "delete",
        *[a for e in EXAMPLES for a in ("-f", str(REPO / e))],
        "--wait",
        "--timeout=180s",
        timeout=200,
    )
    plane.kubectl("delete", "modelversion", "digits-1", "--wait", "--timeout=120s", timeout=130)
    # Uninstalling stops the operator, so its long-running watches end and reach the audit log.
    plane.helm("uninstall", "modelops", "-n", NAMESPACE, "--wait", "--timeout", "120s")

    calls = used(plane.dir / "audit.log", OPERATOR)
    grants = granted(role["rules"]) | granted(election["rules"])
    assert ("modelops.dev", "trainingjobs/status", "patch") in calls, "the audit log misses the operator"
    missing = sorted(calls - grants)
    assert missing == [], f"calls the chart's ClusterRole does not grant (403 in a cluster): {missing}"
    (plane.dir / "rbac-used.json").write_text(json.dumps(sorted(calls), indent=1))
    allowed: set[Triple] = set().union(*UNUSED_GRANTS.values())
    unexplained = sorted(g for g in grants - calls if not explained(g, allowed))
    assert unexplained == [], (
        f"granted but never used: {unexplained}; remove them from permissions.py and _rbac_rules.tpl, "
        "or list them in UNUSED_GRANTS with the reason"
    )
    stale = sorted(a for a in allowed if not any(explained(g, {a}) for g in grants))
    assert stale == [], f"UNUSED_GRANTS lists what the chart no longer grants: {stale}"
