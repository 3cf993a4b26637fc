"""The kopf glue every kind shares: one reconcile on change, one sync timer, and how an outcome is applied.

A kind's reconcile runs on create, update and resume (handler id "reconcile"), and again every
`interval` seconds (handler id "sync") for what changes without any change to the object: pods,
metrics, other objects. A new generation is the change handler's (two writers of one transition would
post its event twice), so the timer waits until that generation has been observed. The ids are part
of what kopf records on objects; they must not change.

Also here, for every `*_handlers` module: `reconcile_object` (a pure `reconcile` outcome written into
kopf's patch, an event per transition), `retry_delay` (the backoff of an unexpected error) and
`EventPoster` (the type of `kopf.event`, so tests can pass a recorder). Nothing here imports a kind's
module: the kinds import this, and `kinds` lists them.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any, Protocol

import kopf

from modelops import GROUP, VERSION
from modelops.controllers import reconcile
from modelops.controllers.metrics import OperatorMetrics

# Longest wait between retries of an object whose reconcile keeps failing unexpectedly.
MAX_RETRY_DELAY = 300.0


def retry_delay(retry: int) -> float:
    """Exponential backoff for unexpected errors: 1, 2, 4 ... seconds, capped at MAX_RETRY_DELAY."""
    return min(MAX_RETRY_DELAY, 2.0 ** min(retry, 16))


class EventPoster(Protocol):
    def __call__(self, objs: kopf.Body, *, type: str, reason: str, message: str = "") -> None: ...


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


def register_kind(
    registry: kopf.OperatorRegistry,
    plural: str,
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    cluster: Any = None,
) -> None:
    """The whole controller of a kind that only validates its spec (no children, no timer)."""

    @kopf.on.resume(GROUP, VERSION, plural, registry=registry, id="reconcile")
    @kopf.on.update(GROUP, VERSION, plural, registry=registry, id="reconcile")
    @kopf.on.create(GROUP, VERSION, plural, registry=registry, id="reconcile")
    def _reconcile(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int, **_: Any) -> None:
        reconcile_object(logic, metrics, body=body, patch=patch, logger=logger, retry=retry, post=kopf.event)


def reconcile_object(
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    *,
    body: kopf.Body,
    patch: kopf.Patch,
    logger: kopf.Logger,
    retry: int,
    post: EventPoster,
) -> None:
    """Apply one reconcile: status through the patch (kopf writes it to /status), one event per transition.

    An unexpected error is counted, logged with the object, and turned into a kopf TemporaryError so
    kopf retries the object with backoff; the operator itself keeps running.
    """
    kind = logic.kind
    with metrics.timed(kind):
        try:
            outcome = reconcile.reconcile(logic, body, now=datetime.datetime.now(datetime.UTC))
        except Exception as error:
            raise unexpected(error, kind, metrics, logger, retry, what="Reconcile") from error
    for key, value in outcome.status_patch.items():
        patch.status[key] = value
    if outcome.event is not None:
        post(body, type=outcome.event.type, reason=outcome.event.reason, message=outcome.event.message)
        logger.info(f"Phase {outcome.conclusion.phase}, {outcome.event.reason}: {outcome.event.message}")
    metrics.reconciled(kind, outcome.result)


def unexpected(
    error: Exception,
    kind: str,
    metrics: OperatorMetrics,
    logger: kopf.Logger | logging.Logger,
    retry: int,
    *,
    what: str,
) -> kopf.TemporaryError:
    """An error nobody planned for: counted, logged once with its traceback, retried with backoff.

    Expected refusals of the API server never come here: `children.ChildRejected` (and the kinds'
    own checks) turn them into conditions first.
    """
    delay = retry_delay(retry)
    metrics.failed(kind, type(error).__name__)
    if what == "Reconcile":
        logger.exception(f"Reconcile failed unexpectedly ({type(error).__name__}); retry in {delay:.0f}s")
    else:
        logger.exception(f"{what} failed ({type(error).__name__}); retry in {delay:.0f}s")
    return kopf.TemporaryError(f"unexpected {type(error).__name__}: {error}", delay=delay)


class QuietTimer(logging.Filter):
    """Drops kopf's "Timer '<id>' succeeded." line: one per object every few seconds drowns the log.

    Failures of the timer are still logged, and every transition of an object is logged with its reason.
    """

    def __init__(self, handler_id: str) -> None:
        super().__init__()
        self.line = f"Timer '{handler_id}' succeeded."

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.line


def quiet_timer(handler_id: str) -> None:
    """Install a `QuietTimer` for `handler_id` once (registering twice, as tests do, adds no second one)."""
    objects_logger = logging.getLogger("kopf.objects")
    if not any(
        isinstance(f, QuietTimer) and f.line == QuietTimer(handler_id).line for f in objects_logger.filters
    ):
        objects_logger.addFilter(QuietTimer(handler_id))
