"""`helm install` of the chart onto the local plane with its podman runtime: the operator runs as a
container of the image just built, and the pods it creates run as containers of the worker image.

This is a user's first `helm install` on a real cluster, rehearsed on one machine: the chart's own
Deployment (its image `ghcr.io/modelops/operator:<appVersion>`, which `scripts/build_images.py` tags in
the project's podman store the way `kind load` would), its ServiceAccount token and RBAC, its restricted
securityContext and read-only root filesystem, its probes. The operator then trains the quickstart
model in a container of the worker image, registers and verifies it, and serves it.

The plane's kubelet runs podman with this checkout's setup (scripts/podman_env.py, through
CONTAINERS_CONF and CONTAINERS_STORAGE_CONF in its environment), so it sees the built images.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from imagetools import REPO, BuiltImage, podman, podman_env

sys.path.insert(0, str(REPO / "tests" / "e2e"))
from localplane import Plane

pytestmark = pytest.mark.timeout(1500)

NAMESPACE = "modelops-system"
QUICKSTART = REPO / "examples" / "quickstart"


@pytest.fixture(scope="module")
def plane(images: dict[str, BuiltImage], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("chart-podman") / "plane")
    lp.env.update(podman_env.environment())
    lp.modelops(
        "local", "up", "--dir", str(lp.dir), "--no-operator", "--runtime", "podman", "--timeout", "180"
    )
    yield lp
    lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def condition(obj: dict[str, Any], kind: str) -> str:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return str(c["status"])
    return ""


def ran_in(pod: dict[str, Any], reference: str) -> bool:
    """Whether every container of `pod` ran in podman from the image `reference`, as its status says
    (`containerID: podman://...`, `imageID` the image's ID), not as a process of the plane."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    wanted = image_id(reference)
    return bool(statuses) and all(
        s.get("containerID", "").startswith("podman://") and wanted in s.get("imageID", "") for s in statuses
    )


def image_id(reference: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()


def test_helm_install_runs_the_operator_as_a_container_of_the_built_image(
    plane: Plane, images: dict[str, BuiltImage]
) -> None:
    plane.helm(
        "install", "modelops", str(REPO / "charts" / "modelops"), "-n", NAMESPACE, "--create-namespace",
        "--set", "replicaCount=1", "--wait", "--timeout", "300s", timeout=400,
    )  # fmt: skip
    (pod,) = plane.get("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=modelops")["items"]
    assert condition(pod, "Ready") == "True"
    (container,) = pod["spec"]["containers"]
    assert container["image"].startswith("ghcr.io/modelops/operator:")
    assert ran_in(pod, images["operator"].reference), pod["status"].get("containerStatuses")
    # The container is really there, running as the chart's non-root user.
    name = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("podman://")
    user = podman("inspect", "--format", "{{.Config.User}}", name).stdout.strip()
    assert user.startswith("65532"), user


def test_the_operator_container_trains_and_serves_the_quickstart_in_worker_containers(
    plane: Plane, images: dict[str, BuiltImage]
) -> None:
    plane.kubectl(
        "apply",
        "-f",
        str(QUICKSTART / "10-trainingjob.yaml"),
        "-f",
        str(QUICKSTART / "30-inferenceservice.yaml"),
    )
    plane.wait_for(
        "the TrainingJob to succeed",
        lambda: plane.get("trainingjob", "digits").get("status", {}).get("phase") == "Succeeded",
        600,
    )
    trainers = plane.get("pods", "-l", "modelops.dev/trainingjob=digits")["items"]
    assert trainers, "the TrainingJob's pods are gone"
    for pod in trainers:
        assert ran_in(pod, images["worker"].reference), pod["status"].get("containerStatuses")
    plane.wait_for(
        "ModelVersion digits-1 to be verified (Ready)",
        lambda: condition(plane.get("modelversion", "digits-1"), "Ready") == "True",
        300,
    )
    plane.wait_for(
        "InferenceService digits-classifier to be Ready",
        lambda: condition(plane.get("inferenceservice", "digits-classifier"), "Ready") == "True",
        300,
    )
    servers = plane.get("pods", "-l", "modelops.dev/inferenceservice=digits-classifier")["items"]
    assert servers, "no serving pods"
    for pod in servers:
        assert ran_in(pod, images["worker"].reference), pod["status"].get("containerStatuses")
