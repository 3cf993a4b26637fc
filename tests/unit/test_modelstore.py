"""The model store as the operator builds it: the setting, the verification pod that publishes, the serving
pod that fetches by digest (restricted, no training claim), and what a refusing fetch reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelops.api.inferenceservice import InferenceServiceSpec
from modelops.builders import inferenceservice as b
from modelops.builders import modelstore as ms
from modelops.builders import modelversion as mvb
from modelops.controllers import inferenceservice_pods as pods
from modelops.controllers import inferenceservice_resolve as resolve
from modelops.controllers import modelstore as cms
from modelops.controllers import modelversion as mv
from modelops.podsecurity import check_restricted
from modelops_local.schema import validate_builtin

SHA = "ab" * 32
STORE = ms.from_env({})


def spec(**over: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"modelRef": {"model": "digits", "version": 1}, **over})


def version(**artifact: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "digits-1"},
        "spec": {"model": "digits", "version": 1, "source": {"trainingJob": {"name": "digits"}}},
        "status": {
            "phase": "Ready",
            "version": 1,
            "artifact": {
                "uri": "pvc://digits-checkpoints/output/model.pt",
                "sha256": SHA,
                "sizeBytes": 5 << 20,
                "format": "torchscript",
                **artifact,
            },
        },
    }


def test_the_embedded_default_is_a_claim_per_namespace() -> None:
    assert STORE.uri == "pvc://modelops-model-store" and STORE.claim == "modelops-model-store"
    assert STORE.object_uri(SHA) == f"pvc://modelops-model-store/sha256/{SHA}"
    claim = ms.claim(STORE, "team-a")
    assert validate_builtin(claim) == []
    assert claim["metadata"]["namespace"] == "team-a" and "ownerReferences" not in claim
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_the_setting_takes_a_prefix_a_size_a_class_and_an_access_mode() -> None:
    store = ms.from_env(
        {
            ms.ENV_URI: "pvc://models/team/store/",
            ms.ENV_CLAIM_SIZE: "100Gi",
            ms.ENV_STORAGE_CLASS: "nfs",
            ms.ENV_ACCESS_MODE: "ReadWriteMany",
        }
    )
    assert (store.claim, store.prefix, store.uri) == ("models", "team/store", "pvc://models/team/store")
    assert store.pod_root == f"{ms.MOUNT}/team/store"
    claim = ms.claim(store, "ns")["spec"]
    assert claim == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "100Gi"}},
        "storageClassName": "nfs",
    }
    assert ms.parse_object_uri(store.object_uri(SHA)) == (ms.parse("pvc://models/team/store"), SHA)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({ms.ENV_URI: "ftp://x/y"}, ms.ENV_URI),
        ({ms.ENV_URI: "pvc://Bad_Claim"}, ms.ENV_URI),
        ({ms.ENV_URI: "pvc://models/../etc"}, ms.ENV_URI),
        ({ms.ENV_CLAIM_SIZE: "lots"}, ms.ENV_CLAIM_SIZE),
        ({ms.ENV_ACCESS_MODE: "ReadOnlyMany"}, ms.ENV_ACCESS_MODE),
    ],
)
def test_a_wrong_setting_names_the_variable_and_the_fix(env: dict[str, str], named: str) -> None:
    with pytest.raises(ms.StoreSettingError, match=named):
        ms.from_env(env)


def test_a_wrong_setting_stalls_versions_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ms.ENV_URI, "ftp://nowhere")
    conclusion = cms.store_or_conclusion()
    assert not isinstance(conclusion, ms.ModelStore)
    assert conclusion.reason == "ModelStoreInvalid" and "modelStore" in conclusion.message


def test_the_verification_pod_publishes_into_the_store_and_stays_restricted() -> None:
    location = mvb.Location("digits-checkpoints", "output/model.pt")
    pod = mvb.verification_pod(
        "digits-1", "ns", "uid", location=location, sha256=None, fmt="torchscript", request=""
    )
    pod = ms.with_publish(pod, STORE)
    assert validate_builtin(pod) == [] and check_restricted(pod) == []
    container = pod["spec"]["containers"][0]
    assert container["args"][-2:] == ["--publish", ms.MOUNT]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[ms.VOLUME]["persistentVolumeClaim"] == {"claimName": STORE.claim, "readOnly": False}
    # The source stays read-only: verifying and publishing never change what was checked.
    assert volumes["artifact"]["persistentVolumeClaim"]["readOnly"] is True


def test_the_store_uri_is_recorded_only_for_what_the_worker_stored() -> None:
    assert cms.store_uri(STORE, {"key": f"sha256/{SHA}", "reused": False}, SHA) == STORE.object_uri(SHA)
    assert cms.store_uri(STORE, None, SHA) is None
    assert cms.store_uri(STORE, {"key": f"sha256/{'cd' * 32}"}, SHA) is None
    verdict = mv.pod_verdict(
        {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "state": {
                            "terminated": {
                                "message": json.dumps(
                                    {
                                        "status": "Succeeded",
                                        "artifact": {"sha256": SHA},
                                        "store": {"key": f"sha256/{SHA}", "reused": True},
                                    }
                                )
                            }
                        }
                    }
                ],
            }
        }
    )
    assert verdict is not None and verdict.store == {"key": f"sha256/{SHA}", "reused": True}


def test_a_publish_failure_is_reported_with_its_reason_and_what_to_do() -> None:
    message = {"status": "Failed", "reason": "ModelStoreUnavailable", "message": "the model store cannot ..."}
    verdict = mv.pod_verdict(
        {
            "status": {
                "phase": "Failed",
                "containerStatuses": [{"state": {"terminated": {"message": json.dumps(message)}}}],
            }
        }
    )
    assert verdict is not None and verdict.reason == "ModelStoreUnavailable"
    assert "docs/storage.md" in mv.failure_message(verdict)


@pytest.mark.parametrize("custom", [False, True])
def test_serving_pods_fetch_by_digest_and_mount_no_training_claim(custom: bool) -> None:
    served = resolve.resolve(spec().model_ref, [version(storeUri=STORE.object_uri(SHA))], custom=custom)  # type: ignore[arg-type]
    assert isinstance(served, b.Served)
    assert served.claim == "" and served.path == "model.pt" and served.store_uri == STORE.object_uri(SHA)
    over = {"predictor": {"image": "example.com/predictor:1", "port": 8080}} if custom else {}
    dep = b.deployment("digits", "ns", "uid", spec(**over), served, b.STABLE)
    assert validate_builtin(dep) == [] and check_restricted(dep) == []
    pod = dep["spec"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {STORE.claim}
    store_volume = next(v for v in pod["volumes"] if v["name"] == ms.VOLUME)
    assert store_volume["persistentVolumeClaim"]["readOnly"] is True
    model = next(v for v in pod["volumes"] if v["name"] == "model")
    assert model == {"name": "model", "emptyDir": {"sizeLimit": "69Mi"}}
    (fetch,) = pod["initContainers"]
    mount = b.CUSTOM_MODEL_MOUNT if custom else b.MODEL_MOUNT
    assert fetch["args"] == ["fetch", "--store", ms.MOUNT, "--sha256", SHA, "--to", f"{mount}/model.pt"]
    assert {"name": ms.VOLUME, "mountPath": ms.MOUNT, "readOnly": True} in fetch["volumeMounts"]
    server = pod["containers"][0]
    assert {"name": "model", "mountPath": mount, "readOnly": True} in server["volumeMounts"]
    if custom:
        env = {e["name"]: e.get("value") for e in server["env"]}
        assert env[b.ENV_MODEL_PATH] == f"{mount}/model.pt" and env[b.ENV_MODEL_SHA256] == SHA
    else:
        config = json.loads(next(e["value"] for e in server["env"] if e["name"] == "MODELOPS_SERVE_CONFIG"))
        assert config["artifactPath"] == f"{mount}/model.pt" and config["sha256"] == SHA


def test_a_version_verified_before_the_store_still_serves_from_its_claim() -> None:
    served = resolve.resolve(spec().model_ref, [version()])  # type: ignore[arg-type]
    assert isinstance(served, b.Served) and served.claim == "digits-checkpoints" and not served.store_uri
    pod = b.deployment("digits", "ns", "uid", spec(), served, b.STABLE)["spec"]["template"]["spec"]
    assert "initContainers" not in pod


def test_a_refusing_fetch_is_the_pods_reason() -> None:
    refusal = {
        "status": "Failed",
        "reason": "ArtifactDigestMismatch",
        "message": f"the object sha256/{SHA} ...",
    }
    pod = {
        "metadata": {"name": "p", "labels": {b.LABEL_TRACK: "stable"}},
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": ms.FETCH_CONTAINER,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 65, "message": json.dumps(refusal)}},
                }
            ],
            "containerStatuses": [{"name": b.CONTAINER, "state": {"waiting": {"reason": "PodInitializing"}}}],
        },
    }
    view = pods.view(pod)
    assert view.crash is not None and view.crash[0] == "ArtifactDigestMismatch"
    assert "ArtifactDigestMismatch" in pods.PERMANENT_REASONS


S3 = ms.from_env({ms.ENV_URI: "s3://team-models/prod/", ms.ENV_CREDENTIALS_SECRET: "model-store-creds"})


def test_an_object_storage_store_needs_no_claim_and_names_its_secret() -> None:
    assert (
        S3.is_object_store
        and S3.uri == "s3://team-models/prod"
        and S3.credentials_secret == "model-store-creds"
    )
    assert S3.pod_root == "s3://team-models/prod"
    assert ms.parse_object_uri(S3.object_uri(SHA), S3) == (S3, SHA)
    # Recorded in another store than the current setting: reached with the pods' own identity.
    other = ms.parse_object_uri(f"gs://elsewhere/sha256/{SHA}", S3)
    assert other is not None and other[0].credentials_secret is None
    with pytest.raises(ms.StoreSettingError, match=ms.ENV_CREDENTIALS_SECRET):
        ms.from_env({ms.ENV_CREDENTIALS_SECRET: "creds"})  # the default pvc:// store takes none


def test_the_verification_pod_publishes_to_s3_with_the_secret_as_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    location = mvb.Location("digits-checkpoints", "output/model.pt")
    pod = mvb.verification_pod(
        "digits-1", "ns", "uid", location=location, sha256=None, fmt="onnx", request=""
    )
    pod = ms.with_publish(pod, S3)
    assert validate_builtin(pod) == [] and check_restricted(pod) == []
    container = pod["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--publish") + 1] == "s3://team-models/prod"
    creds_dir = args[args.index("--publish-credentials-dir") + 1]
    secret = next(v for v in pod["spec"]["volumes"] if "secret" in v)
    assert secret["secret"]["secretName"] == "model-store-creds" and secret["secret"]["defaultMode"] == 0o400
    mount = next(m for m in container["volumeMounts"] if m["name"] == secret["name"])
    assert mount["mountPath"] == creds_dir and mount["readOnly"] is True
    # Never a value: the Secret is not in env, and no claim of a store is mounted.
    assert not any("valueFrom" in e for e in container["env"])
    assert ms.VOLUME not in {v["name"] for v in pod["spec"]["volumes"]}


def test_only_the_fetch_container_sees_the_stores_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ms.ENV_URI, S3.uri)
    monkeypatch.setenv(ms.ENV_CREDENTIALS_SECRET, "model-store-creds")
    served = resolve.resolve(spec().model_ref, [version(storeUri=S3.object_uri(SHA))])  # type: ignore[arg-type]
    assert isinstance(served, b.Served)
    dep = b.deployment("digits", "ns", "uid", spec(), served, b.STABLE)
    assert validate_builtin(dep) == [] and check_restricted(dep) == []
    pod = dep["spec"]["template"]["spec"]
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
    secret = next(v for v in pod["volumes"] if "secret" in v)
    (fetch,) = pod["initContainers"]
    assert (
        fetch["args"][:3] == ["fetch", "--store", "s3://team-models/prod"]
        and "--credentials-dir" in fetch["args"]
    )
    assert secret["name"] in {m["name"] for m in fetch["volumeMounts"]}
    assert secret["name"] not in {m["name"] for m in pod["containers"][0]["volumeMounts"]}


class FakeCluster:
    """The calls the ModelVersion handler makes around a verification run (no server needed)."""

    def __init__(self, pods: list[dict[str, Any]], claims: set[str]) -> None:
        self.pods = pods
        self.claims = claims
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    def list_items(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.pods

    def create_at(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(body)
        if body["kind"] == "PersistentVolumeClaim":
            self.claims.add(body["metadata"]["name"])
        return body

    def missing_claims(self, namespace: str, claims: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(c, w) for c, w in claims if c not in self.claims]

    def failed_mounts(self, namespace: str) -> list[dict[str, Any]]:
        return []

    def delete(self, path: str, **_: Any) -> bool:
        self.deleted.append(path.rsplit("/", 1)[1])
        return True


def _mv_object() -> dict[str, Any]:
    return {
        "metadata": {"name": "digits-1", "namespace": "team-a", "uid": "uid-1", "generation": 1},
        "spec": {"model": "digits", "version": 1, "source": {"uri": "pvc://uploads/model.pt"}},
        "status": {},
    }


def _verify(cluster: FakeCluster, obj: dict[str, Any], desired: dict[str, Any]) -> Any:
    import datetime

    import kopf

    from modelops.api.modelversion import ModelVersionSpec
    from modelops.controllers import modelversion_handlers as handlers

    now = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
    return handlers._verify(
        cluster,  # type: ignore[arg-type]
        kopf.Body(obj),  # type: ignore[arg-type]
        ModelVersionSpec.model_validate(obj["spec"]),
        desired,
        [],
        [],
        now,
        None,  # type: ignore[arg-type]
    )


def test_the_first_verification_in_a_namespace_creates_its_store_claim_and_publishes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ms.ENV_URI, raising=False)
    cluster = FakeCluster([], {"uploads"})
    desired: dict[str, Any] = {}
    conclusion = _verify(cluster, _mv_object(), desired)
    claim, pod = cluster.created
    assert claim["kind"] == "PersistentVolumeClaim" and claim["metadata"]["name"] == STORE.claim
    assert claim["metadata"]["namespace"] == "team-a"
    assert "--publish" in pod["spec"]["containers"][0]["args"]
    assert conclusion.reason == "Verifying"
    # The next run in the namespace finds the claim and creates only its pod.
    cluster.created.clear()
    _verify(cluster, {**_mv_object(), "metadata": {**_mv_object()["metadata"], "name": "digits-2"}}, {})
    assert [o["kind"] for o in cluster.created] == ["Pod"]


def test_a_finished_run_records_where_it_published(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ms.ENV_URI, raising=False)
    obj = _mv_object()
    answer = {
        "status": "Succeeded",
        "reason": "Succeeded",
        "message": "sha256 matches",
        "artifact": {"path": "/x/model.pt", "sha256": SHA, "sizeBytes": 10, "format": "torchscript"},
        "store": {"key": f"sha256/{SHA}", "reused": False, "sizeBytes": 10},
    }
    pod = {
        "metadata": {
            "name": mvb.pod_name("digits-1", ""),
            "labels": {mvb.LABEL_VERIFIES: "digits-1"},
            "ownerReferences": [{"uid": "uid-1"}],
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": json.dumps(answer)}}}],
        },
    }
    desired: dict[str, Any] = {}
    conclusion = _verify(FakeCluster([pod], {"uploads", STORE.claim}), obj, desired)
    assert conclusion.reason == "Verified"
    assert desired["artifact"]["storeUri"] == STORE.object_uri(SHA)
    assert desired["artifact"]["uri"] == "pvc://uploads/model.pt"


def test_a_verifier_killed_for_memory_says_so() -> None:
    """A large artifact's verification (or publishing) over the pod's memory limit: the condition names
    OOMKilled rather than "no message"."""
    verdict = mv.pod_verdict(
        {
            "status": {
                "phase": "Failed",
                "containerStatuses": [{"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}],
            }
        }
    )
    assert verdict is not None and verdict.reason == "VerificationFailed"
    assert "OOMKilled, exit code 137" in verdict.message
