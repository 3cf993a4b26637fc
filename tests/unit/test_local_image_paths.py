"""A volume mounted over a directory that holds the checkout must not hide the project from the pod.

On the local plane the "image" is this machine's files. CI and users may clone the repository under
/tmp, and the chart mounts an emptyDir at /tmp: the operator pod's interpreter must still import
`modelops` (found through the editable install's finder, not through sys.path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import modelops
from modelops_local.nodes.pods import IMAGE_PATHS
from modelops_local.sitecustomize import DIRECTORY as SITECUSTOMIZE_DIR

SOURCE_ROOT = Path(modelops.__file__).resolve().parents[1]


def _import_modelops_in_a_pod(tmp_path: Path, passthrough: str) -> subprocess.CompletedProcess[str]:
    scratch = tmp_path / "emptydir"
    scratch.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(SITECUSTOMIZE_DIR),
        # A volume over the directory that contains the checkout, as /tmp over /tmp/<clone>.
        "MODELOPS_LOCAL_MOUNTS": json.dumps({str(SOURCE_ROOT.parent.parent): str(scratch)}),
        "MODELOPS_LOCAL_PASSTHROUGH": passthrough,
    }
    return subprocess.run(
        [sys.executable, "-c", "import modelops.cli; print('ok')"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_image_paths_name_the_environment_and_the_sources() -> None:
    paths = IMAGE_PATHS.split(os.pathsep)
    assert sys.prefix in paths
    assert str(SOURCE_ROOT) in paths


def test_the_project_stays_importable_under_a_volume_over_its_parent(tmp_path: Path) -> None:
    done = _import_modelops_in_a_pod(tmp_path, IMAGE_PATHS)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_without_the_image_paths_the_volume_would_hide_it(tmp_path: Path) -> None:
    # Shows the test above can fail: the mount really does cover the sources.
    done = _import_modelops_in_a_pod(tmp_path, "")
    if str(SOURCE_ROOT).startswith(sys.prefix):
        pytest.skip("a non-editable install lives on sys.path, which pathmap always passes through")
    assert done.returncode != 0 and "No module named 'modelops'" in done.stderr
