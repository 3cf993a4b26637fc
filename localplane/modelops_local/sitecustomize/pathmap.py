"""Volume mount paths for Python processes run by the local kubelet (loaded by sitecustomize).

A container on the local plane is a host process, so a volume cannot really be mounted at its
`mountPath`: `/var/run/secrets/kubernetes.io/serviceaccount` is the same directory for every pod. The
kubelet instead gives each container `MODELOPS_LOCAL_MOUNTS`, a JSON object from absolute mountPath
to the host directory (or file) holding that volume, and this module redirects Python's file-system
calls under a mountPath to the host path (longest mountPath first). With it the kubernetes client's
and kopf's in-cluster login find their token and CA file where they expect them.

Covered: `open` (builtins and io, so pathlib too), the `os` functions that take paths (stat, lstat,
open, listdir, scandir, access, mkdir, remove, rename, ...; `os.path.exists/isfile/isdir` and `pathlib`
go through them), and `ssl.SSLContext.load_verify_locations/load_cert_chain` (CA and client
certificate files are opened by OpenSSL, not by Python). Not covered: code that opens files outside
Python (C extensions, subprocesses), which must be given host paths.

Standard library only, and it never raises: it runs in every process the kubelet starts.
"""

from __future__ import annotations

import builtins
import functools
import io
import json
import os
import posixpath
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# (prefix, host path) longest prefix first; a host path of None marks a pass-through prefix.
_mounts: list[tuple[str, str | None]] = []
_installed = False

# os functions whose first argument is a path; those with two paths map both.
_ONE_PATH = (
    "stat",
    "lstat",
    "open",
    "listdir",
    "access",
    "mkdir",
    "makedirs",
    "rmdir",
    "remove",
    "unlink",
    "chmod",
    "chown",
    "utime",
    "readlink",
    "truncate",
    "chdir",
    "statvfs",
    "getxattr",
    "listxattr",
)
_TWO_PATHS = ("rename", "replace", "link", "symlink")


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """(mountPath, host path) pairs from MODELOPS_LOCAL_MOUNTS JSON, longest mountPath first.

    Entries that are not absolute paths are ignored; malformed JSON gives no mounts.
    """
    try:
        raw = json.loads(text) if text else {}
    except ValueError:
        return []
    if not isinstance(raw, dict):
        return []
    pairs: list[tuple[str, str]] = []
    for mount, host in raw.items():
        if not (isinstance(mount, str) and isinstance(host, str)):
            continue
        if not mount.startswith("/") or not host.startswith("/"):
            continue
        mount = posixpath.normpath(mount)
        if mount in ("/", "//"):
            continue  # mounting over / would redirect everything, including the interpreter
        pairs.append((mount, host.rstrip("/") or "/"))
    pairs.sort(key=lambda p: len(p[0]), reverse=True)
    return pairs


def passthrough_prefixes(environ: Mapping[str, str], mounts: list[tuple[str, str]]) -> list[str]:
    """Host paths that must never be redirected even when a mountPath covers them.

    The process is a host process: with a volume at `/tmp` and the plane's directory under `/tmp`,
    the kubelet's own files (hosts file, rootfs, termination-message file), the volumes' host
    directories (paths the kubelet or `container_path` already translated), the interpreter and its
    import path must stay where they are, or DNS and imports break and translated paths get
    translated twice. `MODELOPS_LOCAL_PASSTHROUGH` (os.pathsep-separated) adds more.
    """
    candidates = [host for _, host in mounts]
    hosts_file = environ.get("MODELOPS_LOCAL_HOSTS", "")
    if hosts_file:
        candidates.append(posixpath.dirname(hosts_file))  # the plane's directory
    for name in ("MODELOPS_LOCAL_ROOT", "MODELOPS_TERMINATION_MESSAGE_PATH"):
        if environ.get(name):
            candidates.append(environ[name])
    candidates += environ.get("MODELOPS_LOCAL_PASSTHROUGH", "").split(os.pathsep)
    candidates += [sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]
    out: list[str] = []
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.startswith("/"):
            norm = posixpath.normpath(candidate)
            if norm not in ("/", "//") and norm not in out:
                out.append(norm)
    return out


def translate(path: Any) -> Any:
    """The host path for `path` when it lies under a mountPath, else `path` itself (same type).

    The longest matching prefix decides, and a pass-through prefix (see `passthrough_prefixes`)
    leaves the path alone.
    """
    if not _mounts:
        return path
    try:
        if isinstance(path, int):
            return path
        raw = os.fspath(path)
        text = os.fsdecode(raw)
        if not text.startswith("/"):
            return path
        norm = posixpath.normpath(text)
        if norm.startswith("//"):
            norm = "/" + norm.lstrip("/")
        for mount, host in _mounts:
            if norm == mount:
                mapped = host
            elif norm.startswith(mount + "/"):
                mapped = None if host is None else host + norm[len(mount) :]
            else:
                continue
            if mapped is None:
                return path
            return os.fsencode(mapped) if isinstance(raw, bytes) else mapped
    except Exception:
        return path
    return path


