"""Helpers of the chart tests: run the real helm binary the way a user would, and pick manifests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelops"
NAMESPACE = "modelops-system"
RELEASE = "mo"

Manifests = list[dict[str, Any]]


def helm_binary() -> str:
    local = ROOT / ".tools" / "bin" / "helm"
    if local.is_file():
        return str(local)
    found = shutil.which("helm")
    if found is None:
        pytest.skip("no helm binary: run `make bootstrap` to install it into .tools/bin")
    return found


def run_helm(
    *args: str, values: dict[str, Any] | None = None, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    command = [helm_binary(), *args]
    if values is not None:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        command += ["--values", str(values_file)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def only(manifests: Manifests, kind: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


def of_kind(manifests: Manifests, kind: str) -> Manifests:
    return [m for m in manifests if m["kind"] == kind]
