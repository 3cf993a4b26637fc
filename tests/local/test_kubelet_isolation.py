"""What the local plane keeps from other local users and from the pods, seen through kubectl and /proc.

One real plane (API server + nodes processes, as `modelops local up` starts them) run by this test's
user. Where the behaviour depends on being root (pods as their runAsUser), the test says so and is
skipped for an ordinary user: CI and this project's machines run as root, so it runs there.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_nodes import WORKER_IMAGE, Plane, start_plane, wait_for

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="pods change user only when the plane runs as root")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    directory = tmp_path_factory.mktemp("isolation")
    # What an older version left behind: a world-enterable directory with world-readable files.
    directory.chmod(0o755)
    (directory / "logs").mkdir(mode=0o755)
    for old in (directory / "audit.log", directory / "logs" / "old.log"):
        old.write_text("older plane\n")
        old.chmod(0o644)
    yield from start_plane(directory, "--nodes", "1", "--backoff-base", "1")


def pod(name: str, code: str, *, pod_sc: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": WORKER_IMAGE, "command": ["python", "-c", code]}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": pod_sc or {},
            "containers": [container],
            **spec,
        },
    }


RESTRICTED = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {b"Z", b"X"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_state_directory_and_every_file_in_it_are_the_planes_users_alone(plane: Plane) -> None:
    assert mode(plane.dir) == 0o700
    for name in ("state.db", "state.db-wal", "state.db-shm", "kubeconfig", "token", "apiserver.key",
                 "sa.key", "audit.log"):  # fmt: skip
        path = plane.dir / name
        assert path.exists(), name
        assert mode(path) == 0o600, (name, oct(mode(path)))
    for log in (plane.dir / "logs").iterdir():
        assert mode(log) == 0o600, log
    assert mode(plane.dir / "logs") == 0o700


def _secret_files(tmp: Path) -> dict[str, bytes]:
    files = {
        "random.bin": os.urandom(4096),
        "blob.gz": gzip.compress(b"".join(b"line %d\n" % i for i in range(2000))),
        "latin1.txt": b"caf\xe9 \xff\xfe not utf-8 \x80",
    }
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    return files


def test_secret_and_configmap_volumes_carry_the_exact_bytes_and_env_the_raw_value(
    plane: Plane, tmp_path: Path
) -> None:
    files = _secret_files(tmp_path)
    from_files = [f"--from-file={name}={tmp_path / name}" for name in files]
    plane.kubectl("create", "secret", "generic", "blobs", *from_files)
    plane.kubectl("create", "configmap", "blobs", *from_files)  # non-UTF-8 files go to binaryData
    code = (
        "import hashlib, os, json\n"
        "out = {}\n"
        "for d in ('/s', '/c'):\n"
        "    for n in sorted(os.listdir(d)):\n"
        "        out[os.path.basename(d) + '/' + n] = hashlib.sha256(open(os.path.join(d, n), 'rb').read()).hexdigest()\n"
        "out['env'] = os.environb[b'LATIN1'].hex()\n"
        "print(json.dumps(out))\n"
    )
    manifest = pod(
        "bytes",
        code,
        volumes=[
            {"name": "s", "secret": {"secretName": "blobs"}},
            {"name": "c", "configMap": {"name": "blobs"}},
        ],
        container={
            "volumeMounts": [{"name": "s", "mountPath": "/s"}, {"name": "c", "mountPath": "/c"}],
            "env": [
                {"name": "LATIN1", "valueFrom": {"secretKeyRef": {"name": "blobs", "key": "latin1.txt"}}}
            ],
        },
    )
    plane.apply(manifest)
    plane.wait_phase("bytes", "Succeeded")
    seen = json.loads(plane.kubectl("logs", "bytes").strip().splitlines()[-1])
    assert {k for k in seen if k != "env"} == {f"{d}/{n}" for d in ("s", "c") for n in files}, seen
    for name, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        assert seen[f"s/{name}"] == digest, name
        assert seen[f"c/{name}"] == digest, name
    assert bytes.fromhex(seen["env"]) == files["latin1.txt"]


def test_a_secret_value_with_a_nul_byte_cannot_be_an_env_var(plane: Plane, tmp_path: Path) -> None:
    (tmp_path / "nul").write_bytes(b"before\0after")
    plane.kubectl("create", "secret", "generic", "with-nul", f"--from-file=v={tmp_path / 'nul'}")
    manifest = pod(
        "nul-env",
        "print('started')",
        container={"env": [{"name": "V", "valueFrom": {"secretKeyRef": {"name": "with-nul", "key": "v"}}}]},
    )
    plane.apply(manifest)
    p = plane.wait_phase("nul-env", "Failed")
    terminated = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("StartError", 128)
    assert "setenv: invalid argument" in terminated["message"] and "'V'" in terminated["message"]


@needs_root
def test_restricted_pod_runs_as_its_user_and_its_secrets_are_closed_to_others(plane: Plane) -> None:
    # The claim's directory where the plane's provisioner puts it (the controllers are not running
    # here, so the test binds it, as they would).
    plane.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"},
         "stringData": {"tls.key": "private", "ca.crt": "public"}},
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-work"},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                  "hostPath": {"path": str(plane.dir / "volumes" / "default" / "work")}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "work"},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                  "volumeName": "pv-work"}},
    )  # fmt: skip
    plane.kubectl(
        "patch", "pvc", "work", "--subresource=status", "--type=merge", "-p", '{"status": {"phase": "Bound"}}'
    )
    code = (
        "import os, json, stat\n"
        "m = lambda p: oct(stat.S_IMODE(os.stat(p).st_mode))\n"
        "open('/scratch/a', 'w').write('x'); open('/claim/b', 'w').write('y')\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'groups': sorted(os.getgroups()),\n"
        "  'key': m('/keys/tls.key'), 'ca': m('/keys/ca.crt'), 'read': open('/keys/tls.key').read(),\n"
        "  'umask': oct(os.umask(0o22))}))\n"
    )
    manifest = pod(
        "restricted",
        code,
        pod_sc={**RESTRICTED, "supplementalGroups": [4242]},
        volumes=[
            {
                "name": "keys",
                "secret": {
                    "secretName": "keys",
                    "defaultMode": 0o400,
                    "items": [
                        {"key": "tls.key", "path": "tls.key"},
                        {"key": "ca.crt", "path": "ca.crt", "mode": 0o644},
                    ],
                },
            },
            {"name": "scratch", "emptyDir": {}},
            {"name": "claim", "persistentVolumeClaim": {"claimName": "work"}},
        ],
        container={
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [
                {"name": "keys", "mountPath": "/keys"},
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "claim", "mountPath": "/claim"},
            ],
        },
    )
    plane.apply(manifest)
    plane.wait_phase("restricted", "Succeeded", timeout=60)
    seen = json.loads(plane.kubectl("logs", "restricted").strip().splitlines()[-1])
    assert (seen["uid"], seen["gid"]) == (65532, 65532)
    assert 4242 in seen["groups"]
    assert seen["key"] == "0o440"  # defaultMode 0400 plus the fsGroup's read bit, as the kubelet
    assert seen["ca"] == "0o644"
    assert seen["read"] == "private"
    assert seen["umask"] == "0o22"  # a runtime's default, not the plane's own 077

    pod_dir = plane.pod_dir("restricted").resolve()
    st = pod_dir.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 0, 65532)
    key = pod_dir / "volumes" / "keys" / "tls.key"
    assert key.stat().st_gid == 65532
    assert not key.stat().st_mode & 0o007
    for path in (pod_dir, pod_dir / "volumes" / "keys", pod_dir / "volumes" / "scratch"):
        assert not path.stat().st_mode & 0o006, path  # others can neither list nor read
    # What the pod wrote belongs to its user.
    assert (pod_dir / "volumes" / "scratch" / "a").stat().st_uid == 65532
    assert (plane.dir / "volumes" / "default" / "work" / "b").stat().st_uid == 65532


def test_run_as_non_root_without_a_user_is_refused_like_the_kubelet(plane: Plane) -> None:
    plane.apply(pod("rootish", "print('should not run')", pod_sc={"runAsNonRoot": True}))
    p = plane.pod("rootish")
    assert p is not None
    uid = p["metadata"]["uid"]
    if not ROOT:
        plane.wait_phase("rootish", "Succeeded")  # an ordinary user's plane runs it as that user
        return
    p = plane.wait_pod(
        "rootish",
        lambda p: "waiting" in p["status"].get("containerStatuses", [{}])[0].get("state", {}),
        "a waiting container",
    )
    waiting = p["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError"
    assert waiting["message"] == (
        f'container has runAsNonRoot and image will run as root (pod: "rootish_default({uid})", container: main)'
    )
    plane.kubectl("delete", "pod", "rootish", "--wait=false")


ESCAPER = (
    # The container's main process starts a child in a new session (as torchrun starts its workers);
    # that child forks a grandchild, exits, and the grandchild ignores SIGTERM and holds memory.
    "import os, subprocess, sys, time\n"
    "code = ('import os, signal, sys, time\\n'\n"
    "        'signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n'\n"
    "        'if os.fork(): os._exit(0)\\n'\n"
    "        'hog = bytearray(int(sys.argv[1]) * 2**20)\\n'\n"
    '        \'open("/work/pid", "w").write(str(os.getpid()))\\n\'\n'
    "        'time.sleep(600)\\n')\n"
    "subprocess.Popen([sys.executable, '-c', code, os.environ['HOG_MIB']], start_new_session=True)\n"
    "print('started', flush=True)\n"
    "time.sleep(600)\n"
)


def escaper(name: str, hog_mib: int, limit: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "env": [{"name": "HOG_MIB", "value": str(hog_mib)}],
        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
    }
    if limit:
        container["resources"] = {"limits": {"memory": limit}}
    return pod(
        name,
        ESCAPER,
        terminationGracePeriodSeconds=2,
        volumes=[{"name": "work", "emptyDir": {}}],
        container=container,
    )


def _grandchild(plane: Plane, name: str) -> int:
    pid_file = wait_for(
        f"{name}'s grandchild to start",
        lambda: next(
            (p for p in plane.dir.glob(f"pods/default/{name}/*/volumes/work/pid") if p.read_text()), None
        ),
        timeout=60,
    )
    return int(pid_file.read_text())


def _deleting_the_pod_ends_the_grandchild(plane: Plane, name: str) -> None:
    plane.apply(escaper(name, hog_mib=1))
    grandchild = _grandchild(plane, name)
    assert alive(grandchild)
    with open(f"/proc/{grandchild}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    main_pid = int((plane.pod_dir(name) / "main" / "pid").read_text())
    assert int(fields[3]) != main_pid  # another session: killing the group alone would miss it
    plane.kubectl("delete", "pod", name, "--wait=true", "--timeout=60s")
    wait_for("the grandchild to be gone", lambda: not alive(grandchild), timeout=10)


def _the_grandchilds_memory_counts(plane: Plane, name: str) -> None:
    # The main process stays far below the limit; only the grandchild's 300 MiB put it over.
    plane.apply(escaper(name, hog_mib=300, limit="150Mi"))
    p = plane.wait_phase(name, "Failed", timeout=90)
    terminated = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    grandchild = int(next(plane.dir.glob(f"pods/default/{name}/*/volumes/work/pid")).read_text())
    wait_for("the grandchild to be killed with the container", lambda: not alive(grandchild), timeout=10)
    plane.kubectl("delete", "pod", name, "--wait=false")


def test_deleting_a_pod_ends_a_grandchild_in_another_session_that_ignores_sigterm(plane: Plane) -> None:
    _deleting_the_pod_ends_the_grandchild(plane, "escaper")


def test_a_grandchilds_memory_counts_against_the_containers_limit(plane: Plane) -> None:
    _the_grandchilds_memory_counts(plane, "hog")


def test_a_pod_deleted_while_the_kubelet_was_down_leaves_nothing_running(plane: Plane) -> None:
    plane.apply(escaper("orphaned", hog_mib=1))
    grandchild = _grandchild(plane, "orphaned")
    plane.procs.pop("nodes").kill()  # no chance to clean up
    plane.kubectl("delete", "pod", "orphaned", "--grace-period=0", "--force")
    assert alive(grandchild)
    plane.start_nodes()
    wait_for("the new kubelet to kill what the deleted pod left", lambda: not alive(grandchild), timeout=60)


def test_without_cgroups_the_proc_fallback_finds_the_grandchild(plane: Plane) -> None:
    """Where no cgroup v2 can be made (an ordinary user without delegation), /proc tracking does it."""
    plane.stop("nodes")
    os.environ["MODELOPS_LOCAL_NO_CGROUPS"] = "1"
    try:
        plane.start_nodes()
        wait_for("the fallback to be in use", lambda: "tracked by /proc" in plane.logs(), timeout=60)
        _deleting_the_pod_ends_the_grandchild(plane, "escaper-proc")
        _the_grandchilds_memory_counts(plane, "hog-proc")
    finally:
        del os.environ["MODELOPS_LOCAL_NO_CGROUPS"]
        plane.stop("nodes")
        plane.start_nodes()
        time.sleep(1)


TORCHRUN_SCRIPT = (
    "import os, time\n"
    "open(os.path.join('/work', 'rank-' + os.environ['RANK']), 'w').write(str(os.getpid()))\n"
    "time.sleep(600)\n"
)


def test_a_deleted_torchrun_pod_leaves_no_trainer_behind(plane: Plane) -> None:
    code = (
        "import pathlib, subprocess, sys\n"
        f"pathlib.Path('/work/train.py').write_text({TORCHRUN_SCRIPT!r})\n"
        "sys.exit(subprocess.call([sys.executable, '-m', 'torch.distributed.run', '--standalone',\n"
        "                          '--nproc-per-node', '2', '/work/train.py']))\n"
    )
    plane.apply(
        pod(
            "torchrun",
            code,
            terminationGracePeriodSeconds=2,
            volumes=[{"name": "work", "emptyDir": {}}],
            container={"volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        )
    )

    def both() -> list[Path] | None:
        found = sorted(plane.dir.glob("pods/default/torchrun/*/volumes/work/rank-*"))
        return found if len(found) == 2 and all(p.read_text() for p in found) else None

    ranks = wait_for("both torchrun workers", both, timeout=120)
    workers = [int(p.read_text()) for p in ranks]
    assert all(alive(pid) for pid in workers)
    plane.kubectl("delete", "pod", "torchrun", "--wait=true", "--timeout=60s")
    wait_for("every trainer to be gone", lambda: not any(alive(pid) for pid in workers), timeout=10)
