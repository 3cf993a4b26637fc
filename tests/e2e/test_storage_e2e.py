"""Object storage on the local plane, driven with kubectl against a real S3 server (moto, IAM enforced).

Local pods are processes sharing the host's network, so the loopback S3 server started by the test is
reachable from them with the endpoint in the credentials Secret, as a MinIO in the cluster would be.
One plane and one server for the module:

- a TrainingJob whose dataset is a CSV in the bucket trains, and its ModelVersion's lineage records
  the dataset digest;
- the trained artifact uploaded to the bucket becomes a Ready ModelVersion (s3:// source, verified by
  the verification pod with the Secret mounted), with the same digest and lineage;
- copy backups of a claim artifact to the bucket keep exactly keepLast, and a restore from the bucket
  brings the artifact back digest-identical after it was damaged;
- wrong credentials and a missing bucket each stall a ModelVersion with a condition naming the
  problem, the URI and the Secret, from one verification run (no retry loop).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from localplane import Plane

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
from s3server import Credentials, S3Server

pytestmark = pytest.mark.e2e

NS = "default"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Iterator[Plane]:
    lp = Plane(tmp_path_factory.mktemp("storage") / "plane")
    lp.env["MODELOPS_BACKUP_SYNC_SECONDS"] = "5"
    # Short library retries: a refusal is permanent anyway, and nothing here is flaky on purpose.
    lp.env["MODELOPS_STORAGE_RETRY_TIMEOUT"] = "10"
    lp.modelops("local", "up", "--dir", str(lp.dir))
    try:
        apply(lp, secret("s3-creds", s3.secret_data(s3.admin)))
        apply(lp, secret("bad-creds", s3.secret_data(Credentials(s3.admin.access_key_id, "wrong" * 8))))
        yield lp
    finally:
        lp.modelops("local", "down", "--dir", str(lp.dir), check=False)


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "type": "Opaque",
        "stringData": data,
    }


def apply(plane: Plane, *objs: dict[str, Any]) -> None:
    plane.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))


def until(what: str, check: Callable[[], Any], plane: Plane, timeout: float = 150.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{plane.logs()}")


def status_of(plane: Plane, kind: str, name: str) -> dict[str, Any]:
    return dict(plane.get(kind, name).get("status") or {})


def condition(plane: Plane, kind: str, name: str, type_: str) -> dict[str, Any]:
    for c in status_of(plane, kind, name).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def version(name: str, uri: str, secret_name: str | None, **spec: Any) -> dict[str, Any]:
    source: dict[str, Any] = {"uri": uri}
    if secret_name:
        source["credentialsSecret"] = {"name": secret_name}
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"model": name, "source": source, "format": "torchscript", **spec},
    }


def _digits_csv() -> bytes:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    lines = [",".join([f"p{i}" for i in range(64)] + ["label"])]
    lines += [
        ",".join([str(int(v)) for v in x] + [str(int(y))])
        for x, y in zip(bunch.data, bunch.target, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def trained(plane: Plane, s3: S3Server) -> dict[str, Any]:
    """A TrainingJob on a dataset in the bucket, run to success; its artifact and ModelVersion."""
    s3.put("datasets/digits/train.csv", _digits_csv())
    job = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "froms3", "namespace": NS},
        "spec": {
            "model": {"architecture": "mlp", "hiddenSize": 16, "layers": 1},
            "dataset": {
                "file": {
                    "uri": f"s3://{s3.bucket}/datasets/digits/train.csv",
                    "credentialsSecret": {"name": "s3-creds"},
                }
            },
            "hyperparameters": {"epochs": 2, "batchSize": 128, "seed": 3},
            "resources": {"cpu": "500m", "memory": "1Gi"},
        },
    }
    apply(plane, job)
    plane.kubectl("wait", "trainingjob/froms3", "--for=condition=Succeeded", "--timeout=240s", timeout=250)
    claim = plane.dir / "volumes" / NS / "froms3-checkpoints"
    artifact = claim / "output" / "model.pt"
    versions = until(
        "the TrainingJob's ModelVersion to be Ready",
        lambda: [
            v
            for v in plane.get("modelversions")["items"]
            if (v["spec"]["source"].get("trainingJob") or {}).get("name") == "froms3"
            and (v.get("status") or {}).get("phase") == "Ready"
        ],
        plane,
    )
    return {"claim": claim, "artifact": artifact, "version": versions[0]}


def test_a_dataset_in_the_bucket_trains_and_its_digest_is_in_lineage(
    plane: Plane, trained: dict[str, Any]
) -> None:
    lineage = trained["version"]["status"]["lineage"]
    assert len(lineage["datasetDigest"]) == 64
    # The dataset was downloaded into the pod's cache on the checkpoint claim, with its record.
    cache = trained["claim"] / ".dataset-cache"
    records = [json.loads(p.read_text()) for p in cache.glob("*.record.json")]
    assert [r["uri"] for r in records] == ["s3://modelops-test/datasets/digits/train.csv"]


def test_an_artifact_in_the_bucket_becomes_a_ready_model_version(
    plane: Plane, s3: S3Server, trained: dict[str, Any]
) -> None:
    artifact: Path = trained["artifact"]
    data = artifact.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    s3.put("models/digits/v1/model.pt", data)
    s3.put("models/digits/v1/model-card.json", artifact.with_name("model-card.json").read_bytes())
    uri = f"s3://{s3.bucket}/models/digits/v1/model.pt"
    apply(plane, version("digits-s3", uri, "s3-creds", sha256=digest))
    plane.kubectl("wait", "modelversion/digits-s3", "--for=condition=Ready", "--timeout=150s", timeout=160)
    st = status_of(plane, "modelversion", "digits-s3")
    assert st["artifact"]["uri"] == uri and st["artifact"]["sha256"] == digest
    assert st["artifact"]["sizeBytes"] == len(data)
    assert st["lineage"]["datasetDigest"] == trained["version"]["status"]["lineage"]["datasetDigest"]
    assert st["signature"]["inputs"], "verified exactly like a claim artifact: loaded and smoke-run"
    # No secret value anywhere in what the API shows.
    dumped = json.dumps(plane.get("modelversion", "digits-s3")) + json.dumps(plane.get("events"))
    assert s3.admin.secret_access_key not in dumped


@pytest.mark.parametrize(
    ("name", "uri", "secret_name", "reason", "named"),
    [
        (
            "wrong-creds",
            "s3://modelops-test/models/digits/v1/model.pt",
            "bad-creds",
            "StorageAccessDenied",
            "bad-creds",
        ),
        (
            "no-bucket",
            "s3://modelops-nowhere/models/model.pt",
            "s3-creds",
            "BucketNotFound",
            "modelops-nowhere",
        ),
    ],
)
def test_wrong_credentials_and_a_missing_bucket_stall_with_a_named_condition(
    plane: Plane, name: str, uri: str, secret_name: str, reason: str, named: str
) -> None:
    apply(plane, version(name, uri, secret_name))
    stalled = until(
        f"{name} to stall",
        lambda: (c := condition(plane, "modelversion", name, "Stalled")).get("status") == "True" and c,
        plane,
        timeout=120,
    )
    assert stalled["reason"] == reason, stalled
    assert uri in stalled["message"] and named in stalled["message"], stalled
    assert "Secret" in stalled["message"]
    # One verification run: the answer stands, nothing is retried in a loop.
    first = status_of(plane, "modelversion", name)["verification"]
    time.sleep(6)
    again = status_of(plane, "modelversion", name)
    assert again["verification"]["finishedAt"] == first["finishedAt"]
    assert again["phase"] == "Failed"


def test_backups_to_the_bucket_keep_exactly_keep_last_and_restore_digest_identical(
    plane: Plane, s3: S3Server, trained: dict[str, Any]
) -> None:
    artifact: Path = trained["artifact"]
    original = hashlib.sha256(artifact.read_bytes()).hexdigest()
    mv = version(
        "digits-backed",
        "pvc://froms3-checkpoints/output/model.pt",
        None,
        backup={
            "schedule": "0 0 1 1 *",  # once a year: the runs below are started by hand
            "destination": {
                "uri": f"s3://{s3.bucket}/backups/digits/",
                "credentialsSecret": {"name": "s3-creds"},
            },
            "retention": {"keepLast": 2},
        },
    )
    apply(plane, mv)
    plane.kubectl(
        "wait", "modelversion/digits-backed", "--for=condition=Ready", "--timeout=150s", timeout=160
    )
    cronjob = until(
        "the backup CronJob",
        lambda: [
            c for c in plane.get("cronjobs")["items"] if c["metadata"]["name"].startswith("digits-backed")
        ],
        plane,
    )[0]
    template = cronjob["spec"]["jobTemplate"]
    made = []
    for run in ("s3-run-1", "s3-run-2", "s3-run-3"):
        apply(
            plane,
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": run, "namespace": NS, "labels": template["metadata"]["labels"]},
                "spec": template["spec"],
            },
        )
        plane.kubectl("wait", f"job/{run}", "--for=condition=Complete", "--timeout=90s", timeout=100)
        pod = plane.get("pods", "-l", f"job-name={run}")["items"][0]
        result = json.loads(pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
        made.append(result["backup"]["name"])
        time.sleep(1.1)  # backups are named by the second
    prefix = "backups/digits/"
    # Exactly keepLast in the bucket, each with its manifest naming the artifact's digest.
    assert sorted({k[len(prefix) :].split("/")[0] for k in s3.keys(prefix)}) == made[1:]
    for name in made[1:]:
        manifest = json.loads(s3.get(f"{prefix}{name}/manifest.json"))
        assert manifest["files"]["model.pt"]["sha256"] == original
    st = until(
        "status.backup to list the two kept backups",
        lambda: (
            (b := status_of(plane, "modelversion", "digits-backed").get("backup") or {}).get("kept") == 2
            and [r["name"] for r in b.get("backups", [])] == made[1:]
            and b
        ),
        plane,
        timeout=60,
    )
    newest = st["backups"][-1]["uri"]
    assert newest == f"s3://{s3.bucket}/{prefix}{made[-1]}"

    # Damage the artifact, then restore it from the bucket: verified, digest-identical.
    artifact.write_bytes(b"damaged")
    plane.kubectl(
        "patch",
        "modelversion",
        "digits-backed",
        "--type=merge",
        "-p",
        json.dumps(
            {"spec": {"restoreFrom": {"backup": {"uri": newest, "credentialsSecret": {"name": "s3-creds"}}}}}
        ),
    )
    restore = until(
        "the restore to finish",
        lambda: (
            (
                r := (status_of(plane, "modelversion", "digits-backed").get("backup") or {}).get("restore")
                or {}
            ).get("phase")
            in ("Succeeded", "Failed")
            and r
        ),
        plane,
        timeout=120,
    )
    assert restore["phase"] == "Succeeded", restore
    assert restore["sha256"] == original
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == original
