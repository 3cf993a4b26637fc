"""The local plane's VolumeSnapshots: the CRDs it accepts, and the copy that stands in for a CSI snapshot."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from modelops_local.controllers import snapshots as s
from modelops_local.controllers.actions import Event, Status
from modelops_local.schema import check_structural, validate_builtin, validate_custom_resource

AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def snapshot_schema() -> dict[str, Any]:
    crd = next(c for c in s.crds() if c["spec"]["names"]["kind"] == "VolumeSnapshot")
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_the_crds_are_valid_structural_and_accept_what_the_operator_creates() -> None:
    for crd in s.crds():
        assert validate_builtin(crd) == []
        assert check_structural(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]) == []
    good = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": {"source": {"persistentVolumeClaimName": "c"}, "volumeSnapshotClassName": "k"},
    }
    assert validate_custom_resource(snapshot_schema(), good).errors == []
    both = {**good, "spec": {"source": {"persistentVolumeClaimName": "c", "volumeSnapshotContentName": "v"}}}
    errors = [str(e) for e in validate_custom_resource(snapshot_schema(), both).errors]
    assert any("exactly one" in e for e in errors), errors


def claim(name: str, phase: str = "Bound") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {"volumeName": f"pv-{name}", "resources": {"requests": {"storage": "2Gi"}}},
        "status": {"phase": phase, "capacity": {"storage": "2Gi"}},
    }


def pv(name: str, path: Path) -> dict[str, Any]:
    return {"metadata": {"name": f"pv-{name}"}, "spec": {"hostPath": {"path": str(path)}}}


def snap(source: str, uid: str = "s1", status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "snap", "namespace": "ns", "uid": uid},
        "spec": {"source": {"persistentVolumeClaimName": source}},
        "status": status or {},
    }


def test_a_snapshot_copies_the_claim_and_becomes_ready(tmp_path: Path) -> None:
    data = tmp_path / "claim"
    (data / "ckpt-1").mkdir(parents=True)
    (data / "ckpt-1" / "state.pt").write_bytes(b"weights")
    root = str(tmp_path / "plane")
    result, source = s.plan(snap("c"), [claim("c")], [pv("c", data)], AT)
    assert source == str(data) and result.actions == []
    s.take(source, root, snap("c"))
    copy = Path(s.snapshot_dir(root, "ns", "s1"))
    assert (copy / "ckpt-1" / "state.pt").read_bytes() == b"weights"
    status = s.ready_status(snap("c"), s.claim_size(snap("c"), [claim("c")]), AT)
    assert status.status["readyToUse"] is True and status.status["restoreSize"] == "2Gi"
    # Ready snapshots are left alone; the copy is what later claims start from.
    ready = snap("c", status=status.status)
    assert s.plan(ready, [claim("c")], [pv("c", data)], AT) == (s.Result(), None)
    restored = {"metadata": {"namespace": "ns"}, "spec": {"dataSource": {
        "apiGroup": s.GROUP, "kind": "VolumeSnapshot", "name": "snap"}}}  # fmt: skip
    assert s.is_snapshot_source(restored)
    assert s.restore_source(restored, [ready], root) == (str(copy), None)
    # Deleting the snapshot orphans its copy, which is then removed.
    assert s.orphans(root, [ready]) == []
    assert s.orphans(root, []) == [str(copy)]


@pytest.mark.parametrize(
    ("claims", "why"),
    [([], "does not exist"), ([claim("c", phase="Pending")], "to be bound")],
)
def test_a_snapshot_of_a_missing_or_unbound_claim_says_why(claims: list[dict[str, Any]], why: str) -> None:
    result, source = s.plan(snap("c"), claims, [], AT)
    assert source is None and result.requeue_after is not None
    status = next(a for a in result.actions if isinstance(a, Status))
    assert status.status["readyToUse"] is False and why in status.status["error"]["message"]
    assert any(isinstance(a, Event) and a.type == "Warning" for a in result.actions)


def test_a_claim_waits_for_its_snapshot_to_be_ready(tmp_path: Path) -> None:
    restored = {"metadata": {"namespace": "ns"}, "spec": {"dataSource": {
        "apiGroup": s.GROUP, "kind": "VolumeSnapshot", "name": "snap"}}}  # fmt: skip
    src, why = s.restore_source(restored, [snap("c")], str(tmp_path))
    assert src is None and why is not None and "ready to use" in why
    src, why = s.restore_source(restored, [], str(tmp_path))
    assert src is None and why is not None and "CRDs" in why


def test_the_store_keeps_supervising_a_kind_that_is_not_served_yet() -> None:
    """VolumeSnapshots are served only once their CRDs are applied, after `local up`: the supervisor
    must retry the kind until then (a failed retry used to end it), then watch it."""
    import asyncio

    from modelops_local.client import ApiError, Client, KubeConfig
    from modelops_local.controllers.store import Store

    served = {"now": False}
    attempts: list[bool] = []

    class FakeInformer:
        def __init__(self) -> None:
            self.synced = asyncio.Event()
            self.cache: dict[Any, Any] = {}
            self.task: asyncio.Task[None] | None = None

        async def run(self) -> None:
            attempts.append(served["now"])
            if not served["now"]:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            self.synced.set()
            await asyncio.sleep(3600)

        def start(self) -> asyncio.Task[None]:
            if self.task is None:
                self.task = asyncio.ensure_future(self.run())
            return self.task

        async def stop(self) -> None:
            assert self.task is not None
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task  # re-raises the 404 of a failed list, as the real Informer does

    async def go() -> set[Any]:
        store = Store(Client(KubeConfig(server="http://127.0.0.1:1")))
        store._informer = lambda kind: FakeInformer()  # type: ignore[method-assign,assignment,return-value]
        store.watch(s.VOLUMESNAPSHOTS)
        await store.start()
        assert s.VOLUMESNAPSHOTS in store.unavailable
        supervisor = asyncio.ensure_future(store.supervise(every=0.01, sync_timeout=1.0))
        await asyncio.sleep(0.1)
        assert not supervisor.done(), supervisor.exception()
        served["now"] = True
        for _ in range(100):
            if s.VOLUMESNAPSHOTS not in store.unavailable:
                break
            await asyncio.sleep(0.02)
        supervisor.cancel()
        for informer in store.informers.values():
            await informer.stop()
        return set(store.unavailable)

    assert asyncio.run(go()) == set()
    assert attempts[0] is False and attempts[-1] is True and len(attempts) > 2
