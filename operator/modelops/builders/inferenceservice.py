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

import pydantic

import modelops.builders as builders
from modelops.api.inferenceservice import InferenceServiceSpec, Predictor, ServingResources
from modelops.api.llmconfig import METRIC_LLM_WAITING
from modelops.api.serveconfig import (
    ENV_SERVE_CONFIG,
    GRPC_PORT,
    METRIC_INFLIGHT,
    METRIC_REQUESTS,
    PATH_LIVE,
    PATH_METRICS,
    PATH_READY,
    SERVABLE_FORMATS,
    SERVE_PORT,
    ServeConfig,
)
from modelops.api.signature import ModelSignature
from modelops.builders import llm
from modelops.builders import modelstore as store_builders
from modelops.builders.trainingjob import GPU_PRODUCT_LABEL, GPU_RESOURCE, RUN_AS_USER, worker_image

KIND = "InferenceService"
LABEL_ISVC = "modelops.dev/inferenceservice"
LABEL_TRACK = "modelops.dev/track"
LABEL_MODELVERSION = "modelops.dev/modelversion"
LABEL_COMPONENT = "app.kubernetes.io/component"
ANNOTATION_APPLIED = "modelops.dev/applied-digest"
ANNOTATION_SHA256 = "modelops.dev/sha256"
ANNOTATION_RUNTIME = "modelops.dev/runtime"
STABLE, CANARY = "stable", "canary"
TRACKS = (STABLE, CANARY)

CONTAINER = "server"
MODEL_MOUNT = "/var/run/modelops/model"
AUTH_MOUNT = "/var/run/modelops/auth"
AUTH_FILE = "tokens"  # the Secret's key is projected to this file name
SERVICE_PORT = 80
# Cleartext HTTP/2, the standard appProtocol for gRPC without TLS (Gateway API and meshes read it).
GRPC_APP_PROTOCOL = "kubernetes.io/h2c"

# Runtimes: which formats `modelops-worker serve` loads; anything else needs spec.predictor (custom).
RUNTIME_WORKER = "modelops-worker"
RUNTIME_CUSTOM = "custom"
WORKER_FORMATS = SERVABLE_FORMATS
# Where a custom predictor finds the version's artifact (KServe mounts models at /mnt/models too).
CUSTOM_MODEL_MOUNT = "/mnt/models"
ENV_MODEL_PATH = "MODELOPS_MODEL_PATH"
ENV_MODEL_SHA256 = "MODELOPS_MODEL_SHA256"
ENV_MODEL_NAME = "MODELOPS_MODEL_NAME"
ENV_MODEL_VERSION = "MODELOPS_MODEL_VERSION"
ENV_AUTH_TOKENS_FILE = "MODELOPS_AUTH_TOKENS_FILE"
# Identity of what a custom predictor without spec.modelRef serves: its spec's digest.
PREDICTOR_REVISION_PREFIX = "predictor-"
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
    signature: Mapping[str, Any] | None = None  # the ModelVersion's status.signature (camelCase)
    base: Served | None = None  # a lora version's base version (builders.llm serves the two together)
    # Where the verified artifact is in the model store (status.artifact.storeUri): the pod's init
    # container fetches it by digest into its own volume; `claim` is then empty (no claim is mounted).
    store_uri: str = ""
    size_bytes: int | None = None

    @property
    def has_model(self) -> bool:
        return bool(self.store_uri or self.claim)


def runtime(spec: InferenceServiceSpec, served: Served) -> str | None:
    """The runtime that serves `served`: a custom predictor, the worker by format, an LLM engine, or None."""
    if spec.predictor is not None:
        return RUNTIME_CUSTOM
    if llm.is_llm(served):
        return llm.engine(spec, served)
    return RUNTIME_WORKER if served.format in WORKER_FORMATS else None


def predictor_revision(predictor: Predictor) -> Served:
    """What a custom predictor without spec.modelRef serves: itself, named by its spec's digest."""
    revision = PREDICTOR_REVISION_PREFIX + digest(predictor.model_dump(by_alias=True, exclude_none=True))[:10]
    return Served(revision, None, "", "", "", format=RUNTIME_CUSTOM)


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


def url(name: str, namespace: str, protocol: str = "v2") -> str:
    """The in-cluster URL: the OIP v2 model path, OpenAI's base URL (`openai`), or the Service's root."""
    root = f"http://{name}.{namespace}.svc.cluster.local"
    if protocol == "openai":
        return f"{root}/v1"
    return f"{root}/v2/models/{name}" if protocol == "v2" else root


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
        format=served.format if served.format in WORKER_FORMATS else "torchscript",
        signature=_signature(served.signature),
        # A GPU pod runs the model on its GPU; without one the server decides (a CPU).
        device="cuda" if spec.resources.gpus else "auto",
        precision=spec.precision,
        grpc_port=GRPC_PORT,
        batching=spec.batching,
        quantization=spec.quantization,
        auth_tokens_file=f"{AUTH_MOUNT}/{AUTH_FILE}" if spec.auth else None,
    )


