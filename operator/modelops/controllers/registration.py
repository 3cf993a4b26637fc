"""The registration every kind's controller shares: one reconcile on change, one sync timer.

A kind's reconcile runs on create, update and resume (handler id "reconcile"), and again every
`interval` seconds (handler id "sync") for what changes without any change to the object: pods,
metrics, other objects. A new generation is the change handler's (two writers of one transition would
post its event twice), so the timer waits until that generation has been observed. The ids are part
of what kopf records on objects; they must not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import kopf

from modelops import GROUP, VERSION


class Run(Protocol):
    def __call__(self, *, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int) -> None: ...


def reconcile_and_sync(
    registry: kopf.OperatorRegistry,
    plural: str,
    run: Run,
    *,
    interval: float,
    has_work: Callable[[kopf.Body], bool] | None = None,
) -> None:
    """Register `run` as the kind's change handler and its sync timer (skipped when `has_work` says no)."""

    @kopf.on.resume(GROUP, VERSION, plural, registry=registry, id="reconcile")
    @kopf.on.update(GROUP, VERSION, plural, registry=registry, id="reconcile")
    @kopf.on.create(GROUP, VERSION, plural, registry=registry, id="reconcile")
    def _reconcile(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int, **_: Any) -> None:
        run(body=body, patch=patch, logger=logger, retry=retry)

    @kopf.timer(
        GROUP, VERSION, plural, registry=registry, id="sync", interval=interval, initial_delay=interval
    )
    def _sync(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int = 0, **_: Any) -> None:
        if (body.get("status") or {}).get("observedGeneration") != body.metadata.get("generation"):
            return
        if has_work is not None and not has_work(body):
            return
        run(body=body, patch=patch, logger=logger, retry=retry)
