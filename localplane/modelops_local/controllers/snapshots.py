"""VolumeSnapshots on one machine: a snapshot is a copy of the claim's directory.

What the CSI external-snapshotter and a driver do in a cluster, reduced to what the operator and
users rely on: a `snapshot.storage.k8s.io/v1` VolumeSnapshot of a bound claim is copied to
`DIR/snapshots/<namespace>/<snapshot uid>` (into a hidden directory first, renamed when complete),
then its status says `readyToUse: true` with `creationTime`, `restoreSize` and a content name. A
claim whose `dataSource` is a ready VolumeSnapshot starts as a copy of that directory (see
`volumes`). A deleted snapshot's copy is removed. There are no VolumeSnapshotContent objects.

The CRDs are not installed by `modelops local up` (a cluster without them is a case the operator must
report); apply `crds()` with `python -m modelops_local.controllers.snapshots | kubectl apply -f -`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from . import common as c
from .actions import Event, Kind, Result, Status

Obj = dict[str, Any]

GROUP = "snapshot.storage.k8s.io"
VOLUMESNAPSHOTS = Kind(f"{GROUP}/v1", "volumesnapshots", "VolumeSnapshot")
DRIVER = "modelops.dev/local-hostpath"


def snapshot_dir(root: str, namespace: str, uid: str) -> str:
    return os.path.join(root, "snapshots", namespace, uid)


def content_name(snapshot: Obj) -> str:
    return f"snapcontent-{c.uid_of(snapshot)}"


def plan(
    snapshot: Obj, claims: Sequence[Obj], volumes: Sequence[Obj], at: dt.datetime
) -> tuple[Result, str | None]:
    """What to do for one snapshot: (status/events, the claim directory to copy, or None)."""
    from .volumes import host_path

    result = Result()
    st = snapshot.get("status") or {}
    if c.is_deleting(snapshot) or st.get("readyToUse") is True:
        return result, None
    spec = snapshot.get("spec") or {}
    claim_name = (spec.get("source") or {}).get("persistentVolumeClaimName")
    ns = c.namespace_of(snapshot)
    claim = next((x for x in claims if c.namespace_of(x) == ns and c.name_of(x) == claim_name), None)
    problem = None
    if not claim_name:
        problem = "spec.source.persistentVolumeClaimName is empty; pre-provisioned snapshot contents are not supported locally"
    elif claim is None:
        problem = f"the source claim {claim_name!r} does not exist in namespace {ns!r}"
    elif (claim.get("status") or {}).get("phase") != "Bound":
        problem = f"waiting for the source claim {claim_name!r} to be bound"
    path = None if claim is None else host_path(claim, volumes)
    if problem is None and not path:
        problem = f"the source claim {claim_name!r} has no local directory"
    if problem is not None:
        message = f"cannot snapshot yet: {problem}"
        if (st.get("error") or {}).get("message") != message:
            result.actions.append(
                Status(
                    VOLUMESNAPSHOTS,
                    ns,
                    c.name_of(snapshot),
                    {**st, "readyToUse": False, "error": {"message": message, "time": c.fmt_time(at)}},
                )
            )
            result.actions.append(Event(snapshot, "SnapshotCreationFailed", message, "Warning"))
        result.requeue(2.0)
        return result, None
    return result, path


def ready_status(snapshot: Obj, claim_size: str, at: dt.datetime) -> Status:
    return Status(
        VOLUMESNAPSHOTS,
        c.namespace_of(snapshot),
        c.name_of(snapshot),
        {
            "readyToUse": True,
            "creationTime": c.fmt_time(at),
            "restoreSize": claim_size,
            "boundVolumeSnapshotContentName": content_name(snapshot),
        },
    )


def claim_size(snapshot: Obj, claims: Sequence[Obj]) -> str:
    name = ((snapshot.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName")
    for claim in claims:
        if c.namespace_of(claim) == c.namespace_of(snapshot) and c.name_of(claim) == name:
            capacity = ((claim.get("status") or {}).get("capacity") or {}).get("storage")
            request = (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
                "storage"
            )
            return str(capacity or request or "1Gi")
    return "1Gi"


def take(source: str, root: str, snapshot: Obj) -> None:
    """Copy a claim's directory into the snapshot's, atomically (a half copy is never ready)."""
    final = snapshot_dir(root, c.namespace_of(snapshot), c.uid_of(snapshot))
    if os.path.isdir(final):
        return
    partial = f"{final}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    shutil.copytree(source, partial, symlinks=True)
    os.rename(partial, final)


def orphans(root: str, snapshots: Sequence[Obj]) -> list[str]:
    """Snapshot directories whose VolumeSnapshot is gone."""
    base = os.path.join(root, "snapshots")
    live = {(c.namespace_of(s), c.uid_of(s)) for s in snapshots}
    out: list[str] = []
    if not os.path.isdir(base):
        return out
    for ns in os.listdir(base):
        for entry in os.listdir(os.path.join(base, ns)):
            if (ns, entry.removesuffix(".partial")) not in live:
                out.append(os.path.join(base, ns, entry))
    return out


def restore_source(claim: Obj, snapshots: Sequence[Obj], root: str) -> tuple[str | None, str | None]:
    """For a claim whose dataSource is a VolumeSnapshot: (the directory to copy, or why not yet)."""
    spec = claim.get("spec") or {}
    source = spec.get("dataSourceRef") or spec.get("dataSource") or {}
    ns = source.get("namespace") or c.namespace_of(claim)
    for snap in snapshots:
        if c.namespace_of(snap) == ns and c.name_of(snap) == source.get("name"):
            if (snap.get("status") or {}).get("readyToUse") is not True:
                return None, f"waiting for the VolumeSnapshot {source.get('name')!r} to be ready to use"
            path = snapshot_dir(root, ns, c.uid_of(snap))
            if not os.path.isdir(path):
                return None, f"the VolumeSnapshot {source.get('name')!r} has no data on this machine"
            return path, None
    return None, (
        f"the VolumeSnapshot {source.get('name')!r} does not exist in namespace {ns!r} "
        "(or the snapshot.storage.k8s.io CRDs are not installed)"
    )


def is_snapshot_source(claim: Obj) -> bool:
    spec = claim.get("spec") or {}
    source = spec.get("dataSourceRef") or spec.get("dataSource") or {}
    return source.get("kind") == "VolumeSnapshot" and source.get("apiGroup") == GROUP


# -- the CRDs --------------------------------------------------------------------------------------


def _crd(kind: str, plural: str, scope: str, schema: Obj, columns: list[Obj], short: list[str]) -> Obj:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
            },
            "scope": scope,
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}} if kind != "VolumeSnapshotClass" else None,
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def _s(description: str, **extra: Any) -> Obj:
    return {"type": "string", "description": description, **extra}


_ERROR = {
    "type": "object",
    "description": "The last error while taking the snapshot, if any.",
    "properties": {
        "message": _s("What went wrong."),
        "time": _s("When.", format="date-time"),
    },
}
_SIZE = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}


def crds() -> list[Obj]:
    """The snapshot.storage.k8s.io/v1 CRDs (VolumeSnapshotClass, VolumeSnapshot, VolumeSnapshotContent).

    Written here with the fields of the upstream v1 API that the operator and this controller use,
    so the local plane accepts the same objects a cluster with the external-snapshotter does.
    """
    snapshot_schema: Obj = {
        "type": "object",
        "description": "A request for a point-in-time snapshot of a PersistentVolumeClaim.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["source"],
                "properties": {
                    "source": {
                        "type": "object",
                        "description": "Where the snapshot is taken from (immutable).",
                        "properties": {
                            "persistentVolumeClaimName": _s("The claim to snapshot, in this namespace."),
                            "volumeSnapshotContentName": _s("A pre-existing VolumeSnapshotContent."),
                        },
                        "x-kubernetes-validations": [
                            {"rule": "self == oldSelf", "message": "spec.source is immutable"},
                            {
                                "rule": "has(self.persistentVolumeClaimName) != has(self.volumeSnapshotContentName)",
                                "message": "spec.source: set exactly one of persistentVolumeClaimName or "
                                "volumeSnapshotContentName",
                            },
                        ],
                    },
                    "volumeSnapshotClassName": _s(
                        "The VolumeSnapshotClass; empty uses the default.", minLength=1
                    ),
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "boundVolumeSnapshotContentName": _s("The VolumeSnapshotContent bound to it."),
                    "creationTime": _s("When the snapshot was taken.", format="date-time"),
                    "readyToUse": {"type": "boolean", "description": "Whether it can be restored from."},
                    "restoreSize": {**_SIZE, "description": "Smallest claim it can be restored into."},
                    "error": _ERROR,
                },
            },
        },
    }
    class_schema: Obj = {
        "type": "object",
        "description": "A class of VolumeSnapshots: the CSI driver and its parameters.",
        "required": ["driver", "deletionPolicy"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "driver": _s("The CSI driver that takes the snapshots."),
            "deletionPolicy": _s(
                "Delete or Retain the content with the snapshot.", enum=["Delete", "Retain"]
            ),
            "parameters": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    content_schema: Obj = {
        "type": "object",
        "description": "The snapshot on the storage system.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    ready = {"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"}
    out = [
        _crd(
            "VolumeSnapshotClass",
            "volumesnapshotclasses",
            "Cluster",
            class_schema,
            [
                {"name": "Driver", "type": "string", "jsonPath": ".driver"},
                {"name": "DeletionPolicy", "type": "string", "jsonPath": ".deletionPolicy"},
            ],
            ["vsclass", "vsclasses"],
        ),
        _crd(
            "VolumeSnapshot",
            "volumesnapshots",
            "Namespaced",
            snapshot_schema,
            [
                ready,
                {"name": "SourcePVC", "type": "string", "jsonPath": ".spec.source.persistentVolumeClaimName"},
                {"name": "RestoreSize", "type": "string", "jsonPath": ".status.restoreSize"},
                {"name": "SnapshotClass", "type": "string", "jsonPath": ".spec.volumeSnapshotClassName"},
                {"name": "CreationTime", "type": "date", "jsonPath": ".status.creationTime"},
            ],
            ["vs"],
        ),
        _crd(
            "VolumeSnapshotContent",
            "volumesnapshotcontents",
            "Cluster",
            content_schema,
            [ready],
            ["vsc", "vscs"],
        ),
    ]
    for crd in out:
        version = crd["spec"]["versions"][0]
        if version["subresources"] is None:
            del version["subresources"]
    return out


def default_class() -> Obj:
    """The local plane's VolumeSnapshotClass (marked default)."""
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {
            "name": "local-hostpath",
            "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"},
        },
        "driver": DRIVER,
        "deletionPolicy": "Delete",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the CRDs (or, with --default-class, the local VolumeSnapshotClass) as YAML for kubectl."""
    import yaml

    args = list(sys.argv[1:] if argv is None else argv)
    docs = [default_class()] if "--default-class" in args else crds()
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
