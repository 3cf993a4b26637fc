"""What in-pod clients need from the API server: the ServiceAccount admission plugin, TokenRequest,
service-account token authentication, `default/kubernetes` and `kube-root-ca.crt` (the token and volume
logic itself is `serviceaccounts.py`, tested in tests/unit)."""

from __future__ import annotations

import json
import uuid

from apiserver_harness import ApiServer, Kubectl

POD = "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{extra}  containers: [{{name: main, image: ghcr.io/modelops/worker:1}}]\n"


def _ns(kubectl: Kubectl) -> str:
    name = f"sa-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    return name


def test_kubernetes_service_and_root_ca(apiserver: ApiServer, kubectl: Kubectl) -> None:
    svc = json.loads(kubectl("get", "service", "kubernetes", "-n", "default", "-o", "json").stdout)
    assert svc["spec"]["clusterIP"] == "127.96.0.1" and svc["spec"]["ports"][0]["port"] == 443
    ep = json.loads(kubectl("get", "endpoints", "kubernetes", "-n", "default", "-o", "json").stdout)
    port = int(apiserver.url.rsplit(":", 1)[1])
    assert (
        ep["subsets"][0]["addresses"][0]["ip"] == "127.0.0.1" and ep["subsets"][0]["ports"][0]["port"] == port
    )
    ns = _ns(kubectl)
    ca = json.loads(kubectl("get", "configmap", "kube-root-ca.crt", "-n", ns, "-o", "json").stdout)
    assert ca["data"]["ca.crt"] == apiserver.ca.read_text()


def test_pods_get_the_token_volume_and_need_their_account(kubectl: Kubectl) -> None:
    ns = _ns(kubectl)
    kubectl("apply", "-f", "-", stdin=POD.format(name="p", ns=ns, extra=""))
    pod = json.loads(kubectl("get", "pod", "p", "-n", ns, "-o", "json").stdout)
    assert pod["spec"]["serviceAccountName"] == "default"
    volume = pod["spec"]["volumes"][0]
    assert volume["name"].startswith("kube-api-access-")
    mount = pod["spec"]["containers"][0]["volumeMounts"][0]
    assert mount == {
        "name": volume["name"],
        "readOnly": True,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    }
    result = kubectl("apply", "-f", "-", stdin=POD.format(name="q", ns=ns, extra="  serviceAccountName: nobody\n"),
                     check=False)  # fmt: skip
    assert result.returncode != 0
    assert (
        "error looking up service account" in result.stderr
        and 'serviceaccount "nobody" not found' in result.stderr
    )


def test_bound_tokens_authenticate_until_the_pod_goes(kubectl: Kubectl) -> None:
    ns = _ns(kubectl)
    kubectl("apply", "-f", "-", stdin=POD.format(name="holder", ns=ns, extra=""))
    token = kubectl("create", "token", "default", "-n", ns, "--bound-object-kind=Pod",
                    "--bound-object-name=holder").stdout.strip()  # fmt: skip
    whoami = json.loads(kubectl("--token", token, "auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:default"
    assert "holder" in kubectl("--token", token, "get", "pods", "-n", ns).stdout
    kubectl("delete", "pod", "holder", "-n", ns, "--grace-period=0", "--force")
    result = kubectl("--token", token, "get", "pods", "-n", ns, check=False)
    assert result.returncode != 0 and "Unauthorized" in result.stderr
