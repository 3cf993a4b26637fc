"""The local plane's state directory is its user's alone; the pods' files live where pods can reach them.

`DIR` holds every object of the plane (`state.db` and its WAL/SHM carry every Secret), the bearer
token, the kubeconfig, TLS keys, the audit log and the components' logs. Every component calls
`secure()` first: the umask becomes 077, so whatever it writes is 0600/0700, and what an older
version left readable (0644 files in a 0755 directory) is tightened.

The pods' files (rootfs, HOME, volumes, logs, the hosts file) cannot stay inside a 0700 directory
when the plane runs as root and starts pods as their `runAsUser`: those users could not reach them.
`runtime_root()` then gives them their own tree, `/var/lib/modelops-local/<hash of DIR>` (override:
`MODELOPS_LOCAL_RUNTIME_ROOT`), whose directories are 0711 (enterable, not listable) down to each
pod's own `0750 root:<pod group>` directory (`nodes/identity.py`); `DIR/pods` and `DIR/volumes` are
symlinks to it, so every path inside DIR keeps working. A plane run by an ordinary user keeps
everything in DIR: its pods run as that user.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import sys
from pathlib import Path

UMASK = 0o077
RUNTIME_BASE = "/var/lib/modelops-local"
# Directories inside DIR that hold only the plane's own files.
PRIVATE_DIRS = ("logs", "run", "audit")


def _tighten(path: Path, mode: int) -> None:
    with contextlib.suppress(OSError):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            return
        if st.st_mode & 0o7777 != mode and st.st_uid == os.geteuid():
            os.chmod(path, mode)


def secure(directory: Path) -> None:
    """umask 077 for this process and its children; DIR 0700, its files 0600 (also an older plane's)."""
    os.umask(UMASK)
    directory.mkdir(parents=True, exist_ok=True)
    _tighten(directory, 0o700)
    for entry in directory.iterdir():
        try:
            st = entry.lstat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            _tighten(entry, 0o600)
        elif stat.S_ISDIR(st.st_mode):
            _tighten(entry, 0o700)
            if entry.name in PRIVATE_DIRS:
                for inner in entry.rglob("*"):
                    _tighten(inner, 0o700 if inner.is_dir() and not inner.is_symlink() else 0o600)


def switches_users() -> bool:
    """Whether pods run as their own users: the plane is root, util-linux `setpriv` is there, and
    other users can run the "image" (directly, or through a private mount namespace; see below)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    return not unreachable_image_paths() or namespaces_work()


def _image_roots() -> list[Path]:
    import importlib.util

    paths = [Path(sys.prefix), Path(sys.base_prefix)]
    for package in ("modelops", "modelops_local", "modelops_worker"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            paths.append(Path(spec.origin).resolve().parent.parent)
    return [p.resolve() for p in dict.fromkeys(paths)]


def _blocking_ancestor(path: Path) -> Path | None:
    """The highest directory on the way to `path` that other users cannot pass, if any."""
    for part in reversed([path, *path.parents]):
        try:
            if not part.stat().st_mode & stat.S_IXOTH:
                return part
        except OSError:
            return part
    return None


def unreachable_image_paths() -> list[str]:
    """Paths of the Python environment and the packages that other users cannot reach."""
    return [str(p) for p in _image_roots() if _blocking_ancestor(p) is not None]


_NAMESPACES: bool | None = None


def namespaces_work() -> bool:
    global _NAMESPACES
    if _NAMESPACES is None:
        import subprocess

        unshare = shutil.which("unshare")
        try:
            ok = unshare is not None and (
                subprocess.run(
                    [unshare, "--mount", "--propagation", "private", "--", "true"],
                    capture_output=True,
                    timeout=10,
                ).returncode
                == 0
            )
        except (OSError, subprocess.SubprocessError):
            ok = False
        _NAMESPACES = ok
    return _NAMESPACES


def expose_image(stage: Path) -> str:
    """Shell that, in the container's private mount namespace, makes the image reachable.

    The Python environment may live where other users cannot pass (pyenv under a 0700 /root, as on
    this project's CI). The container then starts in its own mount namespace in which each blocking
    directory is covered by an empty tmpfs holding only the image's own directories (bind mounts), so
    the pod's user reaches the interpreter and nothing else there (as a container would not see the
    host's /root at all). Nothing changes outside the namespace. Empty when nothing blocks.
    """
    groups: dict[Path, list[Path]] = {}
    for root in _image_roots():
        blocker = _blocking_ancestor(root)
        if blocker is not None and blocker != Path("/"):
            groups.setdefault(blocker, []).append(root)
    lines: list[str] = []
    for n, (blocker, roots) in enumerate(sorted(groups.items())):
        staged = []
        for m, root in enumerate(sorted(set(roots))):
            point = stage / f"{n}-{m}"
            point.mkdir(parents=True, exist_ok=True)
            lines.append(f"mount --bind {_q(root)} {_q(point)}")
            staged.append((root, point))
        lines.append(f"mount -t tmpfs -o mode=0755,size=1m modelops-image {_q(blocker)}")
        for root, point in staged:
            lines += [f"mkdir -p {_q(root)}", f"mount --bind {_q(point)} {_q(root)}", f"umount {_q(point)}"]
    if not lines:
        return ""
    return "{ " + " && ".join(lines) + "; } || { echo 'cannot expose the image' >&2; exit 126; }; "


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"


def runtime_root(directory: Path) -> Path:
    """Where the pods' files go (see the module docstring); creates it and the DIR symlinks."""
    directory = directory.resolve()
    if not switches_users():
        return directory
    base = Path(os.environ.get("MODELOPS_LOCAL_RUNTIME_ROOT", RUNTIME_BASE))
    root = base / hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o711)
    _prune(base)
    root.mkdir(exist_ok=True)
    os.chmod(root, 0o711)
    (root / "plane").write_text(str(directory))  # whose it is, for _prune
    (directory / "run").mkdir(exist_ok=True)
    with open(directory / "run" / "layout.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in ("pods", "volumes"):
            target = root / name
            target.mkdir(exist_ok=True)
            os.chmod(target, 0o711)
            link = directory / name
            if link.is_symlink():
                if Path(os.readlink(link)) != target:
                    link.unlink()
                    link.symlink_to(target)
                continue
            if link.is_dir():
                # An older plane kept them inside DIR: move them out (claims keep their paths via the link).
                for entry in link.iterdir():
                    shutil.move(str(entry), str(target / entry.name))
                link.rmdir()
            link.symlink_to(target)
        (directory / "hosts").unlink(missing_ok=True)  # an older plane's; pods read ROOT/hosts
        pointer = directory / "runtime"
        if not pointer.is_symlink():
            pointer.symlink_to(root)
    return root


def _prune(base: Path) -> None:
    """Remove the pods' trees of planes whose directory is gone (a deleted test plane, `rm -rf DIR`)."""
    for root in base.iterdir():
        with contextlib.suppress(OSError):
            owner = Path((root / "plane").read_text())
            if not owner.exists():
                shutil.rmtree(root, ignore_errors=True)


def traversable(path: Path, top: Path) -> None:
    """Let other users pass through (0711) every directory from `top` down to `path`'s parent."""
    path, top = path.resolve(), top.resolve()
    if top not in path.parents:
        return
    for parent in reversed(path.parents):
        if parent == top or top in parent.parents:
            with contextlib.suppress(OSError):
                if parent.stat().st_mode & 0o111 != 0o111:
                    os.chmod(parent, (parent.stat().st_mode & 0o7777) | 0o111)
