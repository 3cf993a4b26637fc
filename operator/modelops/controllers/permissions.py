"""The RBAC rules the operator needs, derived from what kopf 1.45 and our handlers really call.

The Helm chart's ClusterRole is tested against `RULES`, and the API calls recorded on the local plane
are checked against it, so a new API call without a new rule fails a test instead of a deployment.

What kopf calls, for the record (kopf/_cogs/clients, kopf/_core/reactor):
- discovery: GET /version, /api, /api/v1, /apis, /apis/{group}/{version}. These are non-resource
  URLs that every authenticated user may read through the built-in `system:discovery` role, so no
  rule is needed.
- customresourcedefinitions: list and watch, to notice CRDs installed or removed after startup
  (kopf only logs a warning without them, but then a late `kubectl apply -f crds/` goes unnoticed).
- our three kinds: list and watch (cluster-wide, or per namespace with --namespace); merge-patch and
  JSON-patch of the object for the finalizer and the `modelops.dev/` progress and diff-base
  annotations; merge-patch of the status subresource for everything we report. kopf never GETs,
  PUTs or DELETEs a single object.
- events: create (kopf posts into the object's namespace; core v1 events, not events.k8s.io).
- namespaces: list and watch, only with --namespace (kopf resolves the names against the cluster;
  without the permission it warns and uses the names as given). Cluster-wide it never asks.
- peering (kopfpeerings, clusterkopfpeerings): never, the operator runs standalone.

What the TrainingJob controller calls (`trainingjob_handlers`, through `Cluster`): list of pods by label, create and
delete of pods; create of the headless Service (and merge-patch when it already exists); create of
the checkpoint PVC; get of the claims its pods mount (a missing one is reported, not waited on);
list of FailedMount events while a pod is pending; list and create of ModelVersions. Deleting a job removes its pods and Service
through owner references (the garbage collector's job, not ours), so no delete of Services or PVCs.

What the ModelVersion controller calls (`modelversion_handlers`): list of ModelVersions,
TrainingJobs and InferenceServices (a list, not a get, so no extra verb); list (by label), create and
delete of its verification pods; merge-patch of ModelVersions (its finalizer) and of their status
(with resourceVersion preconditions); delete of ModelVersions beyond the retention setting.

Checked by recording every request of `modelops operator` (cluster-wide and with --namespace) on
the local plane through a logging proxy: create, update, delete of an object made exactly these
calls (list+watch, merge-patch of the object and of /status, POST of an Event), nothing else.
"""

from __future__ import annotations

from typing import Any

from modelops import GROUP

PLURALS = ("trainingjobs", "modelversions", "inferenceservices", "tuningjobs")

NAMESPACED_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [GROUP],
        "resources": list(PLURALS),
        "verbs": ["list", "watch", "patch"],
    },
    {
        "apiGroups": [GROUP],
        "resources": [f"{plural}/status" for plural in PLURALS],
        "verbs": ["patch"],
    },
    {
        "apiGroups": [GROUP],
        "resources": ["modelversions"],
        "verbs": ["create", "delete"],
    },
    # Events are also listed (reason FailedMount only): the kubelet reports a missing claim or
    # Secret of a pod there, and the job's conditions repeat it (controllers/children.py); so do serving pods' (InferenceService).
    {
        "apiGroups": [""],
        "resources": ["events"],
        "verbs": ["create", "list"],
    },
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["list", "create", "delete"],
    },
    {
        "apiGroups": [""],
        "resources": ["services"],
        "verbs": ["create", "patch"],
    },
    # Claims the pods mount are read by name before the pods are created (ClaimNotFound).
    {
        "apiGroups": [""],
        "resources": ["persistentvolumeclaims"],
        "verbs": ["get", "create"],
    },
    # The alerting controller: each TrainingJob's and InferenceService's rule object, read by name
    # first (someone else's object of that name is reported, never taken over), server-side applied
    # (create and patch) and deleted when alerts are disabled or it moves to the other kind.
    {
        "apiGroups": ["monitoring.coreos.com"],
        "resources": ["prometheusrules"],
        "verbs": ["get", "create", "patch", "delete"],
    },
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "verbs": ["get", "create", "patch", "delete"],
    },
    # The InferenceService controller: its children are listed by label, read by name before one is
    # created (a name taken by someone else's object is reported, never taken over), server-side
    # applied (a PATCH that creates a missing object, so create and patch) and deleted when no
    # longer wanted (a canary scaled away); services' create and patch are granted above.
    {
        "apiGroups": [""],
        "resources": ["services"],
        "verbs": ["get", "list", "delete"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["get", "list", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["autoscaling"],
        "resources": ["horizontalpodautoscalers"],
        "verbs": ["get", "list", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["policy"],
        "resources": ["poddisruptionbudgets"],
        "verbs": ["get", "list", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["httproutes"],
        "verbs": ["get", "list", "create", "patch", "delete"],
    },
    # The backup controller (controllers/backup_handlers.py): the copy CronJob is read, created,
    # server-side applied when the policy changed and deleted when copy is dropped; a ModelVersion's
    # restore is a Job (its pods and the backup runs' pods are listed above, PVCs created above);
    # VolumeSnapshots are listed, created on the schedule and deleted by retention.
    {
        "apiGroups": ["batch"],
        "resources": ["cronjobs"],
        "verbs": ["get", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["create"],
    },
    {
        "apiGroups": ["snapshot.storage.k8s.io"],
        "resources": ["volumesnapshots"],
        "verbs": ["list", "create", "delete"],
    },
    # The TuningJob controller (controllers/tuningjob_handlers.py): the search is read fresh by name
    # before each plan (two triggers, the timer and a trial finishing, must not plan from a stale
    # copy); its unfinished trials are read by name (a list of every trial would grow with the
    # search); trials are TrainingJobs it creates, suspends (a patch, granted above) and deletes by
    # the cleanup policy. The best trial's ModelVersion is created with the rule above.
    {
        "apiGroups": [GROUP],
        "resources": ["tuningjobs", "trainingjobs"],
        "verbs": ["get"],
    },
    {
        "apiGroups": [GROUP],
        "resources": ["trainingjobs"],
        "verbs": ["create", "delete"],
    },
]
"""Rules on namespaced resources: a ClusterRole when watching all namespaces, else a Role in each."""

CLUSTER_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["list", "watch"],
    },
]
"""Rules on cluster-scoped resources: always a ClusterRole."""

NAMESPACE_LISTING_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]
"""Extra cluster-scoped rules when the operator runs with --namespace."""

RULES: list[dict[str, Any]] = [*CLUSTER_RULES, *NAMESPACED_RULES]
"""Everything the operator needs when it watches all namespaces (the default)."""


def rules(*, clusterwide: bool = True) -> list[dict[str, Any]]:
    """All rules for one way of running the operator."""
    return [*RULES] if clusterwide else [*CLUSTER_RULES, *NAMESPACE_LISTING_RULES, *NAMESPACED_RULES]
