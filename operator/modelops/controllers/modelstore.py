"""The ModelVersion controller's side of the model store: the store's claim, and where a verified
artifact was published (status.artifact.storeUri).

The setting itself is read by `controllers.settings.model_store` (the operator's environment, set by
the chart); the pod pieces are `builders.modelstore`'s. Here the two meet the cluster: before a
verification pod is created the namespace's store claim must exist (the operator creates it once,
with the `get`/`create` on claims it already holds for checkpoint claims), and after a successful run
the object's URI is recorded from what the worker reports it stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelops import status
from modelops.builders import modelstore as store_builders
from modelops.builders.modelstore import ModelStore, StoreSettingError
from modelops.controllers import children, settings
from modelops.controllers.cluster import Cluster, resource_path

REASON_STORE_INVALID = "ModelStoreInvalid"
REASON_STORE_UNAVAILABLE = "ModelStoreUnavailable"

WHAT_TO_DO = {
    # The worker reports every failure to write the store under this reason (a refusal of the object
    # store keeps its own reason in the message), so it is never mistaken for one of spec.source.
    REASON_STORE_UNAVAILABLE: "The artifact is verified but could not be put into the model store (the "
    "message says why: a full or read-only claim, the store's credentials or bucket, an unreachable "
    "endpoint). Fix the store or its Secret (docs/storage.md), then set the annotation "
    "modelops.dev/reverify to a new value to verify and publish again.",
}


def store_or_conclusion() -> ModelStore | status.Conclusion:
    """The configured store, or Stalled/ModelStoreInvalid naming the setting and the fix."""
    try:
        return settings.model_store()
    except StoreSettingError as error:
        return status.stalled(
            REASON_STORE_INVALID,
            f"The operator's model-store setting is wrong: {error}. Fix the chart value modelStore "
            "(docs/install.md) and the operator publishes verified versions again.",
        )


def ensure_claim(cluster: Cluster, store: ModelStore, namespace: str) -> status.Conclusion | None:
    """Create the store's claim in `namespace` when it is missing; a refusal as a conclusion."""
    if store.is_object_store:
        return None
    if not cluster.missing_claims(namespace, [(store.claim, "the model store")]):
        return None
    try:
        cluster.create_at(
            resource_path("v1", "persistentvolumeclaims", namespace), store_builders.claim(store, namespace)
        )
    except children.ChildRejected as rejected:
        return children.rejected_conclusion(rejected, phase="Pending")
    return None


def store_uri(store: ModelStore, reported: Mapping[str, Any] | None, digest: str | None) -> str | None:
    """status.artifact.storeUri from the worker's report of what it stored (None when nothing was)."""
    if not reported or not digest or reported.get("key") != f"{store_builders.OBJECTS}/{digest}":
        return None
    return store.object_uri(digest)
