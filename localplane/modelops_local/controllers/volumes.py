"""PersistentVolumeClaim binding for one machine: every claim gets its own directory at once.

A pending claim is bound to a new PersistentVolume `pvc-<claim uid>` whose `hostPath` is
`DIR/volumes/<namespace>/<claim>` (capacity = the request, access modes and `storageClassName` copied
from the claim, reclaim policy from the StorageClass of that name if there is one, else Delete). A
claim naming a `volumeName` is bound to that volume instead. When a claim goes away its volume is
Released: with Delete the volume and its directory are removed, with Retain both stay.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

from . import common as c
from .actions import PVCS, PVS, Create, Delete, Event, Patch, Result, Status

Obj = dict[str, Any]

PROVISIONER = "modelops.dev/local-hostpath"


def volume_dir(root: str, namespace: str, claim: str) -> str:
    return os.path.join(root, "volumes", namespace, claim)


def reclaim_policy(claim: Obj, classes: Sequence[Obj]) -> str:
    name = (claim.get("spec") or {}).get("storageClassName")
    for sc in classes:
        if name and c.name_of(sc) == name:
            return str(sc.get("reclaimPolicy") or "Delete")
    return "Delete"


def _claim_ref(claim: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": c.namespace_of(claim),
        "name": c.name_of(claim),
        "uid": c.uid_of(claim),
    }


def _bind(claim: Obj, pv_name: str, capacity: str, result: Result, at: dt.datetime) -> None:
    spec = claim.get("spec") or {}
    ns, name = c.namespace_of(claim), c.name_of(claim)
    if (
        spec.get("volumeName") != pv_name
        or c.annotations_of(claim).get("pv.kubernetes.io/bind-completed") != "yes"
    ):
        result.actions.append(
            Patch(
                PVCS,
                ns,
                name,
                {
                    "metadata": {
                        "annotations": {
                            "pv.kubernetes.io/bind-completed": "yes",
                            "pv.kubernetes.io/bound-by-controller": "yes",
                        }
                    },
                    "spec": {"volumeName": pv_name},
                },
            )
        )
    status = dict(claim.get("status") or {})
    status.update(
        phase="Bound",
        accessModes=list(spec.get("accessModes") or ["ReadWriteOnce"]),
        capacity={"storage": capacity},
    )
    result.actions.append(Status(PVCS, ns, name, status))
    result.actions.append(Status(PVS, "", pv_name, {"phase": "Bound"}))


def clone_source(claim: Obj, claims: Sequence[Obj]) -> tuple[Obj | None, str | None]:
    """For a claim with a `dataSource`: (the Bound source claim to copy, or None; why it cannot be).

    Cloning a PersistentVolumeClaim copies its directory; VolumeSnapshots are not provisioned locally.
    """
    spec = claim.get("spec") or {}
    source = spec.get("dataSourceRef") or spec.get("dataSource")
    if not source:
        return None, None
    if source.get("kind") != "PersistentVolumeClaim" or source.get("apiGroup"):
        return None, (
            f"the local plane can only clone PersistentVolumeClaims, not {source.get('kind')}; "
            "restore by copying into a new claim instead"
        )
    ns = source.get("namespace") or c.namespace_of(claim)
    for other in claims:
        if c.namespace_of(other) == ns and c.name_of(other) == source.get("name"):
            if (other.get("status") or {}).get("phase") == "Bound":
                return other, None
            return None, f"waiting for the source claim {source.get('name')!r} to be bound"
    return None, f"the source claim {source.get('name')!r} does not exist in namespace {ns!r}"


def host_path(claim: Obj, volumes: Sequence[Obj]) -> str | None:
    """The directory behind a bound claim (its volume's hostPath)."""
    name = (claim.get("spec") or {}).get("volumeName")
    for pv in volumes:
        if c.name_of(pv) == name:
            path = ((pv.get("spec") or {}).get("hostPath") or {}).get("path")
            return str(path) if path else None
    return None


def reconcile_claim(
    claim: Obj,
    volumes: Sequence[Obj],
    classes: Sequence[Obj],
    root: str,
    at: dt.datetime,
    blocked: str | None = None,
) -> Result:
    """Bind one claim. `blocked` says why a claim cannot be provisioned yet (say, its clone source)."""
    result = Result()
    if c.is_deleting(claim):
        return result
    spec = claim.get("spec") or {}
    if blocked is not None and f"pvc-{c.uid_of(claim)}" not in {c.name_of(v) for v in volumes}:
        result.actions.append(Event(claim, "ProvisioningFailed", blocked, "Warning"))
        result.requeue(2.0)
        return result
    request = str(((spec.get("resources") or {}).get("requests") or {}).get("storage") or "1Gi")
    wanted = spec.get("volumeName")
    by_name = {c.name_of(v): v for v in volumes}
    if wanted and wanted in by_name:
        static = by_name[wanted]
        ref = (static.get("spec") or {}).get("claimRef") or {}
        if ref and (ref.get("uid") not in (None, "", c.uid_of(claim)) or ref.get("name") != c.name_of(claim)):
            return result  # someone else's volume: the claim stays Pending, as upstream
        if not ref.get("uid"):
            result.actions.append(Patch(PVS, "", wanted, {"spec": {"claimRef": _claim_ref(claim)}}))
        capacity = str(((static.get("spec") or {}).get("capacity") or {}).get("storage") or request)
        _bind(claim, wanted, capacity, result, at)
        return result
    if wanted:
        return result  # waits for the named volume to appear
    pv_name = f"pvc-{c.uid_of(claim)}"
    if pv_name not in by_name:
        pv: Obj = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
            "spec": {
                "capacity": {"storage": request},
                "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "persistentVolumeReclaimPolicy": reclaim_policy(claim, classes),
                "hostPath": {
                    "path": volume_dir(root, c.namespace_of(claim), c.name_of(claim)),
                    "type": "DirectoryOrCreate",
                },
                "claimRef": _claim_ref(claim),
                "volumeMode": spec.get("volumeMode", "Filesystem"),
            },
        }
        if spec.get("storageClassName"):
            pv["spec"]["storageClassName"] = spec["storageClassName"]
        result.actions.append(Create(PVS, "", pv))
    _bind(claim, pv_name, request, result, at)
    return result


def reconcile_volume(pv: Obj, claims: Sequence[Obj], root: str) -> tuple[Result, str | None]:
    """A volume whose claim is gone is Released, then deleted with its directory unless Retain.

    Returns the result and the directory to remove (only ever one this controller provisioned under
    `root/volumes`).
    """
    result = Result()
    spec = pv.get("spec") or {}
    ref = spec.get("claimRef") or {}
    if c.is_deleting(pv) or not ref.get("uid"):
        return result, None
    live = {c.uid_of(cl) for cl in claims if not c.is_deleting(cl)}
    if ref["uid"] in live:
        return result, None
    if spec.get("persistentVolumeReclaimPolicy", "Retain") == "Delete":
        result.actions.append(Delete(PVS, "", c.name_of(pv), c.uid_of(pv)))
        path = str((spec.get("hostPath") or {}).get("path") or "")
        owned = c.annotations_of(pv).get("pv.kubernetes.io/provisioned-by") == PROVISIONER
        inside = os.path.abspath(path).startswith(os.path.abspath(os.path.join(root, "volumes")) + os.sep)
        return result, path if owned and inside else None
    status = dict(pv.get("status") or {})
    if status.get("phase") != "Released":
        status["phase"] = "Released"
        result.actions.append(Status(PVS, "", c.name_of(pv), status))
    return result, None
