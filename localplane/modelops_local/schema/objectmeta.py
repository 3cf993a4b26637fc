"""ObjectMeta of custom resources: the fields kept, and ValidateObjectMeta's request-independent checks.

Custom resources have no Go type for metadata, so the server coerces it: unknown metadata fields are
dropped (and reported like unknown fields) and names, labels, annotations and finalizers are validated
with the same rules and wording as for built-in kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import errors as fe
from .errors import FieldError, join_path, json_type
from .names import dns1123_label_errors, dns1123_subdomain_errors, label_value_errors, qualified_name_errors

__all__ = ["OBJECT_META_FIELDS", "prune_meta", "validate_meta"]

# ObjectMeta fields a client may send; anything else in metadata is dropped like an unknown field.
OBJECT_META_FIELDS = {
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
}


def prune_meta(meta: Any, path: str, unknown: list[str]) -> None:
    if not isinstance(meta, dict):
        return
    for key in list(meta):
        if key not in OBJECT_META_FIELDS:
            del meta[key]
            unknown.append(join_path(path, key))


_ANNOTATIONS_LIMIT = 256 * 1024


def _validate_names(meta: Mapping[str, Any], path: str, out: list[FieldError], *, require_name: bool) -> None:
    name = meta.get("name")
    generate_name = meta.get("generateName")
    if generate_name:
        if isinstance(generate_name, str):
            # NameIsDNSSubdomain(prefix=true) masks a trailing dash: random characters follow it.
            masked = (
                generate_name[:-1] + "a"
                if generate_name.endswith("-") and len(generate_name) > 1
                else generate_name
            )
            for problem in dns1123_subdomain_errors(masked):
                out.append(fe.invalid(join_path(path, "generateName"), generate_name, problem))
        else:
            out.append(fe.type_invalid(join_path(path, "generateName"), generate_name, "must be a string"))
    if not name:
        if require_name and not generate_name:
            out.append(fe.required(join_path(path, "name"), "name or generateName is required"))
    elif not isinstance(name, str):
        out.append(fe.type_invalid(join_path(path, "name"), name, "must be a string"))
    else:
        for problem in dns1123_subdomain_errors(name):
            out.append(fe.invalid(join_path(path, "name"), name, problem))


def validate_meta(
    meta: Mapping[str, Any], path: str, out: list[FieldError], *, require_name: bool, check_name: bool = True
) -> None:
    """ValidateObjectMeta's checks that do not depend on the request: names, labels, annotations.

    `check_name=False` leaves name and generateName alone (built-in kinds differ in their name rules).
    """
    if check_name:
        _validate_names(meta, path, out, require_name=require_name)
    labels = meta.get("labels")
    if isinstance(labels, Mapping):
        for key, val in labels.items():
            for problem in qualified_name_errors(str(key)):
                out.append(fe.invalid(join_path(path, "labels"), key, problem))
            if isinstance(val, str):
                for problem in label_value_errors(val):
                    out.append(fe.invalid(join_path(path, "labels"), val, problem))
            else:
                out.append(
                    fe.type_invalid(join_path(join_path(path, "labels"), str(key)), val, "must be a string")
                )
    elif labels is not None:
        out.append(fe.type_invalid(join_path(path, "labels"), json_type(labels), "must be a map of strings"))
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping):
        size = 0
        for key, val in annotations.items():
            for problem in qualified_name_errors(str(key).lower()):
                out.append(fe.invalid(join_path(path, "annotations"), key, problem))
            if not isinstance(val, str):
                out.append(
                    fe.type_invalid(
                        join_path(join_path(path, "annotations"), str(key)), val, "must be a string"
                    )
                )
            size += len(str(key)) + len(str(val))
        if size > _ANNOTATIONS_LIMIT:
            out.append(fe.too_long(join_path(path, "annotations"), _ANNOTATIONS_LIMIT))
    elif annotations is not None:
        out.append(
            fe.type_invalid(
                join_path(path, "annotations"), json_type(annotations), "must be a map of strings"
            )
        )
    finalizers = meta.get("finalizers")
    if isinstance(finalizers, list):
        for i, finalizer in enumerate(finalizers):
            for problem in qualified_name_errors(str(finalizer)):
                out.append(fe.invalid(join_path(join_path(path, "finalizers"), i), finalizer, problem))
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and namespace:
        for problem in dns1123_label_errors(namespace):
            out.append(fe.invalid(join_path(path, "namespace"), namespace, problem))
    owners = meta.get("ownerReferences")
    if isinstance(owners, list):
        _validate_owner_references(owners, join_path(path, "ownerReferences"), out)


# The field names and wording of ValidateOwnerReference.
_OWNER_FIELDS = (("apiVersion", "version"), ("kind", "kind"), ("name", "name"), ("uid", "uid"))


def _validate_owner_references(owners: list[Any], path: str, out: list[FieldError]) -> None:
    controllers: list[str] = []
    for owner in owners:
        if not isinstance(owner, Mapping):
            continue
        for key, word in _OWNER_FIELDS:
            if not owner.get(key):
                out.append(
                    fe.invalid(join_path(path, key), owner.get(key) or "", f"{word} must not be empty")
                )
        if owner.get("controller") is True:
            controllers.append(f"{owner.get('kind')}/{owner.get('name')}")
    if len(controllers) > 1:
        out.append(
            fe.invalid(
                path,
                owners,
                'Only one reference can have Controller set to true. Found "true" in references for '
                + " and ".join(controllers),
            )
        )
