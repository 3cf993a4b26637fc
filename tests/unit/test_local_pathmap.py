"""Mount paths for local pods' Python processes: in-cluster login finds its token and CA where it expects them.

The redirection is tested in a real child interpreter, loaded the way the kubelet loads it (a
`sitecustomize` on PYTHONPATH that calls `pathmap.install()`), against the real local API server over
TLS: the kubernetes client's in-cluster loader must log in with the token and CA "mounted" at
/var/run/secrets/kubernetes.io/serviceaccount.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from modelops_local.sitecustomize import pathmap


def write_volume(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """A projected volume laid out as the kubelet's atomic writer does: files behind a `..data` link."""
    stamp = target / "..2026_11_25_10_00_00.000000001"
    stamp.mkdir(parents=True)
    for name, (content, mode) in files.items():
        (stamp / name).write_bytes(content)
        (stamp / name).chmod(mode)
    (target / "..data").symlink_to(stamp.name)
    for name in files:
        (target / name).symlink_to(f"..data/{name}")


def in_cluster_env(apiserver_url: str) -> dict[str, str]:
    """The variables the local kubelet gives every container: the API server's own listener."""
    parts = urlsplit(apiserver_url)
    return {
        "KUBERNETES_SERVICE_HOST": parts.hostname or "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(parts.port),
    }


def mounts_env(mounts: dict[str, Path]) -> dict[str, str]:
    return {"MODELOPS_LOCAL_MOUNTS": json.dumps({k: str(v) for k, v in mounts.items()})}


