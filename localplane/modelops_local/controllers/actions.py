"""What a controller decided to do, as data.

Each controller is a pure function from (object, observed children, time) to a list of these
actions; the runner applies them over HTTP. Keeping the decision as data is what lets the unit tests
check the upstream algorithms without any server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    api_version: str
    plural: str
    kind: str


PODS = Kind("v1", "pods", "Pod")
SERVICES = Kind("v1", "services", "Service")
ENDPOINTS = Kind("v1", "endpoints", "Endpoints")
PVCS = Kind("v1", "persistentvolumeclaims", "PersistentVolumeClaim")
PVS = Kind("v1", "persistentvolumes", "PersistentVolume")
EVENTS = Kind("v1", "events", "Event")
DEPLOYMENTS = Kind("apps/v1", "deployments", "Deployment")
REPLICASETS = Kind("apps/v1", "replicasets", "ReplicaSet")
STATEFULSETS = Kind("apps/v1", "statefulsets", "StatefulSet")
JOBS = Kind("batch/v1", "jobs", "Job")
CRONJOBS = Kind("batch/v1", "cronjobs", "CronJob")
HPAS = Kind("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
PDBS = Kind("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget")
STORAGECLASSES = Kind("storage.k8s.io/v1", "storageclasses", "StorageClass")
ENDPOINTSLICES = Kind("discovery.k8s.io/v1", "endpointslices", "EndpointSlice")

SCALABLE = {"Deployment": DEPLOYMENTS, "ReplicaSet": REPLICASETS, "StatefulSet": STATEFULSETS}


@dataclass(frozen=True)
class Create:
    kind: Kind
    namespace: str
    body: Obj


@dataclass(frozen=True)
class Patch:
    """A JSON merge patch of the main resource (metadata/spec), or of a subresource such as scale."""

    kind: Kind
    namespace: str
    name: str
    patch: Obj
    subresource: str | None = None


@dataclass(frozen=True)
class Status:
    """Replace `status` through the status subresource (skipped by the runner when unchanged)."""

    kind: Kind
    namespace: str
    name: str
    status: Obj


@dataclass(frozen=True)
class Delete:
    kind: Kind
    namespace: str
    name: str
    uid: str = ""
    propagation: str = "Background"


@dataclass(frozen=True)
class Event:
    """A core/v1 Event about `involved` (best effort, as upstream controllers record them)."""

    involved: Obj
    reason: str
    message: str
    type: str = "Normal"


@dataclass
class Result:
    actions: list[Create | Patch | Status | Delete | Event] = field(default_factory=list)
    # Seconds until this object needs another look even if nothing changes (minReadySeconds,
    # deadlines, schedules); None means only a change wakes it.
    requeue_after: float | None = None

    def requeue(self, seconds: float) -> None:
        if seconds == float("inf"):
            return
        seconds = max(seconds, 0.05)
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)
