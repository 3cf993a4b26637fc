"""The kopf registrations, and the little glue between kopf and the pure logic they delegate to.

Deciding happens in `reconcile` and the per-kind modules; here a decision is only applied (status
into kopf's patch, an Event, metrics) and an unexpected error is turned into a kopf retry. Everything is registered on a registry passed in (not kopf's global one), so importing this module
has no side effects and a test can build an operator of its own.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Sequence
from typing import Any, Protocol

import kopf

from modelops import GROUP, VERSION
from modelops.controllers import login, reconcile
from modelops.controllers import settings as operator_settings
from modelops.controllers.metrics import OperatorMetrics

LOGIN_RETRY_DELAY = 5.0
# Longest wait between retries of an object whose reconcile keeps failing unexpectedly.
MAX_RETRY_DELAY = 300.0


def retry_delay(retry: int) -> float:
    """Exponential backoff for unexpected errors: 1, 2, 4 ... seconds, capped at MAX_RETRY_DELAY."""
    return min(MAX_RETRY_DELAY, 2.0 ** min(retry, 16))


def phase_index_id(plural: str) -> str:
    return f"{plural}_by_phase"


def register(
    registry: kopf.OperatorRegistry,
    *,
    kinds: Sequence[tuple[str, reconcile.KindLogic[Any]]],
    metrics: OperatorMetrics,
    kubeconfig: str | None,
) -> None:
    """Register the operator's handlers; `kinds` pairs each CRD plural with its logic."""

    # A failed login is retried soon: a mounted token or kubeconfig may appear a moment later.
    @kopf.on.login(registry=registry, id="login", backoff=LOGIN_RETRY_DELAY)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        return login.connection_info(kubeconfig)

    @kopf.on.startup(registry=registry, id="configure-settings")
    def _startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        operator_settings.configure(settings, instance=socket.gethostname())
        # kopf hands every handler its indices by id; the metrics read them at scrape time.
        for plural, logic in kinds:
            metrics.track_objects(logic.kind, kwargs[phase_index_id(plural)])

    for plural, logic in kinds:
        _register_kind(registry, plural, logic, metrics)


def _register_kind(
    registry: kopf.OperatorRegistry, plural: str, logic: reconcile.KindLogic[Any], metrics: OperatorMetrics
) -> None:
    @kopf.on.resume(GROUP, VERSION, plural, registry=registry, id="reconcile")
    @kopf.on.update(GROUP, VERSION, plural, registry=registry, id="reconcile")
    @kopf.on.create(GROUP, VERSION, plural, registry=registry, id="reconcile")
    def _reconcile(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int, **_: Any) -> None:
        reconcile_object(logic, metrics, body=body, patch=patch, logger=logger, retry=retry, post=kopf.event)

    @kopf.index(GROUP, VERSION, plural, registry=registry, id=phase_index_id(plural))
    def _by_phase(body: kopf.Body, **_: Any) -> dict[str, str]:
        return {str(body.get("status", {}).get("phase") or "Unknown"): str(body.metadata.uid)}


class EventPoster(Protocol):
    def __call__(self, objs: kopf.Body, *, type: str, reason: str, message: str = "") -> None: ...


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
            delay = retry_delay(retry)
            metrics.failed(kind, type(error).__name__)
            logger.exception(f"Reconcile failed unexpectedly ({type(error).__name__}); retry in {delay:.0f}s")
            raise kopf.TemporaryError(f"unexpected {type(error).__name__}: {error}", delay=delay) from error
    for key, value in outcome.status_patch.items():
        patch.status[key] = value
    if outcome.event is not None:
        post(body, type=outcome.event.type, reason=outcome.event.reason, message=outcome.event.message)
        logger.info(f"Phase {outcome.conclusion.phase}, {outcome.event.reason}: {outcome.event.message}")
    metrics.reconciled(kind, outcome.result)
