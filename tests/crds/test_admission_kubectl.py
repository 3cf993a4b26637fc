"""What cannot work is refused at `kubectl apply`: the real kubectl against the local API server.

Three classes of input the schema used to let through, on every kind that has them: negative (or, for
claim sizes, zero) resource quantities; cron schedules a CronJob would refuse; names so long (or so
shaped) that a child's name could not be created. Each refusal must name the field; the edge cases
next to each limit must be accepted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops.api.common import NAME_LIMITS

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".tools" / "bin" / "kubectl"
Obj = dict[str, Any]


class Plane:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.env = {**os.environ, "KUBECONFIG": str(directory / "kubeconfig"), "HOME": str(directory)}

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KUBECTL), *args], input=stdin, capture_output=True, text=True, env=self.env, timeout=60
        )

    def apply(self, obj: Obj) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", stdin=json.dumps(obj))


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    assert KUBECTL.exists(), "kubectl is missing: run `make bootstrap`"
    directory = tmp_path_factory.mktemp("admission")
    with (directory / "apiserver.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelops_local.apiserver", "--dir", str(directory), "--port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        running = Plane(directory)
        deadline = time.monotonic() + 60
        while running.kubectl("get", "--raw", "/readyz").returncode != 0:
            assert process.poll() is None, (directory / "apiserver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the local API server did not become ready"
            time.sleep(0.3)
        done = running.kubectl("apply", "-f", str(REPO / "crds"))
        assert done.returncode == 0, done.stderr
        yield running
    finally:
        process.terminate()
        process.wait(timeout=20)


def _obj(kind: str, name: str, spec: Obj) -> Obj:
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def tj(name: str = "train", **spec: Any) -> Obj:
    return _obj(
        "TrainingJob", name, {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}, **spec}
    )


def mv(name: str = "digits-1", **spec: Any) -> Obj:
    return _obj("ModelVersion", name, {"model": "digits", "source": {"uri": "pvc://models/m.pt"}, **spec})


def isvc(name: str = "serve", **spec: Any) -> Obj:
    return _obj("InferenceService", name, {"modelRef": {"model": "digits", "version": 1}, **spec})


def backup(schedule: str = "0 * * * *", size: Any = None) -> Obj:
    destination: Obj = {"claimName": "backups"}
    if size is not None:
        destination["size"] = size
    return {"schedule": schedule, "destination": destination}


TJ, MV, ISVC = (NAME_LIMITS[k].longest for k in ("TrainingJob", "ModelVersion", "InferenceService"))

# (what, object, the field the error names, a phrase of the message)
REFUSED: list[tuple[str, Obj, str, str]] = [
    # negative quantities, on every kind and every quantity field
    ("tj cpu -1", tj(resources={"cpu": "-1"}), "spec.resources.cpu", "must not be negative"),
    ("tj cpu -1 integer", tj(resources={"cpu": -1}), "spec.resources.cpu", "must not be negative"),
    ("tj memory -2Gi", tj(resources={"memory": "-2Gi"}), "spec.resources.memory", "must not be negative"),
    ("tj shm -0.5", tj(resources={"shmSize": "-0.5"}), "spec.resources.shmSize", "must not be negative"),
    (
        "tj checkpoint claim of 0",
        tj(checkpoint={"storage": {"size": "0"}}),
        "spec.checkpoint.storage.size",
        "greater than zero",
    ),
    (
        "tj checkpoint claim -1Gi",
        tj(checkpoint={"storage": {"size": "-1Gi"}}),
        "spec.checkpoint.storage.size",
        "greater than zero",
    ),
    (
        "tj backup claim -1Gi",
        tj(backup=backup(size="-1Gi")),
        "spec.backup.destination.size",
        "greater than zero",
    ),
    (
        "mv backup claim 0Gi",
        mv(backup=backup(size="0Gi")),
        "spec.backup.destination.size",
        "greater than zero",
    ),
    ("isvc cpu -1", isvc(resources={"cpu": "-1"}), "spec.resources.cpu", "must not be negative"),
    ("isvc memory -2Gi", isvc(resources={"memory": "-2Gi"}), "spec.resources.memory", "must not be negative"),
    ("isvc memory -0", isvc(resources={"memory": "-0"}), "spec.resources.memory", "must not be negative"),
    # cron schedules, in every backup policy
    ("tj not a cron", tj(backup=backup("not a cron")), "spec.backup.schedule", "e.g. '0 */6 * * *'"),
    ("tj minute 61", tj(backup=backup("61 * * * *")), "spec.backup.schedule", "minute (0-59)"),
    ("tj step 0", tj(backup=backup("*/0 * * * *")), "spec.backup.schedule", "n >= 1"),
    ("mv reversed range", mv(backup=backup("0 5-1 * * *")), "spec.backup.schedule", "low-high"),
    ("mv six fields", mv(backup=backup("0 0 * * * *")), "spec.backup.schedule", "five fields"),
    ("mv sunday as 7", mv(backup=backup("0 0 * * 7")), "spec.backup.schedule", "0-6"),
    ("mv time zone", mv(backup=backup("TZ=UTC 0 0 * * *")), "spec.backup.schedule", "no TZ="),
    ("mv list out of range", mv(backup=backup("0 1,25 * * *")), "spec.backup.schedule", "hour (0-23)"),
    # names whose children could not be created
    ("tj name too long", tj("a" * (TJ + 1)), "metadata.name", f"at most {TJ} characters"),
    ("tj name starts with a digit", tj("1train"), "metadata.name", "-workers"),
    ("tj model name too long", tj(output={"modelName": "m" * 58}), "spec.output.modelName", "at most 57"),
    ("mv name too long", mv("v" * (MV + 1)), "metadata.name", f"at most {MV} characters"),
    ("mv name with a dot", mv("digits.1"), "metadata.name", "no '.'"),
    ("isvc name too long", isvc("s" * (ISVC + 1)), "metadata.name", f"at most {ISVC} characters"),
    ("isvc name starts with a digit", isvc("1serve"), "metadata.name", "DNS-1035"),
]

ACCEPTED: list[tuple[str, Obj]] = [
    (
        "tj name at the limit, cpu 0, */1",
        tj("t" * TJ, resources={"cpu": "0", "memory": 0}, backup=backup("*/1 * * * *")),
    ),
    (
        "tj positive sizes",
        tj(checkpoint={"storage": {"size": "0.5Gi"}}, backup=backup("@every 20s", size="1e9")),
    ),
    ("mv name at the limit", mv("9" * MV, backup=backup("0 9 * * MON-FRI"))),
    ("mv descriptor", mv("digits-2", backup=backup("@daily"))),
    ("isvc name at the limit, cpu 0", isvc("s" * ISVC, resources={"cpu": 0, "memory": "+512Mi"})),
]


@pytest.mark.parametrize(("what", "obj", "field", "phrase"), REFUSED, ids=[r[0] for r in REFUSED])
def test_kubectl_apply_refuses_naming_the_field(
    plane: Plane, what: str, obj: Obj, field: str, phrase: str
) -> None:
    done = plane.apply(obj)
    assert done.returncode != 0, f"{what}: kubectl apply accepted it:\n{done.stdout}"
    assert f"{field}:" in done.stderr, f"{what}: the error does not name {field}:\n{done.stderr}"
    assert phrase in done.stderr, f"{what}: the error does not say {phrase!r}:\n{done.stderr}"


@pytest.mark.parametrize(("what", "obj"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_kubectl_apply_accepts_the_edge_cases(plane: Plane, what: str, obj: Obj) -> None:
    done = plane.apply(obj)
    assert done.returncode == 0, f"{what}: refused:\n{done.stderr}"
    got = json.loads(plane.kubectl("get", obj["kind"].lower(), obj["metadata"]["name"], "-o", "json").stdout)
    assert got["metadata"]["name"] == obj["metadata"]["name"]


def test_every_kind_has_a_refusal_of_each_class() -> None:
    kinds = {"tj": "TrainingJob", "mv": "ModelVersion", "isvc": "InferenceService"}
    covered = {(kinds[what.split()[0]], field.split(".")[-1]) for what, _, field, _ in REFUSED}
    for kind in kinds.values():
        assert (kind, "name") in covered
    assert {("TrainingJob", "schedule"), ("ModelVersion", "schedule")} <= covered
    assert {("TrainingJob", "cpu"), ("InferenceService", "cpu"), ("ModelVersion", "size")} <= covered
