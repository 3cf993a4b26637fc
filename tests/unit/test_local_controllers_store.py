"""The controllers' cache must not let a sync act twice on its own writes (upstream: expectations)."""

from __future__ import annotations

import pytest

from modelops_local.client import Client, KubeConfig
from modelops_local.controllers.actions import PODS
from modelops_local.controllers.store import Store


def pod(name: str, rv: int, uid: str | None = None, **meta: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid or name, "resourceVersion": str(rv), **meta}
    }


def store() -> Store:
    s = Store(Client(KubeConfig(server="http://127.0.0.1:1")))
    s.watch(PODS)
    return s


def test_created_object_is_visible_before_its_watch_event() -> None:
    s = store()
    s.wrote(PODS, pod("a", 5))
    assert [p["metadata"]["name"] for p in s.list(PODS, "ns")] == ["a"]  # type: ignore[index]
    assert s.get(PODS, "ns", "a") is not None


def test_newer_own_write_wins_over_an_older_cached_version() -> None:
    s = store()
    s.informers[PODS].cache[("ns", "a")] = pod("a", 5)
    s.wrote(PODS, pod("a", 7, deletionTimestamp="now"))
    assert s.get(PODS, "ns", "a")["metadata"]["resourceVersion"] == "7"  # type: ignore[index]
    # The watch catches up: the overlay is dropped, the cache answers again.
    s.informers[PODS].cache[("ns", "a")] = pod("a", 8)
    s._on_event(PODS, "MODIFIED", pod("a", 8))
    assert s.get(PODS, "ns", "a")["metadata"]["resourceVersion"] == "8"  # type: ignore[index]


def test_deleted_object_stays_gone_until_its_deleted_event() -> None:
    s = store()
    s.informers[PODS].cache[("ns", "a")] = pod("a", 5)
    s.deleted("a")
    assert s.list(PODS) == [] and s.get(PODS, "ns", "a") is None
    # Once the watch shows it terminating, that accurate view is visible again.
    s.informers[PODS].cache[("ns", "a")] = pod("a", 6, deletionTimestamp="2026-01-01T00:00:00Z")
    assert s.get(PODS, "ns", "a") is not None
    # A recreated object of the same name has another uid and is visible.
    s.informers[PODS].cache[("ns", "a")] = pod("a", 9, uid="a2")
    assert s.get(PODS, "ns", "a") is not None


def test_listeners_are_woken_by_their_kinds_only() -> None:
    s = store()
    woken: list[str] = []
    s.subscribe(frozenset({PODS}), lambda: woken.append("pods"))
    s._on_event(PODS, "ADDED", pod("a", 1))
    assert woken == ["pods"]


def test_a_dead_watch_is_restarted_and_the_old_view_kept_until_the_new_one_has_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from modelops_local.controllers import store as store_module

    made: list[FakeInformer] = []

    class FakeInformer:
        """Fault injection: the first watch dies at once, the next one lists one pod."""

        def __init__(self, *args: object, handler: object = None, **kwargs: object) -> None:
            self.cache: dict[tuple[str, str], dict[str, object]] = {}
            self.synced = asyncio.Event()
            self.task: asyncio.Task[None] | None = None
            made.append(self)

        async def _run(self) -> None:
            if len(made) == 1:
                raise RuntimeError("500 InternalError")
            self.cache[("ns", "fresh")] = pod("fresh", 2)
            self.synced.set()
            await asyncio.sleep(3600)

        def start(self) -> asyncio.Task[None]:
            if self.task is None:
                self.task = asyncio.ensure_future(self._run())
            return self.task

        async def stop(self) -> None:
            if self.task is not None:
                self.task.cancel()

    monkeypatch.setattr(store_module, "Informer", FakeInformer)

    async def scenario() -> None:
        s = store()
        made[0].cache[("ns", "old")] = pod("old", 1)
        woken: list[bool] = []
        s.subscribe(frozenset({PODS}), lambda: woken.append(True))
        made[0].start()
        await asyncio.sleep(0)
        assert [p["metadata"]["name"] for p in s.list(PODS)] == ["old"]  # type: ignore[index]
        supervisor = asyncio.ensure_future(s.supervise(every=0.01))
        for _ in range(100):
            if len(made) > 1 and s.informers[PODS] is made[1]:
                break
            await asyncio.sleep(0.01)
        supervisor.cancel()
        assert [p["metadata"]["name"] for p in s.list(PODS)] == ["fresh"]  # type: ignore[index]
        assert woken, "controllers are told to look again"
        await s.stop()

    asyncio.run(scenario())
