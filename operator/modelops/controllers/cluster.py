"""The operator's API calls, through the kubernetes client, with the credentials of kopf's login.

`Cluster` is shared by every controller: typed helpers for the calls the TrainingJob controller
grew up with, and a small generic REST surface (`get`, `list_items`, `create_at`, `patch`, `apply`, `delete`,
`status_patch`) over API paths so the other controllers need no per-resource method here. Every call
a controller makes must have its rule in `permissions` (and so in the chart's RBAC).
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import kubernetes
import urllib3
from prometheus_client.parser import text_string_to_metric_families

from modelops import GROUP, VERSION
from modelops.api.runconfig import DEFAULT_METRICS_PORT
from modelops.builders import trainingjob as tj_builders
from modelops.controllers import children, login

SCRAPE_TIMEOUT = 2.0
FIELD_MANAGER = "modelops-operator"


def _path(value: Any) -> str | None:
    return None if value is None else str(os.fsdecode(value))


def _kind_of(body: Mapping[str, Any], path: str) -> str:
    return str(body.get("kind") or path.rstrip("/").split("/")[-1])


def _name_of(body: Mapping[str, Any], path: str = "") -> str:
    name = (body.get("metadata") or {}).get("name")
    return str(name) if name else path.rstrip("/").split("/")[-1]


def resource_path(
    api_version: str, plural: str, namespace: str | None = None, name: str | None = None
) -> str:
    """The REST path of a collection or object: ("apps/v1", "deployments", "ns", "x") -> /apis/apps/v1/..."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace is not None:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name is not None:
        base += f"/{name}"
    return base