def _signature(recorded: Mapping[str, Any] | None) -> ModelSignature | None:
    """The version's recorded signature; one this operator cannot read is left to the server to find."""
    if not recorded:
        return None
    try:
        return ModelSignature.model_validate(recorded)
    except pydantic.ValidationError:
        return None


def _resources(res: ServingResources) -> dict[str, Any]:
    # requests == limits: the HPA's CPU utilisation is a percent of the request, and a serving pod
    # with Guaranteed QoS is the last to be evicted.
    amounts: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    if res.gpus:
        amounts[GPU_RESOURCE] = str(res.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


_RESTRICTED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _worker_container(
    name: str, spec: InferenceServiceSpec, served: Served, image: str | None
) -> dict[str, Any]:
    """`modelops-worker serve`: OIP v2 over REST (port http) and gRPC (port grpc), V2 probes."""
    config = serve_config(name, spec, served)
    return {
        "name": CONTAINER,
        "image": image or worker_image(),
        "command": ["modelops-worker", "serve"],
        "env": [
            {"name": ENV_SERVE_CONFIG, "value": config.model_dump_json(by_alias=True, exclude_none=True)},
            # The root filesystem is read-only; scratch files go to the emptyDir at /tmp.
            {"name": "TMPDIR", "value": "/tmp"},
        ],
        "ports": [
            {"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "resources": _resources(spec.resources),
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
        "securityContext": dict(_RESTRICTED_CONTAINER),
        "volumeMounts": [
            {"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _llm_container(
    name: str, spec: InferenceServiceSpec, served: Served, image: str | None
) -> dict[str, Any]:
    """An LLM engine's container (builders.llm) with this module's name, resources and restrictions."""
    auth_file = f"{AUTH_MOUNT}/{AUTH_FILE}" if spec.auth else None
    container = {
        "name": CONTAINER,
        **llm.container(
            name, spec, served, image=image or worker_image(), model_mount=MODEL_MOUNT, auth_file=auth_file
        ),
        "resources": _resources(spec.resources),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": dict(_RESTRICTED_CONTAINER),
        "volumeMounts": [
            {"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *llm.extra_volumes(spec, served)[1],
        ],
    }
    return container


def _default_probes(predictor: Predictor) -> tuple[dict[str, Any], dict[str, Any]]:
    """(readiness, liveness) by protocol: OIP v2 health paths, or a TCP connect for any HTTP API."""
    if predictor.protocol == "v2":
        ready: dict[str, Any] = {"httpGet": {"path": PATH_READY, "port": "http"}}
        live: dict[str, Any] = {"httpGet": {"path": PATH_LIVE, "port": "http"}}
    else:
        ready = {"tcpSocket": {"port": "http"}}
        live = {"tcpSocket": {"port": "http"}}
    ready.update(periodSeconds=2, failureThreshold=3, timeoutSeconds=2)
    live.update(periodSeconds=10, failureThreshold=3, timeoutSeconds=5)
    return ready, live


def _custom_container(name: str, spec: InferenceServiceSpec, served: Served) -> dict[str, Any]:
    """The user's predictor container, restricted like ours; the version's artifact under /mnt/models."""
    predictor = spec.predictor
    assert predictor is not None
    env: list[dict[str, Any]] = [{"name": ENV_MODEL_NAME, "value": name}, {"name": "TMPDIR", "value": "/tmp"}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if served.has_model:
        version = str(served.version if served.version is not None else served.model_version)
        env += [
            {"name": ENV_MODEL_PATH, "value": f"{CUSTOM_MODEL_MOUNT}/{served.path}"},
            {"name": ENV_MODEL_SHA256, "value": served.sha256},
            {"name": ENV_MODEL_VERSION, "value": version},
        ]
        mounts.append({"name": "model", "mountPath": CUSTOM_MODEL_MOUNT, "readOnly": True})
    if spec.auth is not None:
        env.append({"name": ENV_AUTH_TOKENS_FILE, "value": f"{AUTH_MOUNT}/{AUTH_FILE}"})
    env += [e.model_dump(by_alias=True, exclude_none=True) for e in predictor.env]
    ready, live = _default_probes(predictor)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": predictor.image,
        "env": env,
        "ports": [{"name": "http", "containerPort": predictor.port, "protocol": "TCP"}],
        "resources": _resources(predictor.resources or spec.resources),
        "readinessProbe": predictor.readiness_probe or ready,
        "livenessProbe": predictor.liveness_probe or live,
        # A slow-loading predictor gets two minutes before liveness counts.
        "startupProbe": {**(predictor.liveness_probe or live), "periodSeconds": 2, "failureThreshold": 60},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": dict(_RESTRICTED_CONTAINER),
        "volumeMounts": mounts,
    }
    if predictor.metrics.port and predictor.metrics.port != predictor.port:
        container["ports"].append(
            {"name": "metrics", "containerPort": predictor.metrics.port, "protocol": "TCP"}
        )
    if predictor.command:
        container["command"] = list(predictor.command)
    if predictor.args:
        container["args"] = list(predictor.args)
    return container


def metrics_endpoint(spec: InferenceServiceSpec) -> tuple[int, str]:
    """(port, path) of the serving pods' Prometheus metrics."""
    if spec.predictor is None:
        return SERVE_PORT, PATH_METRICS
    metrics = spec.predictor.metrics
    return metrics.port or spec.predictor.port, metrics.path


def pod_template(
    name: str, spec: InferenceServiceSpec, served: Served, track: str, *, image: str | None = None
) -> dict[str, Any]:
    """The serving pod of the runtime `runtime` picks, restricted; the artifact fetched from the model store
    into its own volume by an init container (or, for a version verified before the store, its claim)."""
    custom = spec.predictor is not None
    llm_served = not custom and llm.is_llm(served)
    if llm_served:
        container = _llm_container(name, spec, served, image)
    else:
        container = (
            _custom_container(name, spec, served) if custom else _worker_container(name, spec, served, image)
        )
    tmp_size = llm.tmp_size(spec, served) if llm_served else "256Mi"
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": tmp_size}}]
    if llm_served:
        volumes += llm.extra_volumes(spec, served)[0]
    init: list[dict[str, Any]] = []
    fetched = store_builders.parse_object_uri(served.store_uri, store_builders.current())
    if fetched is not None:
        # From the model store into the pod's own volume, verified, before the server starts (a file,
        # or an LLM's directory by its directory digest).
        store, sha = fetched
        mount = CUSTOM_MODEL_MOUNT if custom else MODEL_MOUNT
        init.append(
            store_builders.fetch_container(
                store, sha, f"{mount}/{served.path}", "model", mount, image or worker_image()
            )
        )
        size = store_builders.model_volume_size(served.size_bytes)
        volumes[:0] = [
            {"name": "model", "emptyDir": {"sizeLimit": size} if size else {}},
            *store_builders.wiring(store, read_only=True).volumes,
        ]
    elif served.claim:
        # A version verified before the model store existed: its claim, read-only, as before.
        volumes.insert(
            0, {"name": "model", "persistentVolumeClaim": {"claimName": served.claim, "readOnly": True}}
        )
    if spec.auth is not None:
        container["volumeMounts"].append({"name": "auth", "mountPath": AUTH_MOUNT, "readOnly": True})
        # The key projected as one file: a missing key fails the mount (FailedMount), naming it.
        items = [{"key": spec.auth.key, "path": AUTH_FILE}]
        volumes.append(
            {
                "name": "auth",
                "secret": {"secretName": spec.auth.secret_name, "items": items, "defaultMode": 0o440},
            }
        )
    drain = ServeConfig.model_fields["drain_seconds"].default
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": int(drain) + _SHUTDOWN_MARGIN,
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
    if init:
        pod_spec["initContainers"] = init
    res = (spec.predictor.resources if spec.predictor else None) or spec.resources
    if res.gpus:
        if res.gpu_type:
            pod_spec["nodeSelector"] = {GPU_PRODUCT_LABEL: res.gpu_type}
        pod_spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    port, path = metrics_endpoint(spec)
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
                "prometheus.io/port": str(port),
                "prometheus.io/path": path,
                ANNOTATION_SHA256: served.sha256,
                ANNOTATION_RUNTIME: str(runtime(spec, served) or RUNTIME_WORKER),
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
    name: str,
    namespace: str,
    uid: str,
    *,
    track: str | None = None,
    tracks: tuple[str, ...] = TRACKS,
    grpc: bool = True,
) -> dict[str, Any]:
    """The Service clients call (`track` None: over `tracks`), or a track's own Service."""
    selector: dict[str, str] = {LABEL_ISVC: name, LABEL_COMPONENT: "predictor"}
    if track is not None:
        selector[LABEL_TRACK] = track
    elif tracks != TRACKS:
        selector[LABEL_TRACK] = tracks[0]
    svc_name = name if track is None else track_service_name(name, track)
    extra = {LABEL_TRACK: track} if track else {}
    ports: list[dict[str, Any]] = [
        {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}
    ]
    if grpc:
        # OIP v2 over gRPC on its own port (9000 as in the pod), for KServe's and Triton's gRPC clients.
        ports.append(
            {
                "name": "grpc",
                "port": GRPC_PORT,
                "targetPort": "grpc",
                "protocol": "TCP",
                "appProtocol": GRPC_APP_PROTOCOL,
            }
        )
    return _stamp(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(svc_name, namespace, uid, name, extra),
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": ports,
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
        requests = spec.predictor.metrics.requests_total if spec.predictor else METRIC_REQUESTS
        series = {"concurrency": METRIC_INFLIGHT, "waiting": METRIC_LLM_WAITING}.get(scaling.metric, requests)
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
    name: str,
    namespace: str,
    uid: str,
    spec: InferenceServiceSpec,
    canary_weight: int,
    *,
    openai: bool = False,
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
                "matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}]
                + ([{"path": {"type": "PathPrefix", "value": "/v1"}}] if openai else []),
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
