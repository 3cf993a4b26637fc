"""The kopf registrations of the alerting children of every kind (their own handler ids and module).

Nothing is registered yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import kopf

from modelops.controllers import reconcile
from modelops.controllers.cluster import Cluster
from modelops.controllers.metrics import OperatorMetrics


def register(
    registry: kopf.OperatorRegistry,
    kinds: Sequence[tuple[str, reconcile.KindLogic[Any]]],
    metrics: OperatorMetrics,
    cluster: Cluster,
) -> None:
    del registry, kinds, metrics, cluster
