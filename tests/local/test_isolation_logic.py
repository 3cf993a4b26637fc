"""The pure decisions behind the local plane's isolation: identities, file modes, process trees, restarts.

No processes are started here; `test_kubelet_isolation.py` checks the same behaviour on a real plane.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from modelops_local.nodes import identity, proctree
from modelops_local.supervisor import BACKOFF_MAX, STABLE_AFTER, describe_exit, next_backoff


def _pod(pod_sc: dict[str, Any] | None = None, **container_sc: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "ghcr.io/modelops/worker:1"}
    if container_sc:
        container["securityContext"] = container_sc
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": {"securityContext": pod_sc or {}, "containers": [container]},
    }


def _main(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_run_as_non_root_without_a_user_is_refused_with_the_kubelets_words_on_a_root_plane() -> None:
    pod = _pod({"runAsNonRoot": True})
    assert identity.verify_run_as_non_root(pod, _main(pod), image_uid=0) == (
        'container has runAsNonRoot and image will run as root (pod: "p_ns(u-1)", container: main)'
    )
    # A plane run by an ordinary user runs the image as that user: non-root, so it may start.
    assert identity.verify_run_as_non_root(pod, _main(pod), image_uid=1000) is None


def test_run_as_user_zero_breaks_the_policy_and_a_container_setting_wins_over_the_pod() -> None:
    pod = _pod({"runAsNonRoot": True, "runAsUser": 65532}, runAsUser=0)
    assert identity.verify_run_as_non_root(pod, _main(pod), image_uid=0) == (
        'container\'s runAsUser breaks non-root policy (pod: "p_ns(u-1)", container: main)'
    )
    allowed = _pod({"runAsNonRoot": True, "runAsUser": 65532})
    assert identity.verify_run_as_non_root(allowed, _main(allowed), image_uid=0) is None
    off = _pod({"runAsNonRoot": True}, runAsNonRoot=False)
    assert identity.verify_run_as_non_root(off, _main(off), image_uid=0) is None


def test_identity_of_the_operators_restricted_pods() -> None:
    pod = _pod(
        {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
         "supplementalGroups": [2000]},
        allowPrivilegeEscalation=False,
    )  # fmt: skip
    who = identity.container_identity(pod, _main(pod), plane_uid=0, plane_gid=0)
    assert who == identity.Identity(uid=65532, gid=65532, groups=(2000,), no_new_privs=True)
    assert who.setpriv_args() == [
        "--reuid", "65532", "--regid", "65532", "--groups", "2000", "--no-new-privs",
    ]  # fmt: skip


def test_identity_defaults_a_user_without_group_to_group_0_and_adds_the_pod_group() -> None:
    pod = _pod({"fsGroup": 3000}, runAsUser=1234)
    who = identity.container_identity(pod, _main(pod), plane_uid=0, plane_gid=0)
    assert (who.uid, who.gid, who.groups) == (1234, 0, (3000,))
    assert identity.pod_group(pod, plane_gid=0) == 3000
    plain = _pod()
    assert identity.container_identity(plain, _main(plain), 0, 0).setpriv_args()[-1] == "--clear-groups"


@pytest.mark.parametrize(
    ("mode", "default", "fs_group", "expected"),
    [
        (None, None, False, 0o644),  # Kubernetes' default
        (None, 0o400, False, 0o400),  # defaultMode
        (0o600, 0o400, False, 0o600),  # items[].mode wins
        (None, 0o400, True, 0o440),  # fsGroup: the kubelet adds group read
        (0o4755, None, False, 0o755),  # no set-id bits on projected files
    ],
)
def test_projected_file_modes(mode: int | None, default: int | None, fs_group: bool, expected: int) -> None:
    assert identity.projected_mode(mode, default, fs_group) == expected


def test_descendants_follow_parent_links_at_any_depth() -> None:
    table = {10: 1, 11: 10, 12: 11, 13: 12, 20: 1, 21: 20}
    assert proctree.descendants(10, table) == {11, 12, 13}
    assert proctree.descendants(13, table) == set()


def test_supervisor_backoff_doubles_caps_and_resets_after_a_stable_run() -> None:
    delays = []
    delay = 0.0
    for _ in range(8):
        delay = next_backoff(delay, ran_for=2.0)
        delays.append(delay)
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert delays[-1] == BACKOFF_MAX
    assert next_backoff(BACKOFF_MAX, ran_for=STABLE_AFTER + 1) == 1.0


def test_exit_descriptions() -> None:
    assert describe_exit(-signal.SIGKILL) == "killed by signal 9 (SIGKILL)"
    assert describe_exit(3) == "exit code 3"


def test_secure_tightens_what_an_older_plane_left_readable(tmp_path: Path) -> None:
    import os
    import stat

    from modelops_local import statedir

    plane = tmp_path / "plane"
    (plane / "logs").mkdir(parents=True)
    plane.chmod(0o755)
    for path in (plane / "state.db", plane / "state.db-wal", plane / "logs" / "nodes.log"):
        path.write_text("x")
        path.chmod(0o644)
    (plane / "pods").mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        statedir.secure(plane)
        assert os.umask(0o022) == statedir.UMASK  # and whatever it writes next is private
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [plane, *plane.rglob("*")]}
    assert modes == {"plane": 0o700, "logs": 0o700, "state.db": 0o600, "state.db-wal": 0o600,
                     "nodes.log": 0o600, "pods": 0o700}  # fmt: skip


def test_traversable_opens_only_the_way_down_from_the_top(tmp_path: Path) -> None:
    import stat

    from modelops_local import statedir

    top = tmp_path / "root"
    leaf = top / "pods" / "ns" / "name" / "uid"
    leaf.mkdir(parents=True, mode=0o700)
    above = stat.S_IMODE(tmp_path.stat().st_mode)
    for p in (top, top / "pods", top / "pods" / "ns", top / "pods" / "ns" / "name", leaf):
        p.chmod(0o700)
    statedir.traversable(leaf, top)
    assert stat.S_IMODE((top / "pods" / "ns" / "name").stat().st_mode) == 0o711
    assert stat.S_IMODE(leaf.stat().st_mode) == 0o700  # the pod's own directory stays closed
    assert stat.S_IMODE(tmp_path.stat().st_mode) == above  # nothing above the top changes


def test_the_pods_trees_of_removed_planes_are_pruned(tmp_path: Path) -> None:
    from modelops_local import statedir

    base = tmp_path / "runtime"
    for name, owner in (("gone", tmp_path / "deleted-plane"), ("kept", tmp_path)):
        (base / name / "pods").mkdir(parents=True)
        (base / name / "plane").write_text(str(owner))
    statedir._prune(base)
    assert sorted(p.name for p in base.iterdir()) == ["kept"]
