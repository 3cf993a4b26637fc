"""Hundreds of invalid manifests, as a new user or an attacker would write them, refused at `kubectl apply`.

The corpus (`corpus.py`) covers every field of TrainingJob, ModelVersion and InferenceService: wrong
types, empty strings, out-of-range numbers, conflicting options, paths that leave their claim, names
and references that are not DNS names, duplicates, unknown enum values, oversize strings, maps and
lists, bad metadata, unknown fields. Each one goes through the real kubectl (`apply --dry-run=server`,
which runs the API server's whole validation without storing anything) against the local plane's API
server, one file per manifest so that each error is matched to its manifest by file name; each must be
refused with a message naming the field path. Next to them, edge cases that must stay accepted, and
changes of immutable fields of stored objects.
"""

from __future__ import annotations

import collections
import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpus import INVALID, MV_SPEC, TJ_IMAGE_SPEC, TJ_SPEC, VALID, Obj, mv, timg, tj
from test_admission_kubectl import Plane, plane  # noqa: F401  (the module's one local API server)

from modelops.api import KINDS

_ERROR = re.compile(r'^(?:Error from server \([A-Za-z]+\): )?error when [a-z ]+"([^"]+\.json)": ', re.M)


def apply_each(plane: Plane, directory: Path, objects: list[Obj]) -> dict[str, str | None]:  # noqa: F811
    """kubectl apply --dry-run=server of one file per object: {file stem: its error, or None}."""
    directory.mkdir()
    for index, obj in enumerate(objects):
        (directory / f"{index:04d}.json").write_text(json.dumps(obj))
    done = plane.kubectl("apply", "--dry-run=server", "-f", str(directory))
    found: dict[str, str | None] = {f"{index:04d}": None for index in range(len(objects))}
    marks = list(_ERROR.finditer(done.stderr))
    ends = [after.start() for after in marks[1:]] + [len(done.stderr)]
    for mark, end in zip(marks, ends[: len(marks)], strict=True):
        found[Path(mark.group(1)).stem] = done.stderr[mark.end() : end]
    unmatched = done.stderr[: marks[0].start()] if marks else done.stderr
    assert not unmatched.strip(), f"kubectl printed an error matched to no manifest:\n{unmatched}"
    assert done.returncode == (1 if marks else 0), done.stderr
    return found


