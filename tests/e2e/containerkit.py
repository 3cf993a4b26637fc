"""Images for the container runtime's tests, built here from Debian packages: no registry is needed.

* `base_image()`: a Debian bookworm root file system with Python made by `mmdebstrap` (essential
  packages plus python3), imported into podman as `localhost/modelops-test-base:<hash>`. The tarball
  is cached under `.cache/containers/` keyed by the package list, so only the first run downloads.
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
CACHE = REPO / ".cache" / "containers"
SUITE = "bookworm"
PACKAGES = ("python3", "ca-certificates")


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
    key = hashlib.sha256(f"{SUITE} essential {' '.join(PACKAGES)} v1".encode()).hexdigest()[:12]
    tag = f"localhost/modelops-test-base:{key}"
    if _exists(tag):
        return tag
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"base-{key}.tar"
    if not tarball.exists():
        partial = CACHE / f".base-{key}.partial.tar"  # mmdebstrap picks its output format by the suffix
        done = subprocess.run(
            [
                _need("mmdebstrap"),
                "--variant=essential",
                f"--include={','.join(PACKAGES)}",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                SUITE,
                str(partial),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            pytest.fail(f"mmdebstrap could not build the test base image: {done.stderr[-3000:]}")
        partial.rename(tarball)
    podman("import", "--change", 'CMD ["/bin/sh"]', str(tarball), tag)
    return tag


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