def _wrap_one(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
        return func(translate(path), *args, **kwargs)

    return wrapper


def _wrap_two(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        return func(translate(src), translate(dst), *args, **kwargs)

    return wrapper


class _Entry:
    """An os.DirEntry whose `path` keeps the mountPath the caller listed, not the host path."""

    __slots__ = ("_entry", "path")

    def __init__(self, entry: os.DirEntry[Any], path: Any) -> None:
        self._entry = entry
        self.path = path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._entry, name)

    def __fspath__(self) -> Any:
        return self.path

    def __repr__(self) -> str:
        return f"<DirEntry {self._entry.name!r}>"


class _Scandir:
    def __init__(self, inner: Any, base: Any) -> None:
        self._inner = inner
        self._base = base

    def __iter__(self) -> Iterator[Any]:
        for entry in self._inner:
            yield _Entry(entry, os.path.join(self._base, entry.name))

    def __next__(self) -> Any:
        entry = next(self._inner)
        return _Entry(entry, os.path.join(self._base, entry.name))

    def __enter__(self) -> _Scandir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._inner.close()


def _make_scandir(orig: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(orig)
    def scandir(path: Any = ".") -> Any:
        mapped = translate(path)
        if mapped is path or isinstance(path, int):
            return orig(path)
        return _Scandir(orig(mapped), os.fspath(path))

    return scandir


def _make_realpath(orig: Callable[..., Any]) -> Callable[..., Any]:
    """A mountPath is opaque, as a real mount is: symlinks above it (`/var/run -> /run` on many hosts)
    must not resolve it to a path outside the mount."""

    @functools.wraps(orig)
    def realpath(path: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            if translate(path) is not path:
                raw = os.fspath(path)
                return posixpath.normpath(raw)
        except Exception:
            pass
        return orig(path, *args, **kwargs)

    return realpath


def _make_ssl_wrappers() -> None:
    try:
        import ssl
    except Exception:
        return
    context = ssl.SSLContext
    orig_verify = context.load_verify_locations
    orig_chain = context.load_cert_chain

    @functools.wraps(orig_verify)
    def load_verify_locations(self: Any, cafile: Any = None, capath: Any = None, cadata: Any = None) -> Any:
        cafile = translate(cafile) if cafile is not None else None
        capath = translate(capath) if capath is not None else None
        return orig_verify(self, cafile, capath, cadata)

    @functools.wraps(orig_chain)
    def load_cert_chain(self: Any, certfile: Any, keyfile: Any = None, password: Any = None) -> Any:
        keyfile = translate(keyfile) if keyfile is not None else None
        return orig_chain(self, translate(certfile), keyfile, password)

    context.load_verify_locations = load_verify_locations  # type: ignore[method-assign]
    context.load_cert_chain = load_cert_chain  # type: ignore[method-assign]


def install(environ: Mapping[str, str] | None = None) -> bool:
    """Redirect mount paths from `MODELOPS_LOCAL_MOUNTS` for this process; True when any are active.

    Idempotent; with no mounts configured nothing is patched. Never raises.
    """
    global _mounts, _installed
    try:
        env = os.environ if environ is None else environ
        mounts = parse_mounts(env.get("MODELOPS_LOCAL_MOUNTS", ""))
        if not mounts:
            return False
        table: list[tuple[str, str | None]] = list(mounts)
        table += [(prefix, None) for prefix in passthrough_prefixes(env, mounts)]
        # Stable sort: at equal length a mount comes before a pass-through of the same prefix.
        table.sort(key=lambda p: len(p[0]), reverse=True)
        _mounts = table
        if _installed:
            return True
        _installed = True
        orig_open = builtins.open
        wrapped_open = _wrap_one(orig_open)
        builtins.open = wrapped_open
        io.open = wrapped_open
        for name in _ONE_PATH:
            func = getattr(os, name, None)
            if func is not None:
                setattr(os, name, _wrap_one(func))
        for name in _TWO_PATHS:
            func = getattr(os, name, None)
            if func is not None:
                setattr(os, name, _wrap_two(func))
        os.scandir = _make_scandir(os.scandir)
        os.path.realpath = _make_realpath(os.path.realpath)
        _make_ssl_wrappers()
        return True
    except Exception:
        return False