@pytest.fixture(scope="module")
def refusals(plane: Plane, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:  # noqa: F811
    found = apply_each(plane, tmp_path_factory.mktemp("invalid") / "cases", [obj for _, obj, _ in INVALID])
    return {what: found[f"{index:04d}"] for index, (what, _, _) in enumerate(INVALID)}


@pytest.mark.parametrize(("what", "field"), [(w, f) for w, _, f in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_manifest_is_refused_naming_the_field(
    refusals: dict[str, str | None], what: str, field: str
) -> None:
    error = refusals[what]
    assert error is not None, f"{what}: kubectl apply accepted it"
    assert field in error, f"{what}: the error does not name {field}:\n{error}"


def test_valid_edge_cases_are_accepted(plane: Plane, tmp_path: Path) -> None:  # noqa: F811
    found = apply_each(plane, tmp_path / "valid", [obj for _, obj in VALID])
    refused = {VALID[int(stem)][0]: error for stem, error in found.items() if error is not None}
    assert refused == {}, "edge cases that must be accepted were refused"


@pytest.mark.parametrize(("what", "obj"), VALID, ids=[c[0] for c in VALID])
def test_the_operator_parses_what_the_server_accepts(what: str, obj: Obj) -> None:
    """The models' own checks (pydantic's regex engine, not RE2) must not refuse an accepted object,
    or the operator would stall a valid object as InvalidSpec."""
    model = {info.kind: info.model for info in KINDS}[obj["kind"]]
    model.model_validate(obj)


def test_the_corpus_is_large_and_covers_every_kind() -> None:
    kinds = collections.Counter(obj["kind"] for _, obj, _ in INVALID)
    assert len(INVALID) >= 150 and kinds["TuningJob"] >= 30, kinds
    assert min(kinds[k] for k in ("TrainingJob", "ModelVersion", "InferenceService")) >= 50, kinds
    assert len({what for what, _, _ in INVALID}) == len(INVALID), "case names must be unique"
    fields = {field for _, _, field in INVALID}
    for spec_field in ("resources", "canary", "source", "dataset", "backup", "alerts", "scheduling"):
        assert any(f".{spec_field}" in f or f.endswith(spec_field) for f in fields), spec_field
    assert {k for _, obj in VALID for k in [obj["kind"]]} == set(kinds)


# --- changes of fields that may not change ----------------------------------------------------------


def _changed(obj: Obj, path: str, value: Any) -> Obj:
    out = copy.deepcopy(obj)
    node = out["spec"]
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return out


TJ_STORED = tj(name="stored-recipe")
TJ_IMAGE_STORED = timg(name="stored-image")
MV_STORED = mv(name="stored-version")
MV_VERIFIED = mv(name="stored-verified")

IMMUTABLE: list[tuple[str, Obj, str]] = [
    ("tj architecture", _changed(TJ_STORED, "model.architecture", "cnn"), "spec.model"),
    ("tj layers", _changed(TJ_STORED, "model.layers", 4), "spec.model"),
    ("tj dataset", _changed(TJ_STORED, "dataset", {"builtin": "wine"}), "spec.dataset"),
    ("tj epochs", _changed(TJ_STORED, "hyperparameters.epochs", 50), "spec.hyperparameters"),
    ("tj learning rate", _changed(TJ_STORED, "hyperparameters.learningRate", 0.1), "spec.hyperparameters"),
    ("tj cpu", _changed(TJ_STORED, "resources.cpu", "2"), "spec.resources"),
    ("tj nodes", _changed(TJ_STORED, "distributed.nodes", 2), "spec.distributed"),
    ("tj precision", _changed(TJ_STORED, "precision", "bf16"), "spec.precision"),
    ("tj checkpoint size", _changed(TJ_STORED, "checkpoint.storage.size", "9Gi"), "spec.checkpoint.storage"),
    (
        "tj restore added",
        _changed(TJ_STORED, "checkpoint.restoreFrom", {"volumeSnapshot": {"name": "snap"}}),
        "spec.checkpoint.restoreFrom",
    ),
    ("tj output", _changed(TJ_STORED, "output.format", "state_dict"), "spec.output"),
    ("tj image", _changed(TJ_IMAGE_STORED, "image", "ghcr.io/example/train:2.0"), "spec.image"),
    ("tj command", _changed(TJ_IMAGE_STORED, "command", ["python", "other.py"]), "spec.command"),
    ("tj args added", _changed(TJ_IMAGE_STORED, "args", ["--fast"]), "spec.args"),
    (
        "tj command removed",
        {**TJ_IMAGE_STORED, "spec": {"image": TJ_IMAGE_SPEC["image"]}},
        "spec.command",
    ),
    ("tj image replaced by a recipe", {**TJ_IMAGE_STORED, "spec": TJ_SPEC}, "spec.model"),
    ("mv model", _changed(MV_STORED, "model", "other"), "spec.model"),
    ("mv verified source", _changed(MV_VERIFIED, "source", {"uri": "pvc://models/other.pt"}), "spec.source"),
    ("mv verified version", _changed(MV_VERIFIED, "version", 7), "spec.version"),
    ("mv verified format", _changed(MV_VERIFIED, "format", "onnx"), "spec.format"),
    (
        "mv verified signature added",
        _changed(
            MV_VERIFIED, "signature", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]}
        ),
        "spec.signature",
    ),
]

MUTABLE: list[tuple[str, Obj]] = [
    ("tj suspend", _changed(TJ_STORED, "runPolicy.suspend", True)),
    ("tj alerts", _changed(TJ_STORED, "alerts.stalledAfter", "1h")),
    ("tj env", _changed(TJ_IMAGE_STORED, "env", [{"name": "LOG_LEVEL", "value": "debug"}])),
    ("mv source before verification", _changed(MV_STORED, "source", {"uri": "pvc://models/fixed.pt"})),
    (
        "mv signature before verification",
        _changed(MV_STORED, "signature", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]}),
    ),
    ("mv verified tags and aliases", _changed(MV_VERIFIED, "tags", {"reviewed": "yes"})),
]


@pytest.fixture(scope="module")
def stored(plane: Plane) -> Iterator[None]:  # noqa: F811
    for obj in (TJ_STORED, TJ_IMAGE_STORED, MV_STORED, MV_VERIFIED):
        done = plane.apply(obj)
        assert done.returncode == 0, done.stderr
    verified = {"status": {"artifact": {"sha256": "a" * 64, "verifiedAt": "2026-12-01T10:00:00Z"}}}
    done = plane.kubectl(
        "patch", "modelversion", "stored-verified", "--subresource=status", "--type=merge",
        "-p", json.dumps(verified),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    yield
    for obj in (TJ_STORED, TJ_IMAGE_STORED, MV_STORED, MV_VERIFIED):
        plane.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--wait=false")


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize(("what", "obj", "field"), IMMUTABLE, ids=[c[0] for c in IMMUTABLE])
def test_changing_an_immutable_field_is_refused_naming_it(
    plane: Plane,  # noqa: F811
    what: str,
    obj: Obj,
    field: str,
) -> None:
    done = plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(obj))
    assert done.returncode != 0, f"{what}: the change was accepted:\n{done.stdout}"
    assert field in done.stderr and "immutable" in done.stderr, f"{what}:\n{done.stderr}"


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize(("what", "obj"), MUTABLE, ids=[c[0] for c in MUTABLE])
def test_changing_a_mutable_field_is_accepted(plane: Plane, what: str, obj: Obj) -> None:  # noqa: F811
    done = plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(obj))
    assert done.returncode == 0, f"{what}: refused:\n{done.stderr}"


def test_the_stored_objects_are_what_the_changes_start_from() -> None:
    # The immutability cases change one field of these; if a base drifted, a refusal could come from
    # something else than the change (each base is valid on its own, see test_valid_edge_cases...).
    assert TJ_STORED["spec"] == TJ_SPEC and TJ_IMAGE_STORED["spec"] == TJ_IMAGE_SPEC
    assert MV_STORED["spec"] == MV_SPEC == MV_VERIFIED["spec"]
