"""The children of an InferenceService: serving Deployments, Services, the HPA, the PDB, an HTTPRoute.

Pure functions from the spec and the resolved ModelVersions to manifests. The serving pods run the
worker image's `modelops-worker serve` with the contract of `modelops.api.serveconfig` (one JSON env
variable, port 8080, V2 health paths, /metrics). Every child carries the InferenceService's owner
reference, so deleting it removes them all, and an annotation with the digest of what was applied, so
the controller re-applies a child only when its desired form changed (or someone edited it away).

Names: `<name>-stable` and `<name>-canary` (Deployments), `<name>` (the Service clients call, the HPA
and the PDB), and with Gateway API routing `<name>-stable`/`<name>-canary` Services behind the
HTTPRoute `<name>`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import modelops.builders as builders
from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.serveconfig import (
    ENV_SERVE_CONFIG,
    METRIC_INFLIGHT,
    METRIC_REQUESTS,
    PATH_LIVE,
    PATH_METRICS,
    PATH_READY,
    SERVE_PORT,
    ServeConfig,
)
from modelops.builders.trainingjob import GPU_PRODUCT_LABEL, GPU_RESOURCE, RUN_AS_USER, worker_image

KIND = "InferenceService"
LABEL_ISVC = "modelops.dev/inferenceservice"
LABEL_TRACK = "modelops.dev/track"
LABEL_MODELVERSION = "modelops.dev/modelversion"
LABEL_COMPONENT = "app.kubernetes.io/component"
ANNOTATION_APPLIED = "modelops.dev/applied-digest"
ANNOTATION_SHA256 = "modelops.dev/sha256"
STABLE, CANARY = "stable", "canary"
TRACKS = (STABLE, CANARY)

CONTAINER = "server"
MODEL_MOUNT = "/var/run/modelops/model"
AUTH_MOUNT = "/var/run/modelops/auth"
SERVICE_PORT = 80
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_VERSION = f"{GATEWAY_GROUP}/v1"
# Seconds between SIGTERM and SIGKILL beyond the server's own drain, for the last responses to leave.
_SHUTDOWN_MARGIN = 10


@dataclasses.dataclass(frozen=True)
class Served:
    """A Ready ModelVersion as the serving pods need it."""

    model_version: str
    version: int | None
    sha256: str
    claim: str
    path: str
    format: str = "torchscript"


def parse_pvc_uri(uri: str | None) -> tuple[str, str] | None:
    """`pvc://claim/path/in/claim` -> (claim, path); None for any other form."""
    if not uri or not uri.startswith("pvc://"):
        return None
    claim, _, path = uri[len("pvc://") :].partition("/")
    path = path.strip("/")
    if not claim or not path or ".." in path.split("/"):
        return None
    return claim, path


def deployment_name(name: str, track: str) -> str:
    return f"{name}-{track}"


def track_service_name(name: str, track: str) -> str:
    return f"{name}-{track}"


def url(name: str, namespace: str) -> str:
    return f"http://{name}.{namespace}.svc.cluster.local/v2/models/{name}"


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return builders.owner_reference(KIND, name, uid)


def labels(name: str) -> dict[str, str]:
    return {LABEL_ISVC: name, **builders.MANAGED_BY}


def digest(obj: Mapping[str, Any]) -> str:
    """A short, stable digest of a manifest (without our own annotation)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamp(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].setdefault("annotations", {})[ANNOTATION_APPLIED] = digest(obj)
    return obj


def _meta(name: str, namespace: str, uid: str, owner: str, extra: Mapping[str, str] | None = None) -> Any:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {**labels(owner), **(extra or {})},
        "ownerReferences": [owner_reference(owner, uid)],
    }


def serve_config(name: str, spec: InferenceServiceSpec, served: Served) -> ServeConfig:
    return ServeConfig(
        model_name=name,
        model_version=str(served.version if served.version is not None else served.model_version),
        model_version_name=served.model_version,
        artifact_path=f"{MODEL_MOUNT}/{served.path}",
        sha256=served.sha256,
        format="state_dict" if served.format == "state_dict" else "torchscript",
        batching=spec.batching,
        quantization=spec.quantization,
        auth_tokens_file=f"{AUTH_MOUNT}/{spec.auth.key}" if spec.auth else None,
    )


