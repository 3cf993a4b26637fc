"""Fixtures of the chart tests: `render` (helm template) and `helm` (any helm command)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartkit import CHART, NAMESPACE, RELEASE, Manifests, run_helm


@pytest.fixture
def render(tmp_path: Path) -> Callable[..., Manifests]:
    """Render with `helm template`; fail the test with helm's own message if rendering fails."""

    def _render(values: dict[str, Any] | None = None, *extra: str) -> Manifests:
        result = run_helm(
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            *extra,
            values=values,
            tmp_path=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return _render


@pytest.fixture
def helm(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def _helm(*args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        return run_helm(*args, values=values, tmp_path=tmp_path)

    return _helm
