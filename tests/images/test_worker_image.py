"""The CPU worker image, run with podman the way a cluster runs the operator's pods: it trains the
quickstart model, verifies the artifact, and serves it over the Open Inference Protocol v2 (real HTTP).

The pods are the operator's own: the training pod comes from `builders.trainingjob.pods()` for
`examples/quickstart/10-trainingjob.yaml`, the serving pod from `builders.inferenceservice.pod_template()`
for `30-inferenceservice.yaml`. Each container runs as the pod says (UID/GID 65532, no capabilities, no
privilege escalation, the serving root filesystem read-only, the emptyDirs as tmpfs), the claim a host
directory, the termination log a file, as the kubelet would mount them. Training runs without a network.

Also what a user of the image notices before any pod runs: it is the CPU build of torch (no CUDA
libraries of several GB), the numeric non-root user, the entrypoint, the OCI labels.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from imagetools import (
    NO_SHELL,
    REPO,
    BuiltImage,
    container_args,
    free_port,
    owned_by_nonroot,
    podman,
    wait_http,
)
from sklearn.datasets import load_digits

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.api.runconfig import TrainResult
from modelops.api.serveconfig import ENV_SERVE_CONFIG, ServeConfig
from modelops.api.trainingjob import TrainingJobSpec
from modelops.builders import inferenceservice as serving
from modelops.builders import trainingjob as training

pytestmark = pytest.mark.timeout(1500)  # the first test may build the images (make images did it before)

QUICKSTART = REPO / "examples" / "quickstart"
DIGITS = load_digits()


def manifest(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((QUICKSTART / name).read_text())
    return loaded


@pytest.fixture(scope="module")
def worker(images: dict[str, BuiltImage]) -> str:
    return images["worker"].reference


@pytest.fixture(scope="module")
def trained(worker: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainResult]:
    """The quickstart TrainingJob's rank-0 pod, run from the worker image to completion."""
    job = manifest("10-trainingjob.yaml")
    spec = TrainingJobSpec.model_validate(job["spec"])
    (pod,) = training.pods(job["metadata"]["name"], "default", "uid-images-1", spec, image=worker)
    claim = owned_by_nonroot(tmp_path_factory.mktemp("checkpoints"))
    log = owned_by_nonroot(tmp_path_factory.mktemp("train") / "termination-log")
    (container,) = pod["spec"]["containers"]
    assert container["image"] == worker
    args, command = container_args(pod["spec"], container, {"checkpoints": claim}, log)
    name = f"modelops-test-train-{uuid.uuid4().hex[:8]}"
    done = podman(
        "run", "--rm", "--name", name, "--network", "none", "--shm-size", "256m", "--env", "OMP_NUM_THREADS=1",
        *NO_SHELL, *args, worker, *command, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"training exited {done.returncode}:\n{done.stderr[-4000:]}"
    result = TrainResult.model_validate_json(log.read_text())
    return claim, result


def test_the_image_is_the_cpu_build_non_root_and_labelled(worker: str) -> None:
    (inspected,) = json.loads(podman("image", "inspect", worker).stdout)
    config = inspected["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["modelops-worker"]
    assert config["Labels"]["org.opencontainers.image.title"] == "modelops-worker"
    probe = (
        "import importlib.metadata as m, torch, onnxruntime; "
        "print(torch.__version__, torch.version.cuda, "
        "sorted(d.metadata['Name'] for d in m.distributions() if d.metadata['Name'].startswith('nvidia')), "
        "'pip' in {d.metadata['Name'] for d in m.distributions()})"
    )
    out = podman("run", "--rm", "--network", "none", "--entrypoint", "python", worker, "-c", probe).stdout
    version, cuda, nvidia, has_pip = out.split(" ", 3)
    assert version.endswith("+cpu") and cuda == "None", out
    assert nvidia == "[]" and has_pip.strip() == "False", out


def test_the_worker_image_loads_its_llm_engines(worker: str) -> None:
    """llama.cpp's native libraries (OpenMP included) and transformers/peft import in the final stage,
    which has no package manager: what `serve-llm` needs before any model is read."""
    probe = (
        "import llama_cpp, transformers, peft; "
        "info = llama_cpp.llama_print_system_info().decode(); "
        "print(llama_cpp.__version__, transformers.__version__, 'CPU' in info)"
    )
    out = podman("run", "--rm", "--network", "none", "--entrypoint", "python", worker, "-c", probe).stdout
    llama, _transformers, cpu = out.split()
    assert llama and cpu == "True", out


def test_the_worker_image_trains_the_quickstart_model(trained: tuple[Path, TrainResult]) -> None:
    claim, result = trained
    assert result.status == "Succeeded", result
    assert result.artifact is not None and result.artifact.format == "torchscript"
    artifact = claim / "output" / result.artifact.path
    assert artifact.is_file() and artifact.stat().st_size == result.artifact.size_bytes
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == result.artifact.sha256.removeprefix("sha256:")
    # The metrics the ModelVersion will carry: digits is easy, an MLP is far above chance (0.1).
    assert result.metrics is not None and (result.metrics.accuracy or 0) > 0.9, result.metrics
    assert result.epochs == 20
    # The checkpoint was written by the non-root user into the claim, as on a cluster.
    assert result.checkpoint is not None and (claim / result.checkpoint.path).exists()
    assert (claim / result.checkpoint.path).stat().st_uid == 65532


def test_the_worker_image_verifies_the_artifact(worker: str, trained: tuple[Path, TrainResult]) -> None:
    claim, result = trained
    assert result.artifact is not None
    path = f"/model/output/{result.artifact.path}"
    run = ("run", "--rm", "--network", "none", "--user", "65532:65532", "--read-only",
           "--volume", f"{claim}:/model:ro", worker, "verify", "--artifact", path)  # fmt: skip
    good = json.loads(podman(*run, "--sha256", result.artifact.sha256).stdout)
    assert good["status"] == "Succeeded", good
    bad = podman(*run, "--sha256", "0" * 64, check=False)
    assert bad.returncode != 0 and "Failed" in bad.stdout, bad.stdout


def test_the_worker_image_serves_the_model_with_correct_v2_predictions(
    worker: str, trained: tuple[Path, TrainResult], containers: list[str]
) -> None:
    claim, result = trained
    assert result.artifact is not None
    isvc = manifest("30-inferenceservice.yaml")
    spec = InferenceServiceSpec.model_validate(isvc["spec"])
    name = isvc["metadata"]["name"]
    served = serving.Served(
        model_version="digits-1", version=1, sha256=result.artifact.sha256, claim="digits-checkpoints",
        path=f"output/{result.artifact.path}", format="torchscript",
    )  # fmt: skip
    template = serving.pod_template(name, spec, served, "stable", image=worker)
    (container,) = template["spec"]["containers"]
    assert container["securityContext"].get("readOnlyRootFilesystem") is True
    # Host networking on loopback: the pod's ports become free ports of this machine.
    http, grpc = free_port(), free_port()
    for env in container["env"]:
        if env["name"] == ENV_SERVE_CONFIG:
            config = ServeConfig.model_validate_json(env["value"]).model_copy(
                update={"port": http, "grpc_port": grpc}
            )
            env["value"] = config.model_dump_json(by_alias=True, exclude_none=True)
    log = owned_by_nonroot(claim.parent / f"serve-termination-log-{uuid.uuid4().hex[:8]}")
    args, command = container_args(template["spec"], container, {"model": claim}, log)
    box = f"modelops-test-serve-{uuid.uuid4().hex[:8]}"
    containers.append(box)
    podman("run", "--detach", "--name", box, "--network", "host", *NO_SHELL, *args, worker, *command)
    wait_http(f"http://127.0.0.1:{http}/v2/health/ready", 180, box)

    x = DIGITS.data[:300].astype(np.float32)
    body = {
        "id": "images-1",
        "inputs": [
            {"name": "input-0", "shape": list(x.shape), "datatype": "FP32", "data": x.reshape(-1).tolist()}
        ],
    }
    response = requests.post(f"http://127.0.0.1:{http}/v2/models/{name}/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_name"] == name and answer["model_version"] == "1" and answer["id"] == "images-1"
    outputs = {o["name"]: o for o in answer["outputs"]}
    predicted = np.array(outputs["predicted_class"]["data"])
    assert predicted.shape == (300,)
    assert (predicted == DIGITS.target[:300]).mean() > 0.9
    # Garbage in gets the protocol's 400, not a crash of the server in the container.
    bad = requests.post(
        f"http://127.0.0.1:{http}/v2/models/{name}/infer", json={"inputs": [{"name": "input"}]}, timeout=30
    )
    assert bad.status_code == 400, bad.text
    assert requests.get(f"http://127.0.0.1:{http}/v2/health/live", timeout=10).status_code == 200
    # SIGTERM (podman stop, as the kubelet stops a pod) drains and exits 0.
    podman("stop", "--time", "30", box, timeout=90)
    exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", box).stdout.strip()
    assert exit_code == "0", podman("logs", box, check=False).stderr[-3000:]
