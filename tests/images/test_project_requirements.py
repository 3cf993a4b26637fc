"""scripts/project_requirements.py: the requirements the Dockerfiles install before copying the sources.

A wrong list would show only in a build (a missing dependency fails `pip check`, a CPU onnxruntime
beside the GPU one breaks CUDA serving), so its three behaviours are pinned here against the real
pyproject.toml and a small one.
"""

from __future__ import annotations

import tomllib

from imagetools import REPO, _script

requirements_script = _script("project_requirements")
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {requirements_script.split_requirement(r)[0] for r in requirements}


def test_the_operator_gets_the_core_dependencies_only() -> None:
    chosen = requirements_script.requirements(PROJECT, [], set(), {})
    assert chosen == PROJECT["dependencies"]
    assert not names(chosen) & {"torch", "cel-python", "kubernetes-validate", "onnxruntime"}


def test_the_worker_gets_its_extra_and_the_cuda_deps_stage_swaps_onnxruntime_and_leaves_torch() -> None:
    worker = requirements_script.requirements(PROJECT, ["worker"], set(), {})
    assert {"torch", "onnxruntime", "kopf"} <= names(worker)
    cuda = requirements_script.requirements(
        PROJECT, ["worker"], {"torch"}, {"onnxruntime": "onnxruntime-gpu"}
    )
    assert "torch" not in names(cuda) and "onnxruntime" not in names(cuda)
    (ort,) = [r for r in PROJECT["optional-dependencies"]["worker"] if r.startswith("onnxruntime")]
    assert f"onnxruntime-gpu{ort.removeprefix('onnxruntime')}" in cuda


def test_names_are_normalized_and_specifiers_and_markers_kept() -> None:
    # Each spelling is kept (pip intersects two requirements of one package); an extra repeating a core
    # requirement word for word is listed once.
    project = {
        "dependencies": ["Foo_Bar[x]>=1; python_version<'4'", "foo-bar[x]>=1; python_version<'4'"],
        "optional-dependencies": {"e": ["Foo_Bar[x]>=1; python_version<'4'"]},
    }
    assert requirements_script.requirements(project, ["e"], set(), {}) == project["dependencies"]
    assert requirements_script.requirements(project, [], {"foo-bar"}, {}) == []
    renamed = requirements_script.requirements(project, [], set(), {"foo-bar": "baz"})
    assert renamed == ["baz[x]>=1; python_version<'4'"]