def _resources(spec: InferenceServiceSpec) -> dict[str, Any]:
    res = spec.resources
    # requests == limits: the HPA's CPU utilisation is a percent of the request, and a serving pod
    # with Guaranteed QoS is the last to be evicted.
    amounts: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    if res.gpus:
        amounts[GPU_RESOURCE] = str(res.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def pod_template(
    name: str, spec: InferenceServiceSpec, served: Served, track: str, *, image: str | None = None
) -> dict[str, Any]:
    """The serving pod: `modelops-worker serve`, the artifact's claim read-only, V2 probes."""
    config = serve_config(name, spec, served)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image or worker_image(),
        "command": ["modelops-worker", "serve"],
        "env": [
            {"name": ENV_SERVE_CONFIG, "value": config.model_dump_json(by_alias=True, exclude_none=True)},
            # The root filesystem is read-only; scratch files go to the emptyDir at /tmp.
            {"name": "TMPDIR", "value": "/tmp"},
        ],
        "ports": [{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}],
        "resources": _resources(spec),
        # Loading torch and the model takes seconds: the startup probe gives it two minutes before
        # liveness may restart the pod; readiness means loaded and verified (sha256).
        "startupProbe": {
            "httpGet": {"path": PATH_LIVE, "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": PATH_LIVE, "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "readinessProbe": {
            "httpGet": {"path": PATH_READY, "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 2,
            "timeoutSeconds": 2,
        },
        # The server writes why it refused to start (e.g. ArtifactDigestMismatch) as JSON here.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    volumes: list[dict[str, Any]] = [
        {"name": "model", "persistentVolumeClaim": {"claimName": served.claim, "readOnly": True}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    if spec.auth is not None:
        container["volumeMounts"].append({"name": "auth", "mountPath": AUTH_MOUNT, "readOnly": True})
        volumes.append({"name": "auth", "secret": {"secretName": spec.auth.secret_name}})
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": int(config.drain_seconds) + _SHUTDOWN_MARGIN,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if spec.resources.gpus:
        if spec.resources.gpu_type:
            pod_spec["nodeSelector"] = {GPU_PRODUCT_LABEL: spec.resources.gpu_type}
        pod_spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "metadata": {
            "labels": {
                **labels(name),
                LABEL_COMPONENT: "predictor",
                LABEL_TRACK: track,
                LABEL_MODELVERSION: served.model_version,
            },
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(SERVE_PORT),
                "prometheus.io/path": PATH_METRICS,
                ANNOTATION_SHA256: served.sha256,
            },
        },
        "spec": pod_spec,
    }


def deployment(
    name: str,
    namespace: str,
    uid: str,
    spec: InferenceServiceSpec,
    served: Served,
    track: str,
    *,
    replicas: int | None = None,
    image: str | None = None,
) -> dict[str, Any]:
    """A track's Deployment. `replicas` None leaves the count to the HPA (the stable track)."""
    selector = {LABEL_ISVC: name, LABEL_TRACK: track}
    dep_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        # A new version comes up before an old pod goes: serving never drops below its size.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": 600,
        "template": pod_template(name, spec, served, track, image=image),
    }
    if replicas is not None:
        dep_spec["replicas"] = replicas
    return _stamp(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(
                deployment_name(name, track),
                namespace,
                uid,
                name,
                {LABEL_TRACK: track, LABEL_COMPONENT: "predictor"},
            ),
            "spec": dep_spec,
        }
    )


def service(
    name: str, namespace: str, uid: str, *, track: str | None = None, tracks: tuple[str, ...] = TRACKS
) -> dict[str, Any]:
    """The Service clients call (`track` None: over `tracks`), or a track's own Service."""
    selector: dict[str, str] = {LABEL_ISVC: name, LABEL_COMPONENT: "predictor"}
    if track is not None:
        selector[LABEL_TRACK] = track
    elif tracks != TRACKS:
        selector[LABEL_TRACK] = tracks[0]
    svc_name = name if track is None else track_service_name(name, track)
    extra = {LABEL_TRACK: track} if track else {}
    return _stamp(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(svc_name, namespace, uid, name, extra),
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
            },
        }
    )


def hpa(name: str, namespace: str, uid: str, spec: InferenceServiceSpec) -> dict[str, Any]:
    """The stable track's autoscaler.

    cpu is a Resource metric (metrics-server); concurrency and rps are Pods metrics named after the
    server's own series (the in-flight gauge, the requests counter as a rate), which a cluster serves
    through prometheus-adapter (docs/inferenceservice.md) and the local plane scrapes from the pods.
    """
    scaling = spec.autoscaling
    metric: dict[str, Any]
    if scaling.metric == "cpu":
        metric = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": scaling.target},
            },
        }
    else:
        series = METRIC_INFLIGHT if scaling.metric == "concurrency" else METRIC_REQUESTS
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": series},
                "target": {"type": "AverageValue", "averageValue": str(scaling.target)},
            },
        }
    return _stamp(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name, namespace, uid, name),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment_name(name, STABLE),
                },
                "minReplicas": spec.min_replicas,
                "maxReplicas": spec.max_replicas,
                "metrics": [metric],
                "behavior": {
                    "scaleDown": {"stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds},
                },
            },
        }
    )


def pdb(name: str, namespace: str, uid: str) -> dict[str, Any]:
    """One serving pod at a time may be evicted (a node drain never empties the service at once)."""
    return _stamp(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(name, namespace, uid, name),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": {LABEL_ISVC: name, LABEL_COMPONENT: "predictor"}},
            },
        }
    )


def http_route(
    name: str, namespace: str, uid: str, spec: InferenceServiceSpec, canary_weight: int
) -> dict[str, Any]:
    """Weighted backends (exact percentages) over the two track Services; the canary's only while it runs."""
    routing = spec.traffic_routing
    parents = [p.model_dump(by_alias=True, exclude_none=True) for p in routing.parent_refs or []]
    backends: list[dict[str, Any]] = [
        {"name": track_service_name(name, STABLE), "port": SERVICE_PORT, "weight": 100 - canary_weight}
    ]
    if canary_weight > 0:
        backends.append(
            {"name": track_service_name(name, CANARY), "port": SERVICE_PORT, "weight": canary_weight}
        )
    route_spec: dict[str, Any] = {
        "parentRefs": parents,
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
                "backendRefs": backends,
            }
        ],
    }
    if routing.hostnames:
        route_spec["hostnames"] = list(routing.hostnames)
    return _stamp(
        {
            "apiVersion": GATEWAY_API_VERSION,
            "kind": "HTTPRoute",
            "metadata": _meta(name, namespace, uid, name),
            "spec": route_spec,
        }
    )
