"""The Dockerfiles, checked statically (the images themselves are built and run by the other tests here).

What a reviewer of an image looks for, read from the Dockerfiles with `dockerfile-parse` (the
parser of OpenShift's build tooling): multi-stage builds whose final stage carries no compiler or
installer, base images pinned to an exact version or a digest, a numeric non-root USER equal to the
UID the chart and the operator's pods run as, the OCI labels with the release version, and the
worker's torch pinned to the project's exact version (the +cpu build for the CPU image, PyPI's
CUDA build for the CUDA image).
"""

from __future__ import annotations

import io
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CHART = yaml.safe_load((ROOT / "charts" / "modelops" / "Chart.yaml").read_text())
DOCKERFILES = {
    "operator": ROOT / "images" / "operator" / "Dockerfile",
    "worker": ROOT / "images" / "worker" / "Dockerfile",
    "worker-cuda": ROOT / "images" / "worker" / "Dockerfile.cuda",
}
# The UID/GID of the chart's operator pod and of every pod the operator builds.
RUN_AS = 65532

# What must not be in the final stage: package managers installing things, compilers, fetchers.
BUILD_TOOLS = re.compile(
    r"\b(apt-get|apt|apk|yum|dnf|microdnf|pip3?|gcc|g\+\+|cc|clang|make|cmake|build-essential|"
    r"python3?-dev|git|curl|wget)\b"
)


@dataclass
class Stage:
    base: str  # the FROM reference with the ARG defaults substituted
    name: str
    instructions: list[dict[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]


def parse(path: Path) -> DockerfileParser:
    # fileobj, not path: given a path, the parser appends "/Dockerfile" to names it does not expect.
    return DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))


def stages(path: Path) -> list[Stage]:
    parser = parse(path)
    bases = iter(parser.parent_images)
    found: list[Stage] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            found.append(Stage(base=next(bases), name=name))
        elif found:
            found[-1].instructions.append(instruction)
    return found


def named(built: list[Stage], name: str) -> Stage:
    (stage,) = [s for s in built if s.name == name]
    return stage


def external_bases(built: list[Stage]) -> list[str]:
    """The images stages start FROM, leaving out a stage built on an earlier one (`FROM deps`)."""
    names = {s.name for s in built}
    return [s.base for s in built if s.base not in names]


def build_args(stage: Stage) -> dict[str, str]:
    pairs = (value.split("=", 1) for value in stage.values("ARG") if "=" in value)
    return {key: default for key, default in pairs}


def torch_pin() -> str:
    (pin,) = [d for d in PYPROJECT["project"]["optional-dependencies"]["worker"] if d.startswith("torch")]
    match = re.fullmatch(r"torch==(\d+\.\d+\.\d+)", pin)
    assert match, f"pyproject.toml pins torch as {pin!r}; the images need an exact `torch==X.Y.Z`"
    return match.group(1)


@pytest.fixture(params=sorted(DOCKERFILES), ids=str)
def image(request: pytest.FixtureRequest) -> tuple[str, list[Stage]]:
    return request.param, stages(DOCKERFILES[request.param])


def test_each_image_is_multi_stage_and_the_final_stage_copies_only_the_built_venv(
    image: tuple[str, list[Stage]],
) -> None:
    name, built = image
    assert len(built) >= 2, f"{name}: build in one stage and run in another"
    final = built[-1]
    copies = final.values("COPY")
    assert copies == ["--from=build /opt/modelops /opt/modelops"], (name, copies)
    assert named(built, "build") in built[:-1]


def test_base_images_are_pinned_to_an_exact_version_or_a_digest(image: tuple[str, list[Stage]]) -> None:
    name, built = image
    for reference in external_bases(built):
        if "@sha256:" in reference:
            assert re.search(r"@sha256:[0-9a-f]{64}$", reference), (name, reference)
            continue
        repository, _, tag = reference.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {reference} has no tag (that is `latest`)"
        assert tag != "latest", f"{name}: {reference}"
        # `3.11` or `3.11-slim` moves with every patch release; `3.11.11-slim-bookworm` does not.
        assert re.match(r"\d+\.\d+\.\d+(-|$)", tag), f"{name}: {reference} is not an exact version"


def test_the_final_stage_runs_as_the_numeric_non_root_user_of_the_chart(
    image: tuple[str, list[Stage]],
) -> None:
    name, built = image
    users = built[-1].values("USER")
    assert users, f"{name}: the final stage has no USER, so it runs as root"
    # Numeric: a name cannot be checked by the kubelet's runAsNonRoot (it needs a UID).
    match = re.fullmatch(r"(\d+):(\d+)", users[-1])
    assert match, f"{name}: USER {users[-1]} must be numeric UID:GID"
    assert (int(match.group(1)), int(match.group(2))) == (RUN_AS, RUN_AS)
    deployment = (ROOT / "charts" / "modelops" / "templates" / "deployment.yaml").read_text()
    assert f"runAsUser: {RUN_AS}" in deployment and f"runAsGroup: {RUN_AS}" in deployment


