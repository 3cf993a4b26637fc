"""The kopf registrations of the modelversion controller (its own module, so its owner edits only this file).

Until the controller is built, the kind is reconciled by the generic spec check of `handlers`.
"""

from __future__ import annotations

from typing import Any

import kopf

from modelops.controllers import reconcile
from modelops.controllers.cluster import Cluster
from modelops.controllers.metrics import OperatorMetrics


def register(
    registry: kopf.OperatorRegistry,
    plural: str,
    logic: reconcile.KindLogic[Any],
    metrics: OperatorMetrics,
    cluster: Cluster,
) -> None:
    from modelops.controllers import handlers

    handlers.register_kind(registry, plural, logic, metrics)
