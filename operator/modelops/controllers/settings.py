"""Every kopf setting the operator changes, in one visible place.

Called from the startup handler, before kopf watches anything.
"""

from __future__ import annotations

import logging

import kopf

from modelops import GROUP

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
