"""The storage contract on the operator side: URI grammar, credentials wiring, the pods that use them.

Pure functions, no server: every pod that reaches object storage mounts its Secret the same way
(read-only, 0400), keeps secret values out of argv and env, and still passes Pod Security "restricted"
and the official Kubernetes schemas.
"""

from __future__ import annotations

import re

import pytest

from modelops import podsecurity
from modelops.api import runconfig
from modelops.api import storage as api
from modelops.builders import modelversion as mvb
from modelops.builders import storage as sb
from modelops_local import schema


@pytest.mark.parametrize(
    "uri",
    [
        "pvc://models/digits/model.pt",
        "s3://my.bucket-1/models/digits v1/m.onnx",
        "s3://bucket/ünïcödé/模型.pt",
        "gs://my_bucket/m.pt",
        "az://container/path/m.pt",
        "https://example.com:8443/models/m.onnx",
    ],
)
def test_object_uris_the_api_accepts(uri: str) -> None:
    assert re.match(api.OBJECT_URI_PATTERN, uri)
    parsed = api.parse_uri(uri)
    assert parsed.uri == uri


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket",  # no key
        "s3://bucket/",  # a prefix, not an object
        "s3://bucket/dir/",
        "s3://My-Bucket/m.pt",
        "s3://ab/m.pt",
        "s3:///m.pt",
        "ftp://host/m.pt",
        "pvc://Claim/m.pt",
        "s3://bucket//m.pt",
        "s3://bucket/m.pt ",
        "https://host/",
    ],
)
def test_object_uris_the_api_refuses(uri: str) -> None:
    assert not re.match(api.OBJECT_URI_PATTERN, uri)


@pytest.mark.parametrize("uri", ["s3://bucket", "s3://bucket/shards/", "s3://bucket/shards", "pvc://data/x/"])
def test_prefix_uris(uri: str) -> None:
    assert re.match(api.PREFIX_URI_PATTERN, uri)


def test_exit_codes_are_the_run_configurations() -> None:
    assert api.EXIT_BAD_CONFIG == runconfig.EXIT_BAD_CONFIG and api.EXIT_BAD_DATA == runconfig.EXIT_BAD_DATA
    assert runconfig.is_retryable(api.EXIT_STORAGE_UNAVAILABLE)
    for reason in api.PERMANENT_REASONS:
        assert not runconfig.is_retryable(api.EXIT_CODES[reason]), reason


def test_a_secret_is_mounted_read_only_0400_and_only_its_path_is_passed() -> None:
    wiring = sb.credentials("s3-creds", role="source")
    [volume] = wiring.volumes
    assert volume["secret"] == {"secretName": "s3-creds", "defaultMode": 0o400}
    [mount] = wiring.volume_mounts
    assert mount["readOnly"] is True and mount["mountPath"] == f"{api.CREDENTIALS_MOUNT}/source"
    assert wiring.args() == ["--credentials-dir", f"{api.CREDENTIALS_MOUNT}/source"]
    # The Secret's name (never a value) goes along, so messages can name it.
    assert wiring.env == [{"name": "MODELOPS_STORAGE_SECRET_NAME_SOURCE", "value": "s3-creds"}]
    default = sb.credentials("s3-creds")
    assert default.env == [
        {"name": api.ENV_CREDENTIALS_DIR, "value": f"{api.CREDENTIALS_MOUNT}/default"},
        {"name": "MODELOPS_STORAGE_SECRET_NAME_DEFAULT", "value": "s3-creds"},
    ]


def test_no_secret_means_the_pods_identity_and_nothing_mounted() -> None:
    wiring = sb.credentials(None)
    assert wiring.volumes == [] and wiring.env == [] and wiring.args() == []


def test_a_pvc_uri_mounts_its_claim_where_the_worker_looks() -> None:
    wiring = sb.for_uri("pvc://data/train.csv", "ignored")
    assert wiring.volumes[0]["persistentVolumeClaim"] == {"claimName": "data", "readOnly": True}
    assert wiring.volume_mounts[0]["mountPath"] == f"{api.CLAIMS_MOUNT}/data"