class Cluster:
    """The API calls of the controllers, through the kubernetes client.

    Built from the same credentials as kopf's login (`login.connection_info`), so the operator talks
    to one cluster whichever way it found it.
    """

    def __init__(self, kubeconfig: str | None) -> None:
        self._kubeconfig = kubeconfig
        self._client: Any = None

    def _api(self) -> Any:
        if self._client is None:
            info = login.connection_info(self._kubeconfig)
            config = kubernetes.client.Configuration()
            config.host = info.server
            config.ssl_ca_cert = _path(info.ca_path)
            config.verify_ssl = not info.insecure
            config.cert_file = _path(info.certificate_path)
            config.key_file = _path(info.private_key_path)
            if info.token:
                config.api_key = {"authorization": f"{info.scheme or 'Bearer'} {info.token}"}
            if info.username:
                config.username, config.password = info.username, info.password or ""
            self._client = kubernetes.client.ApiClient(config)
        return self._client

    def _do(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """One request through a typed client method; the raw JSON answer.

        A 401 drops the client so the next call logs in again (a rotated service-account token).
        """
        try:
            response = call(*args, _preload_content=False, **kwargs)
        except kubernetes.client.ApiException as error:
            if error.status == 401:
                self._client = None
            raise
        return json.loads(response.data or b"null")

    # -- generic REST ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One call to an API path; the decoded JSON answer. Raises kubernetes.client.ApiException."""
        api = self._api()
        config = api.configuration
        if method in ("POST", "PUT", "PATCH") and not (query and "fieldManager" in query):
            # Every write is the operator's under one name, so managedFields say plainly what it owns.
            query = {**(query or {}), "fieldManager": FIELD_MANAGER}
        url = config.host + path + ("?" + urllib.parse.urlencode(dict(query)) if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        headers.update(api.default_headers)
        token = (config.api_key or {}).get("authorization")
        if token:
            headers["Authorization"] = token
        elif config.username:
            headers.update(urllib3.util.make_headers(basic_auth=f"{config.username}:{config.password}"))
        try:
            response = api.call_api(
                method, url, header_params=headers, body=body
            )  # the client serialises JSON and apply-yaml bodies
            response.read()
        except kubernetes.client.ApiException as error:
            if error.status == 401:
                self._client = None
            raise
        if not 200 <= response.status <= 299:
            raise kubernetes.client.ApiException(http_resp=response)
        return json.loads(response.data or b"null")

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None when it does not exist."""
        try:
            return dict(self.request("GET", path))
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise

    def list_items(
        self, path: str, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """The items of a collection (an absent resource type, e.g. a CRD not installed, raises 404)."""
        query = {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        return list((self.request("GET", path, query=query or None) or {}).get("items") or [])

    def missing_claims(self, namespace: str, claims: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Those of (claim, where) whose PersistentVolumeClaim does not exist in `namespace`."""
        missing = []
        for claim, where in claims:
            try:
                found = self.get(resource_path("v1", "persistentvolumeclaims", namespace, claim))
            except kubernetes.client.ApiException as error:
                if error.status != 403:
                    raise
                # An older RBAC without `get` on claims: the kubelet's FailedMount still tells.
                continue
            if found is None:
                missing.append((claim, where))
        return missing

    def snapshot_exists(self, namespace: str, name: str) -> bool:
        """Whether the VolumeSnapshot exists (False too when the snapshot CRDs are not installed)."""
        try:
            items = self.list_items(resource_path("snapshot.storage.k8s.io/v1", "volumesnapshots", namespace))
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return False
            if error.status == 403:  # not allowed to look: the claim's own events will tell
                return True
            raise
        return any((i.get("metadata") or {}).get("name") == name for i in items)

    def failed_mounts(self, namespace: str) -> list[dict[str, Any]]:
        """The kubelet's Warning events about pods of a namespace that `children.pod_problem` reads:
        FailedMount (a missing claim or Secret) and FailedToRetrieveImagePullSecret."""
        events: list[dict[str, Any]] = []
        for reason in children.KUBELET_EVENTS:
            try:
                events += self.list_items(
                    resource_path("v1", "events", namespace),
                    field_selector=f"involvedObject.kind=Pod,reason={reason}",
                )
            except kubernetes.client.ApiException as error:
                if error.status == 403:  # an older RBAC without `list` on events: pod status still tells
                    return events
                raise
        return events

    def create_at(self, path: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create in the collection at `path`; None when it already exists (409).

        A refusal (400/403/422) raises `children.ChildRejected` with the server's message.
        """
        try:
            with children.creating(_kind_of(body, path), _name_of(body)):
                return dict(self.request("POST", path, dict(body)))
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                return None
            raise

    def patch(self, path: str, body: Mapping[str, Any], *, kind: str = "merge") -> dict[str, Any]:
        """A merge (default), strategic or json patch of the object at `path`."""
        content_type = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }[kind]
        return dict(self.request("PATCH", path, body, content_type=content_type))

    def apply(self, path: str, body: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply of `body` to the object at `path` as the operator's field manager."""
        query = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        with children.creating(_kind_of(body, path), _name_of(body, path)):
            return dict(
                self.request(
                    "PATCH", path, dict(body), query=query, content_type="application/apply-patch+yaml"
                )
            )

    def status_patch(self, path: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the /status subresource of the object at `path`."""
        return self.patch(path + "/status", {"status": dict(status)})

    def delete(self, path: str, *, propagation: str = "Background") -> bool:
        """Delete the object at `path`; False when it was already gone."""
        try:
            self.request("DELETE", path, {"propagationPolicy": propagation})
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    # -- the TrainingJob controller's typed calls --------------------------------------------------

    def _core(self) -> Any:
        return kubernetes.client.CoreV1Api(self._api())

    def _custom(self) -> Any:
        return kubernetes.client.CustomObjectsApi(self._api())

    def list_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        answer = self._do(
            self._core().list_namespaced_pod, namespace, label_selector=f"{tj_builders.LABEL_JOB}={job}"
        )
        return list(answer.get("items") or [])

    def create(self, obj: Mapping[str, Any], *, patch_existing: bool = False) -> None:
        """Create; an object that already exists (a restart of the operator, a race) is fine.

        With `patch_existing`, the existing object is patched to the desired labels and spec
        (only for the Service: a pod's or a claim's spec cannot change in place).
        """
        namespace, name, kind = obj["metadata"]["namespace"], obj["metadata"]["name"], obj["kind"]
        body = dict(obj)
        try:
            with children.creating(kind, name):
                self._create_typed(kind, namespace, body)
        except kubernetes.client.ApiException as error:
            if error.status != 409:
                raise
            if patch_existing and kind == "Service":
                patch = {"metadata": {"labels": obj["metadata"]["labels"]}, "spec": obj["spec"]}
                self._do(
                    self._core().patch_namespaced_service, name, namespace, patch, field_manager=FIELD_MANAGER
                )

    def _create_typed(self, kind: str, namespace: str, body: dict[str, Any]) -> None:
        if kind == "Pod":
            self._do(self._core().create_namespaced_pod, namespace, body, field_manager=FIELD_MANAGER)
        elif kind == "Service":
            self._do(self._core().create_namespaced_service, namespace, body, field_manager=FIELD_MANAGER)
        elif kind == "PersistentVolumeClaim":
            self._do(
                self._core().create_namespaced_persistent_volume_claim,
                namespace,
                body,
                field_manager=FIELD_MANAGER,
            )
        else:
            self._do(
                self._custom().create_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "modelversions",
                body,
                field_manager=FIELD_MANAGER,
            )

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            self._do(self._core().delete_namespaced_pod, name, namespace)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise

    def list_model_versions(self, namespace: str) -> list[dict[str, Any]]:
        answer = self._do(
            self._custom().list_namespaced_custom_object, GROUP, VERSION, namespace, "modelversions"
        )
        return list(answer.get("items") or [])

    def scrape(
        self, ip: str, port: int = DEFAULT_METRICS_PORT, prefix: str = "modelops_training_"
    ) -> dict[str, float] | None:
        """A pod's unlabelled series starting with `prefix`, or None when the endpoint does not answer."""
        try:
            with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=SCRAPE_TIMEOUT) as response:
                text = response.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return None
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith(prefix) and not sample.labels:
                    values[sample.name] = float(sample.value)
        return values
