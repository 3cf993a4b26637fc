"""The one table of the operator's kinds: each kind's decision and the registration of its handlers.

A kind is three files (`api/<kind>.py`, `controllers/<kind>.py` with its pure decisions,
`controllers/<kind>_handlers.py` with its kopf glue and a `register` function) plus one line here and
its `KindInfo` in `api.KINDS`. Nothing else in the operator lists kinds: the entrypoint and
`handlers.register` read this table, so adding a kind never touches another kind's code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import kopf

from modelops import status
from modelops.controllers import (
    inferenceservice,
    inferenceservice_handlers,
    modelversion,
    modelversion_handlers,
    reconcile,
    trainingjob,
    trainingjob_handlers,
    tuningjob,
    tuningjob_handlers,
)
from modelops.controllers.cluster import Cluster
from modelops.controllers.metrics import OperatorMetrics


class Register(Protocol):
    def __call__(
        self,
        registry: kopf.OperatorRegistry,
        plural: str,
        logic: reconcile.KindLogic[Any],
        metrics: OperatorMetrics,
        cluster: Cluster,
    ) -> None: ...


@dataclasses.dataclass(frozen=True)
class KindController:
    """What the operator runs for one kind: `decide` judges a parsed spec, `register` adds the handlers."""

    decide: Callable[[Any], status.Conclusion]
    register: Register


# One line per kind, by kind name (as in the CRD).
CONTROLLERS: dict[str, KindController] = {
    trainingjob.KIND: KindController(trainingjob.decide, trainingjob_handlers.register),
    modelversion.KIND: KindController(modelversion.decide, modelversion_handlers.register),
    inferenceservice.KIND: KindController(inferenceservice.decide, inferenceservice_handlers.register),
    tuningjob.KIND: KindController(tuningjob.decide, tuningjob_handlers.register),
}


def kind_logics() -> list[tuple[str, reconcile.KindLogic[Any]]]:
    """Each CRD plural with the logic that reconciles it, from the API models and `CONTROLLERS`."""
    from modelops.api import KINDS

    return [
        (
            info.plural,
            reconcile.KindLogic(
                kind=info.kind, spec_model=info.spec_model, decide=CONTROLLERS[info.kind].decide
            ),
        )
        for info in KINDS
    ]
