"""Defaults the real API server fills into built-in objects, for the fields clients and controllers read.

Only the defaults that change behaviour or that `kubectl apply` diffs would trip on are here; the full
set lives in each API group's `zz_generated.defaults.go`.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def _container(c: Obj) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    image = str(c.get("image", ""))
    tagless = ":" not in image.rsplit("/", 1)[-1] and "@" not in image
    c.setdefault("imagePullPolicy", "Always" if tagless or image.endswith(":latest") else "IfNotPresent")
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    c.setdefault("resources", {})


def pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    if "serviceAccountName" not in spec:
        spec["serviceAccountName"] = spec.get("serviceAccount", "default")
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                _container(c)


def _template(spec: Obj) -> None:
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        pod_spec(template["spec"])


def apply(storage_key: str, obj: Obj) -> None:
    """Fill defaults into `obj` in place (create and update)."""
    spec = obj.get("spec")
    if storage_key == "/pods" and isinstance(spec, dict):
        pod_spec(spec)
        spec.setdefault("priority", 0)
    elif storage_key in ("apps/deployments", "apps/replicasets", "apps/statefulsets") and isinstance(
        spec, dict
    ):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        _template(spec)
        if storage_key == "apps/deployments":
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy",
                {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            )
        if storage_key == "apps/statefulsets":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    elif storage_key == "apps/daemonsets" and isinstance(spec, dict):
        spec.setdefault("revisionHistoryLimit", 10)
        _template(spec)
    elif storage_key == "batch/jobs" and isinstance(spec, dict):
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("parallelism", 1)
        if "completions" not in spec:
            spec["completions"] = 1
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        _template(spec)
    elif storage_key == "batch/cronjobs" and isinstance(spec, dict):
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job_template = spec.get("jobTemplate")
        if isinstance(job_template, dict) and isinstance(job_template.get("spec"), dict):
            _template(job_template["spec"])
    elif storage_key == "/services" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("type") != "ExternalName":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
    elif storage_key == "/persistentvolumeclaims" and isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
    elif storage_key == "/namespaces":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif storage_key == "/secrets":
        obj.setdefault("type", "Opaque")
    elif storage_key == "autoscaling/horizontalpodautoscalers" and isinstance(spec, dict):
        spec.setdefault("minReplicas", 1)
    elif (
        storage_key == "policy/poddisruptionbudgets"
        and isinstance(spec, dict)
        and ("minAvailable" not in spec and "maxUnavailable" not in spec)
    ):
        spec["minAvailable"] = 1


# Built-ins whose status a client cannot set on create (the status subresource owns it), with the
# zero status the real server returns (required integers serialize as 0).
STATUS_RESET_ON_CREATE: dict[str, dict[str, Any]] = {
    "apps/deployments": {},
    "apps/replicasets": {"replicas": 0},
    "apps/statefulsets": {"replicas": 0, "availableReplicas": 0},
    "apps/daemonsets": {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                        "numberReady": 0},
    "batch/jobs": {},
    "batch/cronjobs": {},
    "autoscaling/horizontalpodautoscalers": {"currentReplicas": 0, "desiredReplicas": 0},
    "policy/poddisruptionbudgets": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                                    "expectedPods": 0},
    "networking.k8s.io/ingresses": {"loadBalancer": {}},
}  # fmt: skip
