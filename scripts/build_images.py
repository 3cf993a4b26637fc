"""Build the project's images with podman from the real Dockerfiles, on a machine that can pull nothing.

No registry is reachable here (only PyPI and Debian's archive), so the Dockerfiles' public base image,
`python:3.11.11-slim-bookworm`, cannot be pulled. This script builds an equivalent base from Debian's own
packages with mmdebstrap (bookworm, its python3.11 with venv, CA certificates, tzdata, netbase; no docs,
man pages or apt lists), imports it into podman and passes it to every Dockerfile as `PYTHON_IMAGE`.
Everything else is the Dockerfiles' own: the same stages, users, labels and entrypoints a user gets with
`docker build`.

torch: the CPU image installs `torch==X.Y.Z+cpu` from `TORCH_INDEX_URL` (PyTorch's CPU index by
default, which is not reachable here). The CPU wheel the project's own venv uses lies on this machine's
disk, found by pip's configuration (its find-links); `pip download torch==X.Y.Z` fetches it the way
`make bootstrap` does, this script checks it is the +cpu build (a CUDA wheel of several GB must never
end in the image by accident) and serves it to the build as a one-package index mounted read-only.

Cache: each base and image is tagged with a key, the sha256 of everything that goes into it (the
Dockerfile, the files it copies, the base's key, the build arguments). An image whose key is already in
podman's store (scripts/podman_env.py: `.cache/podman`) is not built again, so a second run takes seconds;
podman's layer cache also keeps the torch and dependency layers when only the sources changed. Each
built image is also tagged with the name the chart deploys (`ghcr.io/modelops/operator:0.1.0`, ...), as
`kind load` would, so the chart and the operator find it without a registry.

    python scripts/build_images.py                 # base + operator + worker + the CUDA worker's deps stage
    python scripts/build_images.py operator        # only what that image needs
    python scripts/build_images.py --json FILE     # also write tags, build seconds and sizes to FILE

A failure (podman missing, mmdebstrap or a build step failing) exits non-zero with the log's tail: the
image stage never skips.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import podman_env

ROOT = podman_env.ROOT
CACHE = ROOT / ".cache" / "images"
VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

# The base: what python:3.11-slim-bookworm carries that our images use, from Debian's archive.
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# libgomp1: OpenMP, which llama.cpp's CPU library (llama-cpp-python, the worker's GGUF engine) links.
BASE_PACKAGES = (
    "python3",
    "python3-venv",
    "python-is-python3",
    "ca-certificates",
    "netbase",
    "tzdata",
    "libgomp1",
)
BASE_OPTIONS = (
    "--variant=minbase",
    "--format=tar",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    '--aptopt=Acquire::Languages "none"',
    '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*',
)
# What the official image's config sets and our images rely on (podman import starts from none).
BASE_CHANGES = ('ENV LANG="C.UTF-8"', 'CMD ["python3"]')
BASE_REPOSITORY = "localhost/modelops-base"


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    deployed_as: tuple[str, ...] = ()  # the chart's names for it
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    needs_torch_index: bool = False
    needs_host_wheels: bool = False  # the worker's dependencies include llama-cpp-python

    @property
    def repository(self) -> str:
        return f"localhost/modelops-{self.name}"


IMAGES = {
    image.name: image
    for image in (
        Image("operator", "images/operator/Dockerfile", (f"ghcr.io/modelops/operator:{VERSION}",)),
        Image(
            "worker",
            "images/worker/Dockerfile",
            (f"ghcr.io/modelops/worker:{VERSION}",),
            needs_torch_index=True,
            needs_host_wheels=True,
        ),
        # Through its dependency stage only: the rest is PyPI's CUDA torch (see docs/images.md).
        Image("worker-cuda-deps", "images/worker/Dockerfile.cuda", target="deps", needs_host_wheels=True),
    )
}


class BuildError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"build_images: {message}", file=sys.stderr, flush=True)


def podman(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], env={**os.environ, **podman_env.environment()}, capture_output=capture, text=True
    )
    if check and result.returncode != 0:
        raise BuildError(f"`podman {' '.join(args)}` failed:\n{result.stderr}")
    return result


def run_logged(command: list[str], logfile: Path, env: Mapping[str, str] | None = None) -> None:
    """Run a long step with its output in a log file; on failure raise with the log's tail."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-40:])
        raise BuildError(f"{command[0]} exited {code} (full log: {logfile}):\n{tail}")


def digest(parts: Iterable[bytes]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:16]


def image_exists(reference: str) -> bool:
    return podman("image", "exists", reference, check=False).returncode == 0


