"""Service accounts on the local plane: admission as kube-apiserver does it, and the tokens it hands out."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from modelops_local.apiserver import serviceaccounts as sa

NOW = 1_764_000_000.0
KEY = b"k" * 32


def pod(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "op-0", "namespace": "modelops-system", "uid": "pod-uid"},
        "spec": {"containers": [{"name": "operator", "image": "ghcr.io/modelops/operator:dev"}]},
    }
    body["spec"].update(spec)
    return body


def account(name: str = "default", uid: str = "sa-uid", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": "modelops-system", "uid": uid},
        **extra,
    }


# --- admission ---------------------------------------------------------------------------------------


def test_admission_adds_the_projected_token_volume_exactly_as_kube_apiserver() -> None:
    admitted = sa.admit_pod(pod(), namespace="modelops-system", service_account=account(), suffix="x7b2q")
    spec = admitted["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    # What `kubectl get pod -o yaml` shows on a real 1.33 cluster.
    assert spec["volumes"] == [
        {
            "name": "kube-api-access-x7b2q",
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ],
            },
        }
    ]
    assert spec["containers"][0]["volumeMounts"] == [
        {
            "name": "kube-api-access-x7b2q",
            "readOnly": True,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        }
    ]
    kubernetes_validate.validate(admitted, "1.33", strict=True)


def test_admission_picks_a_random_five_character_volume_name_and_leaves_the_input_alone() -> None:
    original = pod()
    names = {sa.admit_pod(original, namespace="ns")["spec"]["volumes"][0]["name"] for _ in range(20)}
    assert len(names) > 1
    for name in names:
        suffix = name.removeprefix("kube-api-access-")
        assert len(suffix) == 5 and set(suffix) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert "volumes" not in original["spec"] and "serviceAccountName" not in original["spec"]


def test_every_container_and_init_container_gets_the_mount_unless_it_has_one_there() -> None:
    own = {"name": "mine", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    body = pod(
        initContainers=[{"name": "init", "image": "ghcr.io/modelops/worker:dev"}],
        containers=[
            {"name": "a", "image": "ghcr.io/modelops/worker:dev"},
            {"name": "b", "image": "ghcr.io/modelops/worker:dev", "volumeMounts": [own]},
        ],
        volumes=[{"name": "mine", "emptyDir": {}}],
    )
    spec = sa.admit_pod(body, namespace="ns", suffix="abcde")["spec"]
    mount = {"name": "kube-api-access-abcde", "readOnly": True, "mountPath": sa.MOUNT_PATH}
    assert spec["initContainers"][0]["volumeMounts"] == [mount]
    assert spec["containers"][0]["volumeMounts"] == [mount]
    assert spec["containers"][1]["volumeMounts"] == [own]
    assert [v["name"] for v in spec["volumes"]] == ["mine", "kube-api-access-abcde"]


def test_no_volume_when_every_container_already_mounts_something_there() -> None:
    body = pod(
        containers=[
            {
                "name": "a",
                "image": "ghcr.io/modelops/worker:dev",
                "volumeMounts": [{"name": "v", "mountPath": sa.MOUNT_PATH}],
            }
        ],
        volumes=[{"name": "v", "emptyDir": {}}],
    )
    assert sa.admit_pod(body, namespace="ns")["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]


@pytest.mark.parametrize(
    ("pod_choice", "sa_choice", "mounted"),
    [
        (None, None, True),
        (False, None, False),
        (None, False, False),
        (True, False, True),
        (False, True, False),
    ],
)
def test_automount_pod_choice_wins_over_the_service_accounts(
    pod_choice: bool | None, sa_choice: bool | None, mounted: bool
) -> None:
    spec_extra = {} if pod_choice is None else {"automountServiceAccountToken": pod_choice}
    sa_extra = {} if sa_choice is None else {"automountServiceAccountToken": sa_choice}
    admitted = sa.admit_pod(pod(**spec_extra), namespace="ns", service_account=account(**sa_extra))
    assert bool(admitted["spec"].get("volumes")) is mounted
    assert admitted["spec"]["serviceAccountName"] == "default"


def test_named_and_legacy_service_account_fields_and_mirror_pods() -> None:
    assert (
        sa.admit_pod(pod(serviceAccountName="modelops"), namespace="ns")["spec"]["serviceAccount"]
        == "modelops"
    )
    assert (
        sa.admit_pod(pod(serviceAccount="legacy"), namespace="ns")["spec"]["serviceAccountName"] == "legacy"
    )
    mirror = pod()
    mirror["metadata"]["annotations"] = {sa.MIRROR_POD_ANNOTATION: "x"}
    assert sa.admit_pod(mirror, namespace="ns") == mirror


def test_a_pod_whose_service_account_does_not_exist_is_forbidden_with_kube_apiservers_words() -> None:
    with pytest.raises(sa.AdmissionDenied) as caught:
        sa.require_service_account(pod(serviceAccountName="ghost"), "modelops-system", None)
    assert caught.value.message == (
        'pods "op-0" is forbidden: error looking up service account modelops-system/ghost: '
        'serviceaccount "ghost" not found'
    )
    assert caught.value.status()["code"] == 403 and caught.value.status()["reason"] == "Forbidden"
    sa.require_service_account(pod(), "modelops-system", account())


# --- tokens ------------------------------------------------------------------------------------------


def claims_of(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def test_the_signing_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    key = sa.load_or_create_key(tmp_path)
    assert len(key) == 32 and (tmp_path / "sa.key").stat().st_mode & 0o777 == 0o600
    assert sa.load_or_create_key(tmp_path) == key
    (tmp_path / "sa.key").write_bytes(b"short")
    with pytest.raises(ValueError, match="delete the file"):
        sa.load_or_create_key(tmp_path)


def test_a_token_carries_the_claims_of_a_bound_token_and_verifies_to_the_service_account() -> None:
    status = sa.issue_token(KEY, "ml", "trainer", "sa-uid", expiration_seconds=3600, now=NOW)
    assert status["expirationTimestamp"] == "2025-11-24T17:00:00Z"
    claims = claims_of(status["token"])
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["sub"] == "system:serviceaccount:ml:trainer"
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert claims["iat"] == claims["nbf"] == NOW and claims["exp"] == NOW + 3600
    assert claims["kubernetes.io"] == {
        "namespace": "ml",
        "serviceaccount": {"name": "trainer", "uid": "sa-uid"},
    }
    who = sa.verify_token(KEY, status["token"], NOW + 10)
    assert who is not None
    assert who.username == "system:serviceaccount:ml:trainer"
    assert who.groups == ("system:serviceaccounts", "system:serviceaccounts:ml", "system:authenticated")
    assert (who.namespace, who.service_account, who.uid) == ("ml", "trainer", "sa-uid")


def test_tokens_that_must_not_work_do_not() -> None:
    token = sa.issue_token(KEY, "ml", "trainer", "u", expiration_seconds=600, now=NOW)["token"]
    assert sa.verify_token(KEY, token, NOW + 600 + 61) is None  # expired (past the 60 s leeway)
    assert sa.verify_token(KEY, token, NOW + 600 + 59) is not None
    assert sa.verify_token(KEY, token, NOW - 120) is None  # not yet valid
    assert sa.verify_token(b"x" * 32, token, NOW) is None  # another plane's key
    head, _body, sig = token.split(".")
    forged = dict(claims_of(token), sub="system:serviceaccount:kube-system:admin")
    forged_body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert sa.verify_token(KEY, f"{head}.{forged_body}.{sig}", NOW) is None
    other_audience = sa.issue_token(KEY, "ml", "t", "u", audiences=["vault"], now=NOW)["token"]
    assert sa.verify_token(KEY, other_audience, NOW) is None
    assert sa.verify_token(KEY, other_audience, NOW, audiences=["vault"]) is not None
    for junk in ("", "a.b", "a.b.c", "....", token + "x"):
        assert sa.verify_token(KEY, junk, NOW) is None


def test_a_projected_pod_token_lasts_a_year_but_reports_its_requested_expiry() -> None:
    bound = pod(serviceAccountName="default", nodeName="node-1")
    status = sa.issue_token(KEY, "ns", "default", "u", expiration_seconds=3607, bound_pod=bound, now=NOW)
    claims = claims_of(status["token"])
    assert claims["exp"] == NOW + 365 * 24 * 3600
    assert claims["kubernetes.io"]["warnafter"] == NOW + 3607
    assert claims["kubernetes.io"]["pod"] == {"name": "op-0", "uid": "pod-uid"}
    assert claims["kubernetes.io"]["node"] == {"name": "node-1"}
    assert status["expirationTimestamp"] == "2025-11-24T17:00:07Z"
    who = sa.verify_token(KEY, status["token"], NOW + 7200)
    assert (
        who is not None and who.pod_name == "op-0" and who.pod_uid == "pod-uid" and who.node_name == "node-1"
    )
    assert who.extra["authentication.kubernetes.io/pod-name"] == ["op-0"]


def test_a_token_stops_working_when_its_pod_or_account_is_gone_or_recreated() -> None:
    bound = pod()
    token = sa.issue_token(KEY, "modelops-system", "default", "sa-uid", bound_pod=bound, now=NOW)["token"]
    who = sa.verify_token(KEY, token, NOW)
    assert who is not None
    assert sa.still_bound(who, account(), bound)
    assert not sa.still_bound(who, account(), None)
    recreated = pod()
    recreated["metadata"]["uid"] = "new-uid"
    assert not sa.still_bound(who, account(), recreated)
    assert not sa.still_bound(who, account(uid="other"), bound)
    assert not sa.still_bound(who, None, bound)
    # A terminating pod keeps its token for a minute, to finish talking to the API while it stops.
    terminating = pod()
    terminating["metadata"]["deletionTimestamp"] = "2025-11-24T16:00:00Z"  # = NOW
    assert sa.still_bound(who, account(), terminating, now=NOW + 59)
    assert not sa.still_bound(who, account(), terminating, now=NOW + 61)


def test_authenticate_tells_the_admin_from_service_accounts_and_strangers() -> None:
    token = sa.issue_token(KEY, "ml", "trainer", "u", now=NOW)["token"]
    assert (
        sa.authenticate("Bearer admin-secret", admin_token="admin-secret", secret_key=KEY, now=NOW)
        is sa.ADMIN
    )
    who = sa.authenticate(f"bearer {token}", admin_token="admin-secret", secret_key=KEY, now=NOW)
    assert who is not None and who.username == "system:serviceaccount:ml:trainer"
    for header in ("", "Bearer ", "Bearer wrong", "Basic abc", token):
        assert sa.authenticate(header, admin_token="admin-secret", secret_key=KEY, now=NOW) is None


# --- TokenRequest ------------------------------------------------------------------------------------


def request(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def test_token_request_bound_to_a_pod_as_the_kubelet_sends_it() -> None:
    bound = pod()
    body = request(
        expirationSeconds=3607,
        boundObjectRef={"apiVersion": "v1", "kind": "Pod", "name": "op-0", "uid": "pod-uid"},
    )
    code, answer = sa.token_request(body, account(), KEY, NOW, bound_object=bound)
    assert code == 201
    assert answer["kind"] == "TokenRequest" and answer["apiVersion"] == "authentication.k8s.io/v1"
    assert answer["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    assert answer["status"]["expirationTimestamp"] == "2025-11-24T17:00:07Z"
    who = sa.verify_token(KEY, answer["status"]["token"], NOW)
    assert who is not None and who.pod_uid == "pod-uid" and who.uid == "sa-uid"
    kubernetes_validate.validate(answer, "1.33", strict=True)


def test_token_request_defaults_to_an_hour_for_the_api_server() -> None:
    code, answer = sa.token_request(request(), account(), KEY, NOW)
    assert code == 201 and answer["spec"]["expirationSeconds"] == 3600
    assert claims_of(answer["status"]["token"])["exp"] == NOW + 3600


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (request(expirationSeconds=599), 422, "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"),
        (request(expirationSeconds=2**33), 422, "larger than 2^32 seconds"),
        (request(boundObjectRef={"kind": "ConfigMap", "name": "x"}), 422, 'spec.boundObjectRef.kind: Unsupported value: "ConfigMap"'),
        (request(boundObjectRef={"kind": "Pod", "name": "gone"}), 404, 'pods "gone" not found'),
        ({"kind": "Pod"}, 400, "must be a TokenRequest"),
    ],
)  # fmt: skip
def test_token_request_refusals_name_the_field(body: dict[str, Any], code: int, words: str) -> None:
    got, status = sa.token_request(body, account(), KEY, NOW)
    assert got == code and status["kind"] == "Status" and status["code"] == code
    assert words in status["message"]


def test_token_request_refuses_a_recreated_pod_a_pod_of_another_account_and_a_missing_account() -> None:
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "op-0", "uid": "old-uid"}
    code, status = sa.token_request(request(boundObjectRef=ref), account(), KEY, NOW, bound_object=pod())
    assert code == 409 and "does not match the UID in record" in status["message"]
    ref["uid"] = "pod-uid"
    code, status = sa.token_request(
        request(boundObjectRef=ref),
        account("other"),
        KEY,
        NOW,
        bound_object=pod(serviceAccountName="default"),
    )
    assert code == 400 and 'serviceaccount "other" to pod running with different' in status["message"]
    code, status = sa.token_request(request(), None, KEY, NOW, namespace="ns", name="ghost")
    assert code == 404 and status["message"] == 'serviceaccounts "ghost" not found'


# --- published objects -------------------------------------------------------------------------------


def test_the_kubernetes_service_points_at_the_api_servers_real_listener() -> None:
    service, endpoints, endpoint_slice = sa.kubernetes_service_objects("127.0.0.1", 40123)
    assert service["metadata"] == {
        "name": "kubernetes",
        "namespace": "default",
        "labels": {"component": "apiserver", "provider": "kubernetes"},
    }
    assert service["spec"]["clusterIP"] == "127.96.0.1" and "selector" not in service["spec"]
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 40123}
    ]
    assert endpoints["subsets"] == [
        {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 40123, "protocol": "TCP"}]}
    ]
    assert endpoint_slice["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    for obj in (service, endpoints, endpoint_slice):
        kubernetes_validate.validate(obj, "1.33", strict=True)
    assert "IP:127.96.0.1" in sa.required_sans() and "DNS:kubernetes.default.svc" in sa.required_sans()


def test_root_ca_configmap_is_what_the_publisher_writes() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    cm = sa.root_ca_configmap(pem, "ml")
    assert cm["metadata"]["name"] == "kube-root-ca.crt" and cm["metadata"]["namespace"] == "ml"
    assert cm["data"] == {"ca.crt": pem}
    assert "kubernetes.default.svc" in cm["metadata"]["annotations"]["kubernetes.io/description"]
    kubernetes_validate.validate(cm, "1.33", strict=True)
    kubernetes_validate.validate(sa.default_service_account("ml"), "1.33", strict=True)


def _self_signed(directory: Path, sans: str) -> Path:
    cert = directory / f"{abs(hash(sans))}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(directory / "k.pem"), "-out", str(cert), "-days", "1", "-subj", "/CN=t",
         "-addext", f"subjectAltName={sans}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def test_missing_sans_tells_whether_the_serving_certificate_must_be_remade(tmp_path: Path) -> None:
    old = _self_signed(tmp_path, "IP:127.0.0.1,DNS:localhost")
    assert sa.missing_sans(old) == sa.required_sans()
    new = _self_signed(tmp_path, ",".join(["IP:127.0.0.1", "DNS:localhost", *sa.required_sans()]))
    assert sa.missing_sans(new) == []
    assert sa.missing_sans(tmp_path / "absent.crt") == sa.required_sans()
