"""The one podman setup of this repository: the image builds, the image tests and the local plane's
container runtime all run podman through it, so they agree on where images live and how containers start.

Why a setup of our own rather than the host's defaults:

- **Project-local storage.** Images and containers live under `.cache/podman/storage` of this checkout
  (git-ignored), not in `/var/lib/containers`: CI's fresh clone starts empty and builds its images once,
  a second run reuses them, and two checkouts on one machine (concurrent helpers, CI beside a developer)
  never see or lock each other's containers. The run root (locks, conmon sockets) is short and outside
  the checkout, `/tmp/modelops-podman-<hash of the checkout's path>`, because conmon's attach socket
  path must fit in a socket address (108 bytes).
- **runc and the cgroupfs manager.** crun, Debian's default, fails on this kind of host's cgroup layout,
  and there is no systemd to manage cgroups.
- **Ulimits the host can give.** Podman asks for `nofile=1048576` by default; a root without
  CAP_SYS_RESOURCE beyond its own hard limit cannot grant that and every container fails to start
  ("error setting rlimit type 7"). The defaults written here are the host's own hard `nofile` and a
  `nproc` it accepts.

The contract is podman's own environment variables, so any code that runs `podman` with this environment
(a subprocess, the local plane's kubelet) uses the same setup:

    CONTAINERS_CONF          .cache/podman/containers.conf (runtime, cgroup manager, ulimits)
    CONTAINERS_STORAGE_CONF  .cache/podman/storage.conf (graph root and run root)

Override the directory with `MODELOPS_PODMAN_HOME` (for example to share one image store between
checkouts on purpose). From a shell:

    eval "$(python3 scripts/podman_env.py)"      # exports the two variables
    python3 scripts/podman_env.py --check        # fails loudly when podman or runc is missing

From Python: `environment()` writes the files and returns the variables to add to `os.environ` or to a
subprocess's env; `require()` raises with the fix when the tools are missing. Standard library only: it
runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What bootstrap.sh installs with apt-get for the image stage and the local plane's container runtime.
APT_PACKAGES = ("podman", "buildah", "mmdebstrap", "runc", "uidmap")
# Podman's default nproc for root; asking for the host's hard limit itself is refused by runc here.
NPROC = 32768


def home() -> Path:
    return Path(os.environ.get("MODELOPS_PODMAN_HOME") or ROOT / ".cache" / "podman").resolve()


def run_root(state: Path) -> Path:
    digest = hashlib.sha256(str(state).encode()).hexdigest()[:12]
    return Path("/tmp") / f"modelops-podman-{digest}"


def _ulimits() -> list[str]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    if nofile == resource.RLIM_INFINITY:
        nofile = 1048576
    if nproc == resource.RLIM_INFINITY or nproc > NPROC:
        nproc = NPROC
    return [f"nofile={nofile}:{nofile}", f"nproc={nproc}:{nproc}"]


def _write(path: Path, text: str) -> None:
    # Atomic: a concurrent podman must never read half a config.
    if path.exists() and path.read_text() == text:
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    partial.replace(path)


def environment() -> dict[str, str]:
    """Write containers.conf and storage.conf and return the variables that make podman use them."""
    state = home()
    runroot = run_root(state)
    state.mkdir(parents=True, exist_ok=True)
    runroot.mkdir(parents=True, exist_ok=True, mode=0o700)
    ulimits = ", ".join(f'"{u}"' for u in _ulimits())
    containers_conf = state / "containers.conf"
    storage_conf = state / "storage.conf"
    _write(
        containers_conf,
        "# Written by scripts/podman_env.py; edit that file, not this one.\n"
        "[containers]\n"
        f"default_ulimits = [{ulimits}]\n"
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'tmp_dir = "{runroot / "libpod"}"\n',
    )
    _write(
        storage_conf,
        "# Written by scripts/podman_env.py; edit that file, not this one.\n"
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{state / "storage"}"\n'
        f'runroot = "{runroot / "storage"}"\n',
    )
    return {"CONTAINERS_CONF": str(containers_conf), "CONTAINERS_STORAGE_CONF": str(storage_conf)}


def require() -> None:
    """Raise with the fix when podman, runc or mmdebstrap is missing: the image stage never skips."""
    missing = [tool for tool in ("podman", "buildah", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found on PATH: the image builds and the container runtime need them. "
            f"Run `make bootstrap` as root (it apt-get installs {' '.join(APT_PACKAGES)}), or install them "
            "yourself."
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="also run `podman info` and fail if it fails")
    args = parser.parse_args()
    env = environment()
    if args.check:
        try:
            require()
        except RuntimeError as error:
            print(f"podman_env: {error}", file=sys.stderr)
            return 1
        info = subprocess.run(
            ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}} {{.Store.GraphRoot}}"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        if info.returncode != 0:
            print(f"podman_env: `podman info` failed:\n{info.stderr}", file=sys.stderr)
            return 1
        print(f"# podman ready: {info.stdout.strip()}", file=sys.stderr)
    for key, value in env.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