def image_size(reference: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", reference).stdout.strip())


# --- the base ---------------------------------------------------------------------------------------


def base_key() -> str:
    recipe = [SUITE, *MIRRORS, *BASE_PACKAGES, *BASE_OPTIONS, *BASE_CHANGES]
    return digest(item.encode() for item in recipe)


def build_base() -> tuple[str, float | None]:
    """The base image's reference and its build seconds (None when it was cached)."""
    reference = f"{BASE_REPOSITORY}:{SUITE}-{base_key()}"
    if image_exists(reference):
        return reference, None
    started = time.monotonic()
    tarball = CACHE / f"base-{base_key()}.tar"
    if not tarball.exists():
        log(f"building the {SUITE} base with mmdebstrap (Debian's archive; a few minutes, once)")
        partial = tarball.with_suffix(".tar.partial")
        partial.unlink(missing_ok=True)
        command = [
            "mmdebstrap",
            *BASE_OPTIONS,
            f"--include={','.join(BASE_PACKAGES)}",
            SUITE,
            str(partial),
            *MIRRORS,
        ]
        run_logged(command, CACHE / "logs" / "base.log", env={**os.environ, "TMPDIR": str(CACHE)})
        partial.replace(tarball)
    changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
    podman("import", *changes, str(tarball), reference)
    log(f"imported the base as {reference}")
    return reference, time.monotonic() - started


# --- torch's CPU wheel ------------------------------------------------------------------------------


def torch_pin() -> str:
    worker = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "worker"
    ]
    (pin,) = [d for d in worker if re.match(r"torch\b", d)]
    match = re.fullmatch(r"torch==(\d+\.\d+\.\d+)", pin)
    if not match:
        raise BuildError(f"pyproject.toml pins torch as {pin!r}; the images need an exact `torch==X.Y.Z`")
    return match.group(1)


def torch_index() -> Path:
    """A PEP 503 index holding the CPU wheel of the pinned torch, as this machine's pip finds it."""
    version = torch_pin()
    index = CACHE / f"torch-{version}-cpu"
    wheels = [w for w in index.glob("torch-*.whl")] if index.exists() else []
    if not wheels:
        log(f"fetching torch=={version} the way pip sees it (its find-links hold the CPU wheel)")
        index.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        run_logged([*pip, "-d", str(index), f"torch=={version}"], CACHE / "logs" / "torch-download.log")
        wheels = list(index.glob("torch-*.whl"))
    (wheel,) = wheels
    if f"{version}+cpu" not in wheel.name:
        wheel.unlink()
        raise BuildError(
            f"pip resolved torch=={version} to {wheel.name}, not the +cpu build: the image would carry "
            "several GB of CUDA. Put the CPU wheel where pip finds it (pip's find-links, or "
            f"`pip download --index-url https://download.pytorch.org/whl/cpu torch=={version}+cpu -d {index}`)."
        )
    project = index / "simple" / "torch"
    project.mkdir(parents=True, exist_ok=True)
    (project / "index.html").write_text(f'<a href="../../{wheel.name}">{wheel.name}</a>\n')
    return index


def host_wheels() -> Path:
    """Prebuilt wheels of what PyPI ships only as source (llama-cpp-python), as this machine's pip built
    them for the project's venv: `pip wheel` takes them from pip's wheel cache in a second, where a
    build inside the image would compile llama.cpp again for minutes (and need a compiler there)."""
    from importlib.metadata import PackageNotFoundError, version

    out = CACHE / "host-wheels"
    try:
        pinned = version("llama-cpp-python")
    except PackageNotFoundError:
        raise BuildError(
            "llama-cpp-python is not installed in this venv: run `make bootstrap` (the worker extra)"
        ) from None
    if not list(out.glob(f"llama_cpp_python-{pinned}-*.whl")):
        log(f"collecting llama-cpp-python=={pinned}'s wheel from this machine's pip")
        out.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out)]
        run_logged([*pip, f"llama-cpp-python=={pinned}"], CACHE / "logs" / "host-wheels.log")
    return out


# --- pip inside the build -----------------------------------------------------------------------------


def host_pip_mounts() -> list[str]:
    """Volumes that make pip inside a build trust what this machine's pip trusts.

    A machine whose HTTPS goes through an intercepting proxy configures pip with the proxy's CA bundle
    (`cert` in pip's configuration or PIP_CERT); the build's pip must use the same bundle or PyPI fails
    with CERTIFICATE_VERIFY_FAILED. The bundle and a pip.conf naming it are mounted into every RUN
    step (`podman build --volume`), never copied into a layer. Nothing is mounted where pip has no
    `cert` set.
    """
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    certs = [
        line.split("=", 1)[1].strip("'\"")
        for line in listed.splitlines()
        if line.split("=", 1)[0].endswith(".cert")
    ]
    bundle = os.environ.get("PIP_CERT") or (certs[0] if certs else "")
    if not bundle:
        return []
    if not Path(bundle).is_file():
        raise BuildError(
            f"pip's configured cert {bundle} is not a file; fix pip's configuration (pip config list)"
        )
    conf = CACHE / "pip.conf"
    conf.write_text("[global]\ncert = /etc/ssl/certs/modelops-build-ca.pem\n")
    return [
        "--volume",
        f"{bundle}:/etc/ssl/certs/modelops-build-ca.pem:ro",
        "--volume",
        f"{conf}:/etc/pip.conf:ro",
    ]


