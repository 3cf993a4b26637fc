"""The install docs and kind-config.yaml stay consistent with the chart.

CI cannot run kind or a real cluster, so these commands are never executed here; what can drift
silently is checked instead: the image names and tags the quickstart builds and loads are the ones
the chart deploys, the kind cluster name matches between the config and the commands, every
`helm install`/`helm upgrade` line renders with the real helm (so each value it sets exists and is
valid), and the objects the docs name (`deployment/...`, `service/...`) are the ones the chart makes.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartkit import CHART, ROOT, helm_binary

QUICKSTART = ROOT / "docs" / "quickstart-kind.md"
INSTALL = ROOT / "docs" / "install.md"
KIND_CONFIG = ROOT / "kind-config.yaml"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def commands(doc: Path) -> list[list[str]]:
    """Every command of the ```sh blocks, continuation lines joined, split like a shell would."""
    found: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(shlex.split(line))
    return found


def starting(doc: Path, *prefix: str) -> list[list[str]]:
    return [c for c in commands(doc) if c[: len(prefix)] == list(prefix)]


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def kind_cluster() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(KIND_CONFIG.read_text())
    return config


def test_kind_config_has_a_control_plane_and_a_gpu_labelled_worker() -> None:
    config = kind_cluster()
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    roles = [node["role"] for node in config["nodes"]]
    assert roles == ["control-plane", "worker"]
    worker = config["nodes"][1]
    # A string, not a YAML boolean: node labels are strings and kind rejects `true`.
    assert worker["labels"] == {"nvidia.com/gpu.present": "true"}
    assert {"hostPath": "/dev/null", "containerPath": "/var/run/nvidia-container-devices/all"} in worker[
        "extraMounts"
    ]


def test_quickstart_creates_the_cluster_from_kind_config() -> None:
    (create,) = starting(QUICKSTART, "kind", "create", "cluster")
    assert option(create, "--config") == "kind-config.yaml"
    name = kind_cluster()["name"]
    assert f"--context kind-{name}" in QUICKSTART.read_text()
    for command in starting(QUICKSTART, "kind", "load") + starting(QUICKSTART, "kind", "delete"):
        assert option(command, "--name") == name, command


def test_quickstart_builds_and_loads_the_images_the_chart_deploys() -> None:
    tag = CHART_META["appVersion"]
    worker = VALUES["workerImage"]["repository"]
    # The two images of the chart's defaults, and the CUDA worker of the GPU section.
    expected = {f"{VALUES['image']['repository']}:{tag}", f"{worker}:{tag}", f"{worker}:{tag}-cuda"}
    builds = starting(QUICKSTART, "docker", "build")
    assert {option(b, "-t") for b in builds} == expected
    assert {option(b, "-t"): option(b, "-f") for b in builds}[
        f"{worker}:{tag}-cuda"
    ] == "images/worker/Dockerfile.cuda"
    loads = starting(QUICKSTART, "kind", "load", "docker-image")
    assert {c[3] for c in loads} == expected
    # The CUDA image is what the operator is told to use for its pods.
    upgrades = [c for c in helm_lines(QUICKSTART) if c[1] == "upgrade"]
    assert [option(c, "--set") for c in upgrades] == [f"workerImage.tag={tag}-cuda"]


def test_quickstart_gpu_notes_match_kind_config_and_the_examples() -> None:
    text = QUICKSTART.read_text()
    (plugin,) = [c for c in starting(QUICKSTART, "helm", "install") if "charts/modelops" not in c]
    assert plugin[3] == "nvdp/nvidia-device-plugin"
    # The device plugin selects nodes by the label kind-config.yaml sets.
    assert kind_cluster()["nodes"][1]["labels"]["nvidia.com/gpu.present"] == "true"
    assert 'nvidia.com/gpu.present: "true"' in text
    (label,) = starting(QUICKSTART, "kubectl", "label", "node")
    gpu_example = yaml.safe_load((ROOT / "examples" / "trainingjob-distributed-gpu.yaml").read_text())
    assert label[-1] == f"nvidia.com/gpu.product={gpu_example['spec']['resources']['gpuType']}"
    applied = [option(c, "-f") for c in starting(QUICKSTART, "kubectl", "apply")]
    assert all((ROOT / path).exists() for path in applied), applied


@pytest.mark.parametrize("doc", [QUICKSTART, INSTALL], ids=lambda p: p.name)
def test_dockerfiles_the_docs_build_exist(doc: Path) -> None:
    paths = {option(b, "-f") for b in starting(doc, "docker", "build")}
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).is_file())
    if missing:
        pytest.skip(f"{', '.join(missing)} not written yet (the images are another part of the project)")


def helm_lines(doc: Path) -> list[list[str]]:
    """`helm install`/`helm upgrade` of this chart (not of third-party charts such as the device plugin)."""
    return [
        c
        for c in commands(doc)
        if c[:2] in (["helm", "install"], ["helm", "upgrade"]) and "charts/modelops" in c
    ]


def as_template(command: list[str]) -> list[str]:
    """The same release rendered offline: `helm template` with the command's own flags."""
    args = command[2:]
    rendered = [helm_binary(), "template"]
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        if arg in ("--wait", "--create-namespace", "--atomic", "--reuse-values"):
            continue
        if arg in ("--values", "-f", "--timeout"):
            skip_next = True  # a file of the reader's own, or a duration: not part of the chart
            continue
        rendered.append(arg)
    return rendered


@pytest.mark.parametrize("doc", [QUICKSTART, INSTALL], ids=lambda p: p.name)
def test_every_helm_command_of_the_docs_renders(doc: Path) -> None:
    lines = helm_lines(doc)
    assert lines
    for command in lines:
        assert "charts/modelops" in command, command
        result = subprocess.run(as_template(command), cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr}"


@pytest.mark.parametrize("doc", [QUICKSTART, INSTALL], ids=lambda p: p.name)
def test_objects_the_docs_name_are_the_ones_the_chart_makes(doc: Path) -> None:
    (install,) = [c for c in helm_lines(doc) if c[1] == "install"][:1]
    result = subprocess.run(as_template(install), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    made = {(m["kind"], m["metadata"]["name"]) for m in yaml.safe_load_all(result.stdout) if m}
    text = doc.read_text()
    for name in re.findall(r"(?<![\w])deployment/([\w.-]+)", text):
        assert ("Deployment", name) in made, (
            f"{doc.name} names deployment/{name}; the chart makes {sorted(made)}"
        )
    for name in re.findall(r"(?<![\w])service/([\w.-]+)", text):
        assert ("Service", name) in made, f"{doc.name} names service/{name}; the chart makes {sorted(made)}"
    for name in re.findall(r"system:serviceaccount:[\w-]+:([\w.-]+)", text):
        assert ("ServiceAccount", name) in made, f"{doc.name} names service account {name}"


def test_quickstart_applies_the_quickstart_examples() -> None:
    apply = starting(QUICKSTART, "kubectl", "apply")[0]
    directory = ROOT / option(apply, "-f")
    assert directory.is_dir() and sorted(directory.glob("*.yaml")), directory
