"""Pure builders: from a custom resource's spec to the manifests of its children.

No API calls and no kopf here, so every manifest the operator applies can be validated against the
official Kubernetes schemas and the Pod Security Standards in unit tests.
"""

from __future__ import annotations

from typing import Any

from modelops import API_VERSION

# On every child, so `kubectl get all -l app.kubernetes.io/managed-by=modelops` finds them and the
# chart's NetworkPolicy reaches their pods.
MANAGED_BY = {"app.kubernetes.io/managed-by": "modelops"}


def owner_reference(kind: str, name: str, uid: str, api_version: str = API_VERSION) -> dict[str, Any]:
    """The controller reference of a child: garbage-collected with its owner, adopted by no one else."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