# --- the images -------------------------------------------------------------------------------------


def copied_sources(dockerfile: Path) -> list[Path]:
    """What the Dockerfile COPYs from the build context (not from another stage)."""
    sources: list[Path] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from=") for w in words):
            sources += [ROOT / w for w in words[1:-1] if not w.startswith("--")]
    return sources


def files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".pyc", ".partial"))
    )


def image_key(image: Image, base: str, build_args: Mapping[str, str]) -> str:
    dockerfile = ROOT / image.dockerfile
    parts = [dockerfile.read_bytes(), base.encode(), str(image.target).encode()]
    parts += [f"{key}={value}".encode() for key, value in sorted(build_args.items())]
    for source in copied_sources(dockerfile):
        for path in files_under(source):
            parts += [str(path.relative_to(ROOT)).encode(), path.read_bytes()]
    return digest(parts)


@dataclass
class Built:
    name: str
    reference: str
    seconds: float | None  # None: cached
    size: int


def build_image(image: Image, base: str, pip_mounts: list[str]) -> Built:
    build_args = {"PYTHON_IMAGE": base, **image.build_args}
    volumes = list(pip_mounts)
    if image.needs_torch_index:
        index = torch_index()
        build_args["TORCH_INDEX_URL"] = "file:///wheels/simple"
        volumes += ["--volume", f"{index}:/wheels:ro"]
    if image.needs_host_wheels:
        build_args["HOST_WHEELS"] = "/host-wheels"
        volumes += ["--volume", f"{host_wheels()}:/host-wheels:ro"]
    reference = f"{image.repository}:{image_key(image, base, build_args)}"
    seconds: float | None = None
    if not image_exists(reference):
        log(f"building {image.name} from {image.dockerfile} as {reference}")
        started = time.monotonic()
        command = ["podman", "build", "--network", "host", "--layers", "--file", image.dockerfile]
        command += [arg for key, value in build_args.items() for arg in ("--build-arg", f"{key}={value}")]
        command += volumes + (["--target", image.target] if image.target else [])
        command += ["--tag", reference, str(ROOT)]
        run_logged(
            command, CACHE / "logs" / f"{image.name}.log", env={**os.environ, **podman_env.environment()}
        )
        seconds = time.monotonic() - started
        log(f"built {image.name} in {seconds:.0f} s")
        # Older builds of the same image are not needed any more (the layer cache keeps what is shared).
        for line in podman("images", "--format", "{{.Repository}}:{{.Tag}}", image.repository).stdout.split():
            if line != reference:
                podman("untag", line, line, check=False)  # that name only, not all of the image's
    for name in image.deployed_as:
        podman("tag", reference, name)
    return Built(image.name, reference, seconds, image_size(reference))


def build(names: Iterable[str], jobs: int = 2) -> list[Built]:
    """The base, then the images, `jobs` at a time: the worker (the longest, mostly writing its layers)
    starts first and the others (mostly downloading from PyPI) build beside it."""
    podman_env.require()
    CACHE.mkdir(parents=True, exist_ok=True)
    base, base_seconds = build_base()
    pip_mounts = host_pip_mounts()
    wanted = list(names)
    ordered = sorted(wanted, key=lambda name: not IMAGES[name].needs_torch_index)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {name: pool.submit(build_image, IMAGES[name], base, pip_mounts) for name in ordered}
        built = {name: future.result() for name, future in futures.items()}
    # No `podman image prune`: the untagged build stages it would remove are the layer cache.
    return [Built("base", base, base_seconds, image_size(base)), *(built[name] for name in wanted)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", help=f"some of {', '.join(IMAGES)} (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="images built at the same time (default 2)")
    parser.add_argument("--json", type=Path, help="write what was built (tags, seconds, sizes) to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.images) - set(IMAGES))
    if unknown:
        parser.error(f"no image named {', '.join(unknown)}; the images are {', '.join(IMAGES)}")
    if shutil.which("podman") is None:
        log(
            "podman is not installed: run `make bootstrap` as root (it apt-installs podman, buildah, mmdebstrap)"
        )
        return 1
    try:
        results = build(args.images or list(IMAGES), jobs=args.jobs)
    except (BuildError, RuntimeError) as error:
        log(str(error))
        return 1
    for result in results:
        took = "cached" if result.seconds is None else f"built in {result.seconds:.0f} s"
        log(f"{result.name:18} {result.reference}  {result.size / 1e6:7.1f} MB  {took}")
    if args.json:
        args.json.write_text(json.dumps([vars(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
