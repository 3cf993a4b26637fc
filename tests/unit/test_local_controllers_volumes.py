"""PersistentVolumeClaim binding and PodDisruptionBudget status, as pure decisions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from modelops_local.controllers import common as c
from modelops_local.controllers import disruption, volumes
from modelops_local.controllers.actions import PVCS, Create, Delete, Patch, Status

Obj = dict[str, Any]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def claim(**spec: Any) -> Obj:
    return {
        "metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}, **spec},
        "status": {"phase": "Pending"},
    }


def test_pending_claim_gets_a_volume_directory_and_is_bound() -> None:
    r = volumes.reconcile_claim(
        claim(storageClassName="fast"),
        [],
        [{"metadata": {"name": "fast"}, "reclaimPolicy": "Retain"}],
        "/d",
        T0,
    )
    (create,) = [a for a in r.actions if isinstance(a, Create)]
    pv = create.body
    assert pv["metadata"]["name"] == "pvc-u1"
    assert pv["spec"]["hostPath"]["path"] == "/d/volumes/ns/data"
    assert pv["spec"]["capacity"] == {"storage": "5Gi"} and pv["spec"]["storageClassName"] == "fast"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["claimRef"]["uid"] == "u1"
    (patch,) = [a for a in r.actions if isinstance(a, Patch)]
    assert patch.kind == PVCS and patch.patch["spec"] == {"volumeName": "pvc-u1"}
    statuses = {a.kind.plural: a.status for a in r.actions if isinstance(a, Status)}
    assert statuses["persistentvolumeclaims"]["phase"] == "Bound"
    assert statuses["persistentvolumeclaims"]["capacity"] == {"storage": "5Gi"}
    assert statuses["persistentvolumes"] == {"phase": "Bound"}


def test_claim_naming_a_volume_binds_to_it_unless_taken() -> None:
    free = {"metadata": {"name": "static"}, "spec": {"capacity": {"storage": "10Gi"}}}
    r = volumes.reconcile_claim(claim(volumeName="static"), [free], [], "/d", T0)
    assert not [a for a in r.actions if isinstance(a, Create)]
    (pvc_status,) = [a.status for a in r.actions if isinstance(a, Status) and a.kind == PVCS]
    assert pvc_status["capacity"] == {"storage": "10Gi"}
    taken = {"metadata": {"name": "static"}, "spec": {"claimRef": {"name": "other", "uid": "x"}}}
    assert volumes.reconcile_claim(claim(volumeName="static"), [taken], [], "/d", T0).actions == []


def test_clones_wait_for_their_source_and_snapshots_are_refused() -> None:
    source = {"metadata": {"name": "src", "namespace": "ns"}, "status": {"phase": "Pending"}}
    cloning = claim(dataSource={"kind": "PersistentVolumeClaim", "name": "src"})
    assert volumes.clone_source(cloning, [source]) == (None, "waiting for the source claim 'src' to be bound")
    source["status"]["phase"] = "Bound"
    assert volumes.clone_source(cloning, [source]) == (source, None)
    snap = claim(dataSource={"kind": "VolumeSnapshot", "apiGroup": "snapshot.storage.k8s.io", "name": "s"})
    found, why = volumes.clone_source(snap, [])
    assert found is None and why is not None and "VolumeSnapshot" in why
    blocked = volumes.reconcile_claim(cloning, [], [], "/d", T0, blocked=why)
    assert not [a for a in blocked.actions if isinstance(a, (Create, Status))], "stays Pending"


def pv(policy: str, path: str = "/d/volumes/ns/data") -> Obj:
    return {
        "metadata": {
            "name": "pvc-u1",
            "uid": "pv",
            "annotations": {"pv.kubernetes.io/provisioned-by": volumes.PROVISIONER},
        },
        "spec": {
            "persistentVolumeReclaimPolicy": policy,
            "hostPath": {"path": path},
            "claimRef": {"uid": "u1"},
        },
    }


def test_released_volume_is_deleted_with_its_directory_or_retained() -> None:
    r, remove = volumes.reconcile_volume(pv("Delete"), [claim()], "/d")
    assert r.actions == [] and remove is None, "the claim still exists"
    r, remove = volumes.reconcile_volume(pv("Delete"), [], "/d")
    assert [type(a) for a in r.actions] == [Delete] and remove == "/d/volumes/ns/data"
    r, remove = volumes.reconcile_volume(pv("Retain"), [], "/d")
    assert remove is None and [a.status for a in r.actions if isinstance(a, Status)] == [
        {"phase": "Released"}
    ]
    # Never removes a directory outside the plane's volumes, whatever the volume says.
    _, remove = volumes.reconcile_volume(pv("Delete", "/etc"), [], "/d")
    assert remove is None


def _pod(name: str, ready: bool, rs_uid: str = "rs") -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"app": "w"},
            "ownerReferences": [{"kind": "ReplicaSet", "uid": rs_uid, "controller": True}],
        },
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def _pdb(**spec: Any) -> Obj:
    return {
        "metadata": {"name": "b", "namespace": "ns", "generation": 3},
        "spec": {"selector": {"matchLabels": {"app": "w"}}, **spec},
    }


RS = {
    "metadata": {
        "name": "w-1",
        "uid": "rs",
        "ownerReferences": [{"kind": "Deployment", "uid": "d", "controller": True}],
    },
    "spec": {"replicas": 3},
}
DEPLOY = {"kind": "Deployment", "metadata": {"uid": "d"}, "spec": {"replicas": 4}}


def _status(pdb: Obj, pods: list[Obj]) -> Obj:
    (st,) = [
        a.status for a in disruption.reconcile(pdb, pods, [RS], [DEPLOY], T0).actions if isinstance(a, Status)
    ]
    return st


def test_pdb_counts_healthy_pods_against_the_budget() -> None:
    pods = [_pod("a", True), _pod("b", True), _pod("c", False)]
    st = _status(_pdb(minAvailable=1), pods)
    assert (st["expectedPods"], st["currentHealthy"], st["desiredHealthy"], st["disruptionsAllowed"]) == (
        3,
        2,
        1,
        1,
    )
    assert c.get_condition(st, "DisruptionAllowed")["reason"] == "SufficientPods"  # type: ignore[index]
    # Percentages and maxUnavailable use the Deployment's replicas (4), not the pods that exist.
    st = _status(_pdb(maxUnavailable="25%"), pods)
    assert (st["expectedPods"], st["desiredHealthy"], st["disruptionsAllowed"]) == (4, 3, 0)
    assert c.get_condition(st, "DisruptionAllowed")["reason"] == "InsufficientPods"  # type: ignore[index]
    st = _status(_pdb(minAvailable="50%"), pods)
    assert (st["desiredHealthy"], st["disruptionsAllowed"], st["observedGeneration"]) == (2, 0, 3)


def test_pdb_percent_without_controller_fails_sync() -> None:
    orphan = _pod("a", True, rs_uid="unknown")
    st = _status(_pdb(maxUnavailable=1), [orphan])
    cond = c.get_condition(st, "DisruptionAllowed")
    assert cond is not None and cond["reason"] == "SyncFailed" and st["disruptionsAllowed"] == 0
