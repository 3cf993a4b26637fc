"""Deployment and ReplicaSet controllers of the local plane, driven by an in-memory simulation.

The simulation applies the controllers' actions to dicts and plays the kubelet (pods become ready one
step after they are created), so the rollout invariants a user relies on can be checked step by step.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from typing import Any

import pytest

from modelops_local.controllers import common as c
from modelops_local.controllers import deployments, replicasets
from modelops_local.controllers.actions import Create, Delete, Patch, Status

Obj = dict[str, Any]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_uid = itertools.count(1)


def merge(into: Obj, patch: Obj) -> None:
    for k, v in patch.items():
        if v is None:
            into.pop(k, None)
        elif isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)


def deployment(replicas: int = 3, image: str = "v1", **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **spec,
        },
    }


class Cluster:
    """Just enough of an API server and kubelet to run the two controllers against each other."""

    def __init__(self, d: Obj) -> None:
        self.at = T0
        self.objs: dict[str, dict[str, Obj]] = {"deployments": {"web": d}, "replicasets": {}, "pods": {}}
        self.history: list[tuple[int, int, int]] = []  # (available, total pods, new-template pods)

    def apply(self, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, Create):
                body = copy.deepcopy(a.body)
                body["metadata"]["uid"] = f"uid-{next(_uid)}"
                body["metadata"]["creationTimestamp"] = c.fmt_time(self.at)
                body["metadata"]["generation"] = 1
                self.objs[a.kind.plural][body["metadata"]["name"]] = body
            elif isinstance(a, Patch):
                obj = self.objs[a.kind.plural][a.name]
                merge(obj, a.patch)
                if "spec" in a.patch:
                    obj["metadata"]["generation"] += 1
            elif isinstance(a, Status):
                if a.name in self.objs[a.kind.plural]:
                    self.objs[a.kind.plural][a.name]["status"] = copy.deepcopy(a.status)
            elif isinstance(a, Delete):
                self.objs[a.kind.plural].pop(a.name, None)

    def kubelet(self) -> None:
        for pod in self.objs["pods"].values():
            if not c.pod_is_ready(pod):
                pod["spec"]["nodeName"] = "n"
                pod["status"] = {
                    "phase": "Running",
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": c.fmt_time(self.at)}
                    ],
                }

    def step(self, ready: bool = True) -> None:
        self.at += dt.timedelta(seconds=1)
        d = self.objs["deployments"]["web"]
        pods = list(self.objs["pods"].values())
        self.apply(deployments.reconcile(d, list(self.objs["replicasets"].values()), pods, self.at).actions)
        for rs in list(self.objs["replicasets"].values()):
            self.apply(replicasets.reconcile(rs, list(self.objs["pods"].values()), self.at).actions)
        if ready:
            self.kubelet()
        for rs in list(self.objs["replicasets"].values()):
            self.apply(replicasets.reconcile(rs, list(self.objs["pods"].values()), self.at).actions)
        pods = list(self.objs["pods"].values())
        image = d["spec"]["template"]["spec"]["containers"][0]["image"]
        self.history.append(
            (
                sum(1 for p in pods if c.pod_is_ready(p)),
                len(pods),
                sum(1 for p in pods if p["spec"]["containers"][0]["image"] == image),
            )
        )

    def run(self, steps: int = 30, ready: bool = True) -> None:
        for _ in range(steps):
            self.step(ready)

    @property
    def d(self) -> Obj:
        return self.objs["deployments"]["web"]

    def condition(self, ctype: str) -> Obj:
        cond = c.get_condition(self.d.get("status") or {}, ctype)
        assert cond is not None, f"no {ctype} condition in {self.d.get('status')}"
        return cond

    def roll(self, image: str) -> None:
        self.d["spec"]["template"]["spec"]["containers"][0]["image"] = image
        self.d["metadata"]["generation"] += 1
        self.history.clear()


def test_deployment_becomes_available_with_replicas_and_revision() -> None:
    k = Cluster(deployment(replicas=3))
    k.run(10)
    status = k.d["status"]
    assert status["replicas"] == status["readyReplicas"] == status["availableReplicas"] == 3
    assert status["updatedReplicas"] == 3 and status["observedGeneration"] == 1
    assert k.condition("Available")["status"] == "True"
    assert k.condition("Available")["reason"] == "MinimumReplicasAvailable"
    assert k.condition("Progressing")["reason"] == "NewReplicaSetAvailable"
    (rs,) = k.objs["replicasets"].values()
    hash_ = rs["metadata"]["labels"][deployments.HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{hash_}"
    assert rs["metadata"]["annotations"][deployments.REVISION] == "1"
    assert k.d["metadata"]["annotations"][deployments.REVISION] == "1"
    for pod in k.objs["pods"].values():
        assert pod["metadata"]["labels"] == {"app": "web", deployments.HASH_LABEL: hash_}
        (ref,) = pod["metadata"]["ownerReferences"]
        assert (
            ref["kind"] == "ReplicaSet" and ref["controller"] is True and ref["uid"] == rs["metadata"]["uid"]
        )


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "min_available", "max_total"),
    [(4, 1, 1, 3, 5), (4, 0, 1, 3, 4), (4, 1, 0, 4, 5), (10, "25%", "25%", 8, 13), (3, "50%", 0, 3, 5)],
)
def test_rolling_update_keeps_within_max_surge_and_max_unavailable(
    replicas: int, surge: Any, unavailable: Any, min_available: int, max_total: int
) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    k = Cluster(deployment(replicas=replicas, strategy=strategy))
    k.run(15)
    k.roll("v2")
    k.run(40)
    assert all(avail >= min_available for avail, _, _ in k.history), k.history
    assert all(total <= max_total for _, total, _ in k.history), k.history
    assert k.history[-1] == (replicas, replicas, replicas)
    assert k.condition("Progressing")["reason"] == "NewReplicaSetAvailable"
    revisions = sorted(
        rs["metadata"]["annotations"][deployments.REVISION] for rs in k.objs["replicasets"].values()
    )
    assert revisions == ["1", "2"]


def test_recreate_stops_every_old_pod_before_starting_new_ones() -> None:
    k = Cluster(deployment(replicas=3, strategy={"type": "Recreate"}))
    k.run(10)
    k.roll("v2")
    k.run(20)
    first_new = next(i for i, (_, _, new) in enumerate(k.history) if new)
    assert k.history[first_new][1] == k.history[first_new][2], "old and new pods ran together"
    assert k.history[-1] == (3, 3, 3)


def test_rollback_reuses_old_replicaset_with_a_new_revision() -> None:
    k = Cluster(deployment(replicas=2))
    k.run(10)
    k.roll("v2")
    k.run(20)
    k.roll("v1")
    k.run(20)
    assert len(k.objs["replicasets"]) == 2
    by_image = {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs for rs in k.objs["replicasets"].values()
    }
    assert by_image["v1"]["metadata"]["annotations"][deployments.REVISION] == "3"
    assert by_image["v1"]["spec"]["replicas"] == 2 and by_image["v2"]["spec"]["replicas"] == 0
    assert k.d["metadata"]["annotations"][deployments.REVISION] == "3"


def test_scale_up_and_down() -> None:
    k = Cluster(deployment(replicas=2))
    k.run(8)
    k.d["spec"]["replicas"] = 5
    k.run(8)
    assert k.history[-1] == (5, 5, 5)
    k.d["spec"]["replicas"] = 1
    k.run(8)
    assert k.history[-1] == (1, 1, 1)
    assert k.d["status"]["replicas"] == 1


def test_progress_deadline_exceeded_when_pods_never_get_ready() -> None:
    k = Cluster(deployment(replicas=2, progressDeadlineSeconds=5))
    k.run(10, ready=False)
    cond = k.condition("Progressing")
    assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert k.condition("Available")["status"] == "False"
    assert k.d["status"]["unavailableReplicas"] == 2


def test_revision_history_limit_prunes_idle_replicasets() -> None:
    k = Cluster(deployment(replicas=1, revisionHistoryLimit=1))
    k.run(6)
    for image in ("v2", "v3", "v4"):
        k.roll(image)
        k.run(12)
    images = sorted(
        rs["spec"]["template"]["spec"]["containers"][0]["image"] for rs in k.objs["replicasets"].values()
    )
    assert images == ["v3", "v4"]


def test_paused_deployment_does_not_roll_out() -> None:
    k = Cluster(deployment(replicas=2))
    k.run(6)
    k.d["spec"]["paused"] = True
    k.roll("v2")
    k.run(6)
    assert len(k.objs["replicasets"]) == 1
    assert k.condition("Progressing")["reason"] == "DeploymentPaused"


def _pod(name: str, labels: dict[str, str], **status: Any) -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": name,
            "labels": labels,
            "creationTimestamp": c.fmt_time(T0),
        },
        "spec": {},
        "status": status,
    }


def _rs(replicas: int) -> Obj:
    return {
        "metadata": {"name": "rs", "namespace": "ns", "uid": "rs-uid", "generation": 2},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": 10,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}},
        },
    }


def test_replicaset_adopts_orphans_and_releases_pods_that_stop_matching() -> None:
    rs = _rs(1)
    orphan = _pod("orphan", {"app": "x"})
    stray = _pod("stray", {"app": "y"})
    stray["metadata"]["ownerReferences"] = [c.owner_reference(rs, "apps/v1", "ReplicaSet")]
    actions = replicasets.reconcile(rs, [orphan, stray], T0).actions
    patches = {a.name: a.patch for a in actions if isinstance(a, Patch)}
    assert patches["orphan"]["metadata"]["ownerReferences"][0]["uid"] == "rs-uid"
    assert patches["stray"]["metadata"]["ownerReferences"] == []
    assert not any(isinstance(a, Create) for a in actions), "the adopted pod already fills the one replica"


def test_replicaset_deletes_unready_and_unscheduled_pods_first() -> None:
    rs = _rs(1)
    ref = c.owner_reference(rs, "apps/v1", "ReplicaSet")
    ready = _pod("ready", {"app": "x"}, phase="Running", conditions=[{"type": "Ready", "status": "True"}])
    ready["spec"]["nodeName"] = "n"
    pending = _pod("pending", {"app": "x"}, phase="Pending")
    pending["spec"]["nodeName"] = "n"
    unscheduled = _pod("unscheduled", {"app": "x"}, phase="Pending")
    for p in (ready, pending, unscheduled):
        p["metadata"]["ownerReferences"] = [ref]
    actions = replicasets.reconcile(rs, [ready, pending, unscheduled], T0).actions
    assert sorted(a.name for a in actions if isinstance(a, Delete)) == ["pending", "unscheduled"]


def test_replicaset_available_honours_min_ready_seconds() -> None:
    rs = _rs(1)
    pod = _pod(
        "p",
        {"app": "x"},
        phase="Running",
        conditions=[{"type": "Ready", "status": "True", "lastTransitionTime": c.fmt_time(T0)}],
    )
    pod["metadata"]["ownerReferences"] = [c.owner_reference(rs, "apps/v1", "ReplicaSet")]
    early = replicasets.reconcile(rs, [pod], T0 + dt.timedelta(seconds=3))
    (status,) = [a.status for a in early.actions if isinstance(a, Status)]
    assert (status["readyReplicas"], status["availableReplicas"], status["observedGeneration"]) == (1, 0, 2)
    assert early.requeue_after is not None and early.requeue_after <= 7
    (late,) = [
        a.status
        for a in replicasets.reconcile(rs, [pod], T0 + dt.timedelta(seconds=11)).actions
        if isinstance(a, Status)
    ]
    assert late["availableReplicas"] == 1


def test_percent_fenceposts_round_like_upstream() -> None:
    d = deployment(replicas=10, strategy={"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    assert deployments.fenceposts(d) == (3, 2)
    d = deployment(replicas=1, strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})
    assert deployments.fenceposts(d) == (0, 1)


def test_rejected_pod_creates_show_as_replica_failure_and_back_off() -> None:
    rs = _rs(2)
    failing = replicasets.reconcile(rs, [], T0, failure=("pods is forbidden: exceeds quota", 1.0))
    assert not [a for a in failing.actions if isinstance(a, Create)], "wait before trying again"
    assert failing.requeue_after is not None and failing.requeue_after <= replicasets.CREATE_BACKOFF
    (status,) = [a.status for a in failing.actions if isinstance(a, Status)]
    cond = c.get_condition(status, "ReplicaFailure")
    assert cond is not None and cond["reason"] == "FailedCreate" and "quota" in cond["message"]
    retry = replicasets.reconcile(rs, [], T0, failure=("pods is forbidden: exceeds quota", 11.0))
    assert len([a for a in retry.actions if isinstance(a, Create)]) == 2
    rs["status"] = status
    healed = replicasets.reconcile(rs, [], T0)
    (status,) = [a.status for a in healed.actions if isinstance(a, Status)]
    assert c.get_condition(status, "ReplicaFailure") is None


def test_scaling_in_the_middle_of_a_rollout_is_shared_proportionally() -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 2}}
    k = Cluster(deployment(replicas=10, strategy=strategy))
    k.run(10)
    k.roll("v2")
    k.run(3, ready=False)  # the new pods never get ready: the rollout stalls half way
    sizes = {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
        for rs in k.objs["replicasets"].values()
    }
    assert sizes == {"v1": 8, "v2": 4}, sizes
    k.d["spec"]["replicas"] = 20
    k.d["metadata"]["generation"] += 1
    k.step(ready=False)
    sizes = {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
        for rs in k.objs["replicasets"].values()
    }
    # 12 pods were allowed (10 + surge 2), now 22 (20 + surge 2): each set grows by 22/12, rounded.
    assert sizes == {"v1": 15, "v2": 7}, sizes
    k.run(30)
    assert k.history[-1] == (20, 20, 20)