def test_the_verification_pod_of_an_s3_artifact_fetches_it_with_its_secret_and_passes_restricted() -> None:
    location = mvb.Location(
        "", "model.pt", source_uri="s3://models/digits/model.pt", credentials_secret="aws"
    )
    pod = mvb.verification_pod(
        "digits-1",
        "default",
        "uid-1",
        location=location,
        sha256="ab" * 32,
        fmt="torchscript",
        request="",
        image="ghcr.io/modelops/worker:test",
    )
    assert podsecurity.check_restricted(pod) == []
    assert schema.validate_builtin(pod) == []
    [container] = pod["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--artifact-uri") + 1] == "s3://models/digits/model.pt"
    assert args[args.index("--artifact") + 1] == f"{mvb.ARTIFACT_MOUNT}/model.pt"
    assert args[args.index("--credentials-dir") + 1] == f"{api.CREDENTIALS_MOUNT}/default"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "persistentVolumeClaim" not in volumes["artifact"], "no claim: the artifact is fetched"
    assert volumes["storage-credentials-default"]["secret"]["secretName"] == "aws"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["storage-credentials-default"]["readOnly"] is True
    assert all("valueFrom" not in e for e in container["env"]), "no secret value in the environment"
    assert {"name": "MODELOPS_STORAGE_SECRET_NAME_DEFAULT", "value": "aws"} in container["env"]


def test_an_s3_artifact_without_a_secret_uses_the_pods_identity() -> None:
    location = mvb.Location("", "model.pt", source_uri="s3://models/model.pt")
    pod = mvb.verification_pod(
        "v", "default", "u", location=location, sha256=None, fmt="onnx", request="", image="w:1"
    )
    [container] = pod["spec"]["containers"]
    assert "--credentials-dir" not in container["args"]
    assert not any("secret" in v for v in pod["spec"]["volumes"])


def _training_pods(dataset_file: dict[str, object], nodes: int = 2) -> list[dict[str, object]]:
    from modelops.api.trainingjob import TrainingJobSpec
    from modelops.builders import trainingjob as tjb

    spec = TrainingJobSpec.model_validate(
        {
            "model": {"architecture": "mlp"},
            "dataset": {"file": dataset_file},
            "distributed": {"nodes": nodes},
        }
    )
    return tjb.pods("digits", "default", "uid-1", spec, image="w:1")


def test_training_pods_of_a_bucket_dataset_mount_the_secret_and_a_cache_and_pass_restricted() -> None:
    pods = _training_pods({"uri": "s3://datasets/digits/", "credentialsSecret": {"name": "aws"}})
    for rank, pod in enumerate(pods):
        assert podsecurity.check_restricted(pod) == []
        assert schema.validate_builtin(pod) == []
        spec: dict = pod["spec"]  # type: ignore[assignment,type-arg]
        [container] = spec["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[api.ENV_CREDENTIALS_DIR] == f"{api.CREDENTIALS_MOUNT}/default"
        cache = env[api.ENV_CACHE_DIR]
        # Rank 0 caches on the checkpoint claim (a pod started again finds it); others on scratch.
        assert (
            cache.startswith("/var/run/modelops/checkpoints/")
            if rank == 0
            else cache.startswith(sb.SCRATCH_MOUNT)
        )
        assert not any(v.get("name") == "data" for v in spec["volumes"]), "no dataset claim to mount"
        assert any(v.get("secret", {}).get("secretName") == "aws" for v in spec["volumes"])


def test_a_pvc_uri_dataset_mounts_its_claim_read_only() -> None:
    [pod] = _training_pods({"uri": "pvc://data/train.csv"}, nodes=1)
    spec: dict = pod["spec"]  # type: ignore[assignment,type-arg]
    claims = [v for v in spec["volumes"] if "persistentVolumeClaim" in v and v["name"] == "claim-data"]
    assert claims and claims[0]["persistentVolumeClaim"] == {"claimName": "data", "readOnly": True}
    assert schema.validate_builtin(pod) == []


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ({"uri": "s3://datasets/a.csv", "claimName": "data"}, "set either uri, or claimName and path"),
        ({"claimName": "data"}, "claimName and path go together"),
        (
            {"uri": "pvc://data/a.csv", "credentialsSecret": {"name": "aws"}},
            "applies only to an object storage",
        ),
        ({"uri": "s3://datasets/../etc/a.csv"}, "must not contain '..' segments"),
        ({"uri": "ftp://host/a.csv"}, ""),
    ],
)
def test_dataset_file_refusals_name_the_field(file: dict[str, object], message: str) -> None:
    """What `kubectl apply` prints (the CRD's schema and CEL rules, evaluated as the API server does)."""
    from modelops.api import TRAININGJOB
    from modelops.api.crdgen import crd
    from modelops_local.schema import validate_custom_resource

    schema_ = crd(TRAININGJOB)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "digits", "namespace": "default"},
        "spec": {"model": {"architecture": "mlp"}, "dataset": {"file": file}},
    }
    found = [str(e) for e in validate_custom_resource(schema_, obj).errors]
    assert found, f"{file} was accepted"
    assert any(e.startswith("spec.dataset.file") for e in found), found
    assert any(message in e for e in found), found


