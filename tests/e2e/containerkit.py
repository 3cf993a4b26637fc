"""Images for the container runtime's tests, built here from Debian packages: no registry is needed.

* `base_image()`: the Debian bookworm base with Python that `scripts/build_images.py` makes with
  `mmdebstrap` for the project's own images (cached by content; `make images` builds it before the
  tests), so a CI run builds one base, not two.
* `build(name, files, containerfile)`: a user's image `FROM` that base (COPY, USER, ENTRYPOINT only, so
  building runs nothing), tagged `localhost/<name>:<hash of its inputs>`; an image already present is
  reused.

Podman, mmdebstrap and runc are installed by `scripts/bootstrap.sh`; a missing one fails the tests
loudly (never a skip). Podman runs with the options the local plane's kubelet uses (`engine.py`).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def podman_env() -> dict[str, str]:
    """The repository's one podman setup (`scripts/podman_env.py`: project-local store, runc, cgroupfs,
    ulimits), for the images built here and for the plane's kubelet alike."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("podman_env", REPO / "scripts" / "podman_env.py")
    if spec is None or spec.loader is None or not (REPO / "scripts" / "podman_env.py").exists():
        return {}
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.environment())


PODMAN_ARGS = shlex.split(
    os.environ.get("MODELOPS_PODMAN_ARGS", "--runtime runc --cgroup-manager cgroupfs --events-backend file")
)


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"`{tool}` is not installed: run scripts/bootstrap.sh (it installs podman, buildah, "
                    "mmdebstrap and runc); the container runtime's tests never skip")  # fmt: skip
    return path


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [_need("podman"), *PODMAN_ARGS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **podman_env()},
    )
    if check and done.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:3])} failed ({done.returncode}): {done.stderr[-3000:]}")
    return done


def _exists(tag: str) -> bool:
    return podman("image", "exists", tag, check=False).returncode == 0


def base_image() -> str:
    """The images' own Debian base (`scripts/build_images.py`: mmdebstrap, cached by content), which
    `make images` has built before the tests run: one base for the project's images and the users'."""
    import sys

    scripts = str(REPO / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)  # build_images imports podman_env beside it
    _need("mmdebstrap")
    import build_images as module

    try:
        reference, _ = module.build_base()
    except module.BuildError as error:
        pytest.fail(f"the Debian base image could not be built: {error}")
    return str(reference)


def build(name: str, files: dict[str, str], containerfile: str) -> str:
    """`localhost/<name>:<hash>` built from `containerfile` (its FROM is the base) and `files`."""
    base = base_image()
    text = containerfile.replace("{BASE}", base)
    digest = hashlib.sha256(text.encode())
    for path, content in sorted(files.items()):
        digest.update(f"\0{path}\0{content}".encode())
    tag = f"localhost/{name}:{digest.hexdigest()[:12]}"
    if _exists(tag):
        return tag
    with tempfile.TemporaryDirectory() as context:
        for path, content in files.items():
            target = Path(context) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(0o755)
        (Path(context) / "Containerfile").write_text(text)
        podman("build", "--pull=never", "-t", tag, "-f", str(Path(context) / "Containerfile"), context)
    return tag
