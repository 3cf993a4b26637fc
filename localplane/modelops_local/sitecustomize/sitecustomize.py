"""Cluster networking and mounts for Python processes run by the local kubelet (via PYTHONPATH).

Local pods share the host's network stack and file system, so what a container gets for free on a
real cluster is supplied here, for Python code only (C/C++ code does not go through these functions;
the kubelet rewrites mount paths in env values and args, and unmistakable cluster names such as
`web.ns.svc` or `rank-0.ranks` in env values, for it):

* DNS: `getaddrinfo`/`gethostbyname` resolve Service and headless-pod names from the kubelet's hosts
  file (`MODELOPS_LOCAL_HOSTS`), with the pod's DNS search path (`<ns>.svc.cluster.local`,
  `svc.cluster.local`, `cluster.local`), so `web`, `web.ns` and `web.ns.svc.cluster.local` all work.
* Own IP: binding to all interfaces (`0.0.0.0`, `""`, or a passive lookup of None) binds to the pod's
  own loopback IP (`MODELOPS_POD_IP`), so many pods can listen on the same port. An explicit bind to
  `::` is left alone (IPv6 has no per-pod address here).
* Volumes: with `MODELOPS_LOCAL_MOUNTS` set, `pathmap.install()` redirects Python's file-system calls
  under a mountPath to the volume's host directory (the kubelet also rewrites args and env values).
* Termination message: opening the container's terminationMessagePath (`/dev/termination-log` by
  default, `MODELOPS_TERMINATION_MESSAGE_FROM`) opens the container's own file instead
  (`MODELOPS_TERMINATION_MESSAGE_PATH`), so code written for a cluster reports its result unchanged.

It must import nothing beyond the standard library and never raise: it runs in every process.
"""

from __future__ import annotations

import builtins
import io
import os
import socket
from typing import Any

_HOSTS_FILE = os.environ.get("MODELOPS_LOCAL_HOSTS", "")
_POD_IP = os.environ.get("MODELOPS_POD_IP", "")
_NAMESPACE = os.environ.get("MODELOPS_POD_NAMESPACE", "default")
_ANY = {"", "0.0.0.0"}

_cache: dict[str, list[str]] = {}
_cache_key: tuple[float, int] | None = None


def _table() -> dict[str, list[str]]:
    global _cache, _cache_key
    try:
        st = os.stat(_HOSTS_FILE)
    except OSError:
        return _cache
    key = (st.st_mtime, st.st_size)
    if key != _cache_key:
        table: dict[str, list[str]] = {}
        try:
            with open(_HOSTS_FILE, encoding="utf-8") as f:
                for line in f:
                    parts = line.split("#", 1)[0].split()
                    for name in parts[1:]:
                        ips = table.setdefault(name.lower(), [])
                        if parts[0] not in ips:
                            ips.append(parts[0])
        except OSError:
            return _cache
        _cache, _cache_key = table, key
    return _cache


def cluster_lookup(host: object) -> list[str] | None:
    """The IPs of a cluster name, following the pod's search path; None when it is not one."""
    if not isinstance(host, str) or not host or not _HOSTS_FILE:
        return None
    name = host.lower()
    if name.endswith("."):
        candidates = [name.rstrip(".")]
    elif name.count(".") < 5:  # ndots:5, as in a pod's resolv.conf
        candidates = [f"{name}.{_NAMESPACE}.svc.cluster.local", f"{name}.svc.cluster.local"]
        candidates += [f"{name}.cluster.local", name]
    else:
        candidates = [name]
    table = _table()
    for candidate in candidates:
        if candidate in table:
            return table[candidate]
    return None


_orig_getaddrinfo = socket.getaddrinfo
_orig_gethostbyname = socket.gethostbyname
_orig_gethostbyname_ex = socket.gethostbyname_ex
_orig_bind = socket.socket.bind


def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
    try:
        passive_any = (host is None or host in _ANY) and flags & socket.AI_PASSIVE
        if _POD_IP and passive_any and family in (0, socket.AF_INET, socket.AF_UNSPEC):
            return _orig_getaddrinfo(_POD_IP, port, socket.AF_INET, type, proto, flags)
        ips = cluster_lookup(host)
    except Exception:
        ips = None
    if ips:
        results = []
        for ip in ips:
            if family in (0, socket.AF_UNSPEC, socket.AF_INET):
                results.extend(_orig_getaddrinfo(ip, port, socket.AF_INET, type, proto, flags))
        if results:
            return results
    return _orig_getaddrinfo(host, port, family, type, proto, flags)


def _gethostbyname(host):  # type: ignore[no-untyped-def]
    ips = cluster_lookup(host)
    return ips[0] if ips else _orig_gethostbyname(host)


def _gethostbyname_ex(host):  # type: ignore[no-untyped-def]
    ips = cluster_lookup(host)
    return (host, [], list(ips)) if ips else _orig_gethostbyname_ex(host)


def _bind(self, address):  # type: ignore[no-untyped-def]
    if (
        _POD_IP
        and self.family == socket.AF_INET
        and isinstance(address, tuple)
        and len(address) == 2
        and address[0] in _ANY
    ):
        address = (_POD_IP, address[1])
    return _orig_bind(self, address)


_TERM_FROM = os.environ.get("MODELOPS_TERMINATION_MESSAGE_FROM", "")
_TERM_TO = os.environ.get("MODELOPS_TERMINATION_MESSAGE_PATH", "")
_orig_open = builtins.open
_orig_os_open = os.open


def _redirect(path: Any) -> Any:
    try:
        text = os.fspath(path)
    except TypeError:  # a file descriptor
        return path
    return _TERM_TO if isinstance(text, str) and text == _TERM_FROM else path


def _open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
    return _orig_open(_redirect(file), *args, **kwargs)


def _os_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
    return _orig_os_open(_redirect(path), *args, **kwargs)


if _TERM_FROM and _TERM_TO:
    builtins.open = _open
    io.open = _open
    os.open = _os_open

if _HOSTS_FILE or _POD_IP:
    socket.getaddrinfo = _getaddrinfo
    socket.gethostbyname = _gethostbyname
    socket.gethostbyname_ex = _gethostbyname_ex
    socket.socket.bind = _bind  # type: ignore[method-assign]


def _install_pathmap() -> None:
    """Python file access under a mountPath goes to the volume (see pathmap.py, next to this file).

    Loaded by file location, not by name, so a user's module called `pathmap` is never shadowed.
    """
    try:
        import importlib.util

        here = os.path.dirname(os.path.abspath(__file__))
        spec = importlib.util.spec_from_file_location("_modelops_pathmap", os.path.join(here, "pathmap.py"))
        if spec is None or spec.loader is None:
            return
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.install()
    except Exception:  # never break the container's program
        return


if os.environ.get("MODELOPS_LOCAL_MOUNTS", "{}") not in ("", "{}"):
    _install_pathmap()