def test_the_final_stage_has_no_build_tools_or_installer(image: tuple[str, list[Stage]]) -> None:
    name, built = image
    final = built[-1]
    assert final.values("RUN") == [], f"{name}: the final stage runs {final.values('RUN')}"
    assert not any(i["instruction"] == "ADD" for i in final.instructions), f"{name}: ADD fetches or unpacks"
    # The slim variant has no compilers; pip leaves the venv at the end of the build stage.
    assert "-slim" in final.base, final.base
    install = named(built, "build").values("RUN")[-1]
    assert install.rstrip().endswith("-m pip uninstall --yes pip"), install
    for stage in built[:-1]:
        for run in stage.values("RUN"):
            assert "--no-cache-dir" in run, f"{name}: pip's cache would be in the layer: {run}"
    assert not BUILD_TOOLS.search(" ".join(final.values("ENV"))), name


def test_oci_labels_name_the_release(image: tuple[str, list[Stage]]) -> None:
    name, _ = image
    labels = parse(DOCKERFILES[name]).labels
    for key in ("title", "description", "source", "licenses", "version"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"{name}: no org.opencontainers.image.{key}"
    assert labels["org.opencontainers.image.title"] == f"modelops-{name}"
    assert (
        labels["org.opencontainers.image.version"] == PYPROJECT["project"]["version"] == CHART["appVersion"]
    )
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]["text"]


def test_entrypoints_are_the_console_scripts_the_chart_and_operator_run() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    entry = {name: parse(path).structure for name, path in DOCKERFILES.items()}
    for name, structure in entry.items():
        (entrypoint,) = [i["value"] for i in structure if i["instruction"] == "ENTRYPOINT"]
        expected = "modelops" if name == "operator" else "modelops-worker"
        assert entrypoint == f'["{expected}"]' and expected in scripts, (name, entrypoint)
    (cmd,) = [i["value"] for i in entry["operator"] if i["instruction"] == "CMD"]
    assert cmd == '["operator"]'


def test_the_cpu_worker_installs_the_pinned_cpu_build_of_torch() -> None:
    build = named(stages(DOCKERFILES["worker"]), "build")
    args = build_args(build)
    assert args["TORCH_VERSION"] == torch_pin()
    # The public default is PyTorch's CPU index; CI passes an index holding the same wheel.
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    (run,) = [r for r in build.values("RUN") if "torch==" in r]
    # --index-url, not --extra-index-url: with both indexes pip may take PyPI's CUDA wheel.
    assert '--index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}+cpu"' in run, run
    assert "--extra-index-url" not in " ".join(build.values("RUN"))


def test_the_cuda_worker_installs_pypis_cuda_build_on_the_same_base() -> None:
    cpu, cuda = stages(DOCKERFILES["worker"]), stages(DOCKERFILES["worker-cuda"])
    # Same interpreter as the CPU image: the venv is built and run on the same Python.
    assert set(external_bases(cuda)) == set(external_bases(cpu))
    build = named(cuda, "build")
    assert build_args(build)["TORCH_VERSION"] == torch_pin()
    (run,) = [r for r in build.values("RUN") if "torch==" in r]
    assert '"torch==${TORCH_VERSION}"' in run and "download.pytorch.org" not in run, run
    # The deps stage (what CI builds without the CUDA wheels) has everything but torch, and the GPU
    # onnxruntime instead of the CPU one (both install the module `onnxruntime`).
    deps = named(cuda, "deps")
    assert build.base == "deps"
    (install,) = deps.values("RUN")
    assert "--without torch" in install and "--rename onnxruntime=onnxruntime-gpu" in install, install
    env = parse(DOCKERFILES["worker-cuda"]).envs
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "compute" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    assert "NVIDIA_VISIBLE_DEVICES" not in parse(DOCKERFILES["worker"]).envs


def test_every_copied_path_exists_and_the_build_context_leaves_out_local_state() -> None:
    for name, path in DOCKERFILES.items():
        for stage in stages(path):
            for copy in stage.values("COPY"):
                if copy.startswith("--from="):
                    continue
                *sources, _ = copy.split()
                for source in sources:
                    assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
    ignored = set((ROOT / ".dockerignore").read_text().split())
    # A virtualenv or the tools in the context would make every build send gigabytes.
    assert {".venv", ".tools", ".git", ".bench-venv", "tests"} <= ignored


def test_the_build_commands_in_the_dockerfiles_are_the_ones_the_docs_give() -> None:
    docs = (ROOT / "docs" / "images.md").read_text()
    for path in DOCKERFILES.values():
        (command,) = re.findall(r"^#\s+(docker build .*)$", path.read_text(), flags=re.MULTILINE)
        assert command in docs, f"docs/images.md does not give `{command}`"