def test_a_bucket_dataset_is_accepted_by_the_crd() -> None:
    from modelops.api import TRAININGJOB
    from modelops.api.crdgen import crd
    from modelops_local.schema import validate_custom_resource

    schema_ = crd(TRAININGJOB)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for file in (
        {"uri": "s3://datasets/digits/train.csv", "credentialsSecret": {"name": "aws"}},
        {"uri": "s3://datasets/digits/", "format": "parquet"},
        {"claimName": "data", "path": "digits.csv"},
    ):
        obj = {
            "apiVersion": "modelops.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "digits", "namespace": "default"},
            "spec": {"model": {"architecture": "mlp"}, "dataset": {"file": file}},
        }
        assert validate_custom_resource(schema_, obj).errors == [], file


def _policy(destination: dict[str, object]) -> object:
    from modelops.api.backup import BackupPolicy

    return BackupPolicy.model_validate(
        {"schedule": "@hourly", "destination": destination, "retention": {"keepLast": 3, "maxAge": "7d"}}
    )


def test_the_copy_cronjob_to_a_bucket_uploads_with_its_secret_and_mounts_no_destination_claim() -> None:
    from modelops.builders import backup as bb

    owner = bb.Owner("ModelVersion", "digits-1", "default", "uid-1")
    policy = _policy({"uri": "s3://backups", "credentialsSecret": {"name": "aws"}})
    cron = bb.cronjob(owner, policy, bb.Source("models", "digits"), image="w:1")  # type: ignore[arg-type]
    assert podsecurity.check_restricted(cron) == []
    assert schema.validate_builtin(cron) == []
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    # A bare bucket gets the claim's default directory.
    assert args[args.index("--dest-uri") + 1] == "s3://backups/modelops-backups/modelversion/digits-1"
    assert args[args.index("--credentials-dir") + 1] == f"{api.CREDENTIALS_MOUNT}/destination"
    assert args[args.index("--keep-last") + 1] == "3" and args[args.index("--max-age") + 1] == "7d"
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["models"], "only the source claim"
    assert bb.destination_claim(owner, policy) is None  # type: ignore[arg-type]


def test_a_restore_job_from_a_bucket_backup_reads_it_with_its_secret() -> None:
    from modelops.api.backup import BackupReference
    from modelops.builders import backup as bb

    owner = bb.Owner("ModelVersion", "digits-1", "default", "uid-1")
    ref = BackupReference.model_validate(
        {"uri": "s3://backups/m/20261207T100000Z", "credentialsSecret": {"name": "aws"}}
    )
    job = bb.restore_job(
        owner, token="abc", target_claim="models", target_path="digits", expect={"m.pt": "a" * 64}, backup=ref
    )
    assert podsecurity.check_restricted(job) == []
    assert schema.validate_builtin(job) == []
    [container] = job["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--backup-uri") + 1] == "s3://backups/m/20261207T100000Z"
    assert "--backup" not in args
    secret_vols = [v for v in job["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert secret_vols and secret_vols[0]["secret"]["secretName"] == "aws"


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ({"uri": "s3://backups/x/", "claimName": "b"}, "set exactly one of claimName or uri"),
        ({"uri": "s3://backups/x/", "size": "1Gi"}, "path and size apply only with claimName"),
        ({"claimName": "b", "credentialsSecret": {"name": "aws"}}, "applies only to an object storage"),
    ],
)
def test_backup_destination_refusals_name_the_field(destination: dict[str, object], message: str) -> None:
    from modelops.api import MODELVERSION
    from modelops.api.crdgen import crd
    from modelops_local.schema import validate_custom_resource

    schema_ = crd(MODELVERSION)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "digits-1", "namespace": "default"},
        "spec": {
            "model": "digits",
            "source": {"uri": "pvc://models/m.pt"},
            "backup": {"schedule": "@hourly", "destination": destination},
        },
    }
    found = [str(e) for e in validate_custom_resource(schema_, obj).errors]
    assert any(e.startswith("spec.backup.destination") and message in e for e in found), found
