"""Every kopf setting the operator changes, in one visible place, and the operator's own settings that
are not kopf's (the model store).

`configure` is called from the startup handler, before kopf watches anything.
"""

from __future__ import annotations

import logging

import kopf

from modelops import GROUP
from modelops.builders import modelstore

# The model store (chart value modelStore, docs/storage.md): MODELOPS_MODEL_STORE_URI and its claim's
# size, class and access mode; unset, the embedded default pvc://modelops-model-store.
MODEL_STORE_ENV = (
    modelstore.ENV_URI,
    modelstore.ENV_CLAIM_SIZE,
    modelstore.ENV_STORAGE_CLASS,
    modelstore.ENV_ACCESS_MODE,
)


def model_store() -> modelstore.ModelStore:
    """The model store the operator publishes verified artifacts to (raises StoreSettingError)."""
    return modelstore.from_env()


FINALIZER = f"{GROUP}/finalizer"


def configure(settings: kopf.OperatorSettings, *, instance: str) -> None:
    # Our own names on objects, so `kubectl get -o yaml` shows who wrote what, and a kopf-based
    # operator of another project never mistakes our annotations for its own.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )

    # Ask the API server to end each watch after 5 minutes and re-list: a watch stuck behind a dead
    # connection (load balancer idle timeouts drop them silently) cannot block us for longer.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 60

    # Events: we post one per status transition ourselves; kopf's per-handler chatter ("Handler
    # succeeded") stays in the logs, and only its warnings and errors become Events.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "modelops-operator"
    settings.posting.reporting_instance = instance
    settings.posting.event_name_prefix = "modelops-"

    # The model store is read where it is used; a wrong setting is said once here, and each
    # ModelVersion reports ModelStoreInvalid (the operator itself keeps running).
    log = logging.getLogger("modelops.settings")
    try:
        log.info("model store: %s", model_store().uri)
    except modelstore.StoreSettingError as error:
        log.error("%s; verified versions report ModelStoreInvalid until it is fixed", error)
