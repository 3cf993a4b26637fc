"""The operator image, run with podman against the local plane: it reconciles the quickstart from a
container exactly as it would in a cluster, through the plane's kubeconfig (host networking on loopback).

The plane starts without its own operator (`modelops local up --no-operator`), so every reconcile seen
here is the container's: the quickstart TrainingJob trains, the ModelVersion it registers is verified,
the InferenceService becomes Ready. The container runs as the chart runs the operator's pod: UID/GID
65532, read-only root filesystem with a tmpfs at /tmp, no capabilities, no privilege escalation.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from imagetools import NO_SHELL, REPO, BuiltImage, free_port, podman, wait_http

sys.path.insert(0, str(REPO / "tests" / "e2e"))
from localplane import Plane, operator_calls

pytestmark = pytest.mark.timeout(1500)

QUICKSTART = REPO / "examples" / "quickstart"
KUBECONFIG_IN_CONTAINER = "/var/run/modelops/kubeconfig"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("operator-image") / "plane")
    lp.modelops("local", "up", "--dir", str(lp.dir), "--no-operator")
    yield lp
    lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def condition(obj: dict[str, Any], kind: str) -> str:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return str(c["status"])
    return ""


@pytest.fixture(scope="module")
def operator_container(
    images: dict[str, BuiltImage], plane: Plane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int, int]]:
    # The kubeconfig carries a token: its copy is readable by the container's user only.
    private = tmp_path_factory.mktemp("kubeconfig")
    private.chmod(0o700)
    kubeconfig = private / "kubeconfig"
    shutil.copyfile(plane.dir / "kubeconfig", kubeconfig)
    kubeconfig.chmod(0o400)
    shutil.chown(kubeconfig, 65532, 65532)
    health, metrics = free_port(), free_port()
    name = f"modelops-test-operator-{uuid.uuid4().hex[:8]}"
    podman(
        "run", "--detach", "--name", name, "--network", "host",
        "--user", "65532:65532", "--read-only", "--tmpfs", "/tmp:rw,mode=1777",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *NO_SHELL,
        "--volume", f"{kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
        images["operator"].reference,
        # The image's entrypoint is `modelops`, its CMD `operator`: a pod's args replace the CMD.
        "operator", "--kubeconfig", KUBECONFIG_IN_CONTAINER, "--bind-address", "127.0.0.1",
        "--health-port", str(health), "--metrics-port", str(metrics),
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{health}/readyz", 180, name)
        yield name, health, metrics
    finally:
        logs = podman("logs", name, check=False)
        (plane.dir / "logs").mkdir(parents=True, exist_ok=True)
        (plane.dir / "logs" / "operator-container.log").write_text(logs.stdout + logs.stderr)
        podman("rm", "--force", "--time", "10", name, check=False, timeout=60)


def test_the_operator_image_is_non_root_with_the_operator_entrypoint(images: dict[str, BuiltImage]) -> None:
    reference = images["operator"].reference
    (inspected,) = json.loads(podman("image", "inspect", reference).stdout)
    config = inspected["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["modelops"] and config["Cmd"] == ["operator"]
    assert config["Labels"]["org.opencontainers.image.title"] == "modelops-operator"
    # The operator image carries the operator only: not the worker and its torch, not the local plane and
    # its schema/CEL engine (cel-python, kubernetes-validate), no installer.
    probe = (
        "import importlib.metadata as m, importlib.util as u; "
        "names = {d.metadata['Name'].lower() for d in m.distributions()}; "
        "print(sorted(names & {'torch', 'pip', 'cel-python', 'kubernetes-validate', 'onnxruntime'}), "
        "[p for p in ('modelops_worker', 'modelops_local') if u.find_spec(p)], bool(u.find_spec('kopf')))"
    )
    out = podman("run", "--rm", "--network", "none", "--entrypoint", "python", reference, "-c", probe)
    assert out.stdout.strip() == "[] [] True", out.stdout
    # `modelops local` says how to get the plane instead of failing with a traceback.
    local = podman("run", "--rm", "--network", "none", reference, "local", "up", check=False)
    assert local.returncode != 0 and "modelops[local]" in local.stdout + local.stderr, local


def test_the_operator_image_reconciles_the_quickstart_on_the_local_plane(
    plane: Plane, operator_container: tuple[str, int, int]
) -> None:
    name, _, metrics = operator_container
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
    # Everything was the container's doing: the plane runs no operator of its own.
    assert "operator     stopped" in plane.modelops("local", "status", "--dir", str(plane.dir))
    assert ("modelops.dev", "trainingjobs/status", "patch") in operator_calls(plane.dir)
    logs = podman("logs", name).stderr + podman("logs", name).stdout
    assert "digits" in logs, logs[-3000:]
    # Its Prometheus endpoint counts the reconciles it made.
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as response:
        exposition = response.read().decode()
    assert "modelops_" in exposition