SITE_DIR = Path(pathmap.__file__).parent
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def run_apiserver(directory: Path) -> Iterator[dict[str, str]]:
    """Run a real local API server (TLS, bearer token) in `directory`; yields url, token and CA PEM."""
    log = open(directory / "apiserver.log", "wb")  # noqa: SIM115 - closed after the process ends
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelops_local.apiserver", "--dir", str(directory), "--port", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (directory / "kubeconfig").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"API server did not start: {(directory / 'apiserver.log').read_text()[-2000:]}")
            time.sleep(0.05)
        config = yaml.safe_load((directory / "kubeconfig").read_text())
        yield {
            "url": config["clusters"][0]["cluster"]["server"],
            "token": config["users"][0]["user"]["token"],
            "ca": (directory / "ca.crt").read_text(),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from run_apiserver(tmp_path_factory.mktemp("plane"))


CHILD = textwrap.dedent(
    """
    import json, os, pathlib, ssl, urllib.request
    from kubernetes import client, config

    MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
    out = {}
    try:
        config.load_incluster_config()
        names = [n.metadata.name for n in client.CoreV1Api().list_namespace().items]
        out["namespaces"] = names
    except Exception as exc:
        out["login_error"] = f"{type(exc).__name__}: {exc}"
    # kopf's way: an SSLContext from the CA *file* (opened by OpenSSL, not by Python's open).
    try:
        ctx = ssl.create_default_context(cafile=MOUNT + "/ca.crt")
        token = pathlib.Path(MOUNT, "token").read_text()
        req = urllib.request.Request(os.environ["API_URL"] + "/api/v1/namespaces/default")
        req.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            out["kopf_style"] = json.load(resp)["metadata"]["name"]
    except Exception as exc:
        out["kopf_error"] = f"{type(exc).__name__}: {exc}"
    out["namespace_file"] = open(MOUNT + "/namespace").read()
    out["exists"] = [os.path.exists(MOUNT), os.path.isdir(MOUNT), os.path.isfile(MOUNT + "/token"),
                     os.path.isfile(MOUNT + "/missing"), os.access(MOUNT + "/token", os.R_OK)]
    out["listdir"] = sorted(n for n in os.listdir(MOUNT) if not n.startswith(".."))
    out["iterdir"] = sorted(str(p) for p in pathlib.Path(MOUNT).iterdir() if not p.name.startswith(".."))
    with os.scandir(MOUNT) as it:
        out["scandir"] = sorted(e.path for e in it if e.name == "token")
    fd = os.open(MOUNT + "/namespace", os.O_RDONLY)
    out["os_open"] = os.read(fd, 100).decode()
    os.close(fd)
    out["bytes_path"] = open(MOUNT.encode() + b"/namespace", "rb").read().decode()
    out["dotdot"] = open(MOUNT + "/../serviceaccount/namespace").read()
    out["realpath"] = [os.path.realpath(MOUNT + "/token"), str(pathlib.Path(MOUNT, "token").resolve())]
    # A writable mount: create, rename, walk, remove, all through the mountPath.
    os.makedirs("/data/run/a", exist_ok=True)
    pathlib.Path("/data/run/a/x.txt").write_text("hello")
    os.replace("/data/run/a/x.txt", "/data/run/a/y.txt")
    out["walk"] = [(d, sorted(f)) for d, _, f in os.walk("/data/run")]
    out["stat_size"] = os.stat("/data/run/a/y.txt").st_size
    out["prefix_boundary"] = os.path.exists("/database")
    os.remove("/data/run/a/y.txt")
    # A volume at /tmp while the plane's own directory is under /tmp too (pytest's tmp_path, or a
    # user's `--dir /tmp/plane`): /tmp/x is the pod's, but already-translated volume paths and the
    # kubelet's files are host paths and stay put.
    pathlib.Path("/tmp/pod-scratch").write_text("mine")
    out["tmp_volume"] = sorted(os.listdir("/tmp"))
    out["host_token_direct"] = open(os.environ["TOKEN_HOST_PATH"]).read() != ""
    out["hosts_file"] = open(os.environ["MODELOPS_LOCAL_HOSTS"]).read()
    print(json.dumps(out))
    """
)


def run_child(site: Path, env: dict[str, str]) -> dict[str, Any]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    full.update(env)
    full["PYTHONPATH"] = os.pathsep.join([str(site), str(SITE_DIR)])
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=full, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A sitecustomize like the kubelet's: it imports pathmap from its own directory and installs it."""
    d = tmp_path / "site"
    d.mkdir()
    (d / "sitecustomize.py").write_text("import pathmap\npathmap.install()\n")
    return d


def test_in_cluster_login_reads_the_token_and_ca_from_the_mount_path(
    apiserver: dict[str, str], site: Path, tmp_path: Path
) -> None:
    volume = tmp_path / "pod" / "volumes" / "kube-api-access-abcde"
    write_volume(
        volume,
        {
            "token": (apiserver["token"].encode(), 0o644),
            "ca.crt": (apiserver["ca"].encode(), 0o644),
            "namespace": (b"modelops-system", 0o644),
        },
    )
    data = tmp_path / "pvc"
    data.mkdir()
    scratch = tmp_path / "pod" / "volumes" / "tmp"
    scratch.mkdir()
    (tmp_path / "hosts").write_text("127.96.0.9 web.ml.svc.cluster.local\n")
    assert str(tmp_path).startswith("/tmp/")
    env = {**in_cluster_env(apiserver["url"]), "API_URL": apiserver["url"]}
    env.update(mounts_env({MOUNT: volume, "/data": data, "/tmp": scratch}))
    env.update(MODELOPS_LOCAL_HOSTS=str(tmp_path / "hosts"), TOKEN_HOST_PATH=str(volume / "token"))

    out = run_child(site, env)

    assert "login_error" not in out, out.get("login_error")
    assert "default" in out["namespaces"]
    assert out.get("kopf_style") == "default", out.get("kopf_error")
    assert out["namespace_file"] == "modelops-system"
    assert out["exists"] == [True, True, True, False, True]
    assert out["listdir"] == ["ca.crt", "namespace", "token"]
    assert out["iterdir"] == [f"{MOUNT}/ca.crt", f"{MOUNT}/namespace", f"{MOUNT}/token"]
    assert out["scandir"] == [f"{MOUNT}/token"]  # the caller's path, not the host's
    assert out["os_open"] == out["bytes_path"] == out["dotdot"] == "modelops-system"
    # Not resolved through the host's /var/run -> /run symlink (or the volume's own ..data links).
    assert out["realpath"] == [f"{MOUNT}/token", f"{MOUNT}/token"]
    assert out["walk"] == [["/data/run", []], ["/data/run/a", ["y.txt"]]]
    assert out["stat_size"] == 5
    assert out["prefix_boundary"] is False
    # The writes landed in the host directory behind /data.
    assert (data / "run" / "a").is_dir() and not (data / "run" / "a" / "y.txt").exists()
    assert out["tmp_volume"] == ["pod-scratch"] and (scratch / "pod-scratch").read_text() == "mine"
    assert out["host_token_direct"] is True
    assert out["hosts_file"].startswith("127.96.0.9 ")


def test_without_mounts_nothing_is_redirected_and_in_cluster_login_fails(
    apiserver: dict[str, str], site: Path
) -> None:
    env = {
        **in_cluster_env(apiserver["url"]),
        "API_URL": apiserver["url"],
        "MODELOPS_LOCAL_MOUNTS": "not json",
    }
    full = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    full.update(env)
    full["PYTHONPATH"] = os.pathsep.join([str(site), str(SITE_DIR)])
    script = (
        "import builtins, io, pathmap\n"
        "from kubernetes import config\n"
        "assert builtins.open is io.open and not pathmap._mounts\n"
        "try:\n    config.load_incluster_config()\nexcept Exception as e:\n    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=full, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Service token file does not exist" in done.stdout


def test_longest_mount_path_wins_at_path_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    mounts = pathmap.parse_mounts(
        json.dumps(
            {"/data": "/host/d", "/data/models": "/host/m", "/": "/host/root", "relative": "/x", "/y": "z"}
        )
    )
    assert mounts == [("/data/models", "/host/m"), ("/data", "/host/d")]
    monkeypatch.setattr(pathmap, "_mounts", mounts)
    t = pathmap.translate
    assert t("/data/models/a.pt") == "/host/m/a.pt"
    assert t("/data/x") == "/host/d/x"
    assert t("/data") == "/host/d"
    assert t("/data/") == "/host/d"
    assert t("/database") == "/database"
    assert t("/data/models/../other") == "/host/d/other"
    assert t("//data//models") == "/host/m"
    assert t(b"/data/x") == b"/host/d/x"
    assert t(Path("/data/x")) == "/host/d/x"
    assert t("data/x") == "data/x"
    assert t(3) == 3
    assert t(object()) is not None  # unknown types pass through untouched, never raise


def test_host_paths_under_a_mount_path_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    mounts = pathmap.parse_mounts(json.dumps({"/tmp": "/tmp/plane/pods/p/volumes/tmp", "/data": "/srv/d"}))
    env = {"MODELOPS_LOCAL_HOSTS": "/tmp/plane/hosts", "MODELOPS_LOCAL_PASSTHROUGH": "/tmp/cache:/opt/x"}
    prefixes = pathmap.passthrough_prefixes(env, mounts)
    assert {"/tmp/plane", "/tmp/plane/pods/p/volumes/tmp", "/srv/d", "/tmp/cache"} <= set(prefixes)
    table: list[tuple[str, str | None]] = [*mounts, *((p, None) for p in prefixes)]
    monkeypatch.setattr(pathmap, "_mounts", sorted(table, key=lambda p: len(p[0]), reverse=True))
    t = pathmap.translate
    assert t("/tmp/x") == "/tmp/plane/pods/p/volumes/tmp/x"
    assert t("/tmp/plane/hosts") == "/tmp/plane/hosts"
    assert t("/tmp/plane/pods/p/volumes/tmp/x") == "/tmp/plane/pods/p/volumes/tmp/x"  # not twice
    assert t("/tmp/cache/model.bin") == "/tmp/cache/model.bin"
    assert t("/tmp/plane2/x") == "/tmp/plane/pods/p/volumes/tmp/plane2/x"


def test_malformed_configuration_gives_no_mounts_and_install_never_raises() -> None:
    for text in ("", "not json", "[1, 2]", json.dumps({"/a": 1})):
        assert pathmap.parse_mounts(text) == []
        assert pathmap.install({"MODELOPS_LOCAL_MOUNTS": text}) is False
