"""Service accounts on the local plane: admission, bound tokens, and the objects in-cluster clients expect.

A pod that talks to the API server from inside the cluster (the operator installed by helm, kopf's and
the kubernetes client's in-cluster login) relies on pieces a real control plane supplies and the local
plane did not: the ServiceAccount admission plugin (`spec.serviceAccountName` defaulted, a
`kube-api-access-*` projected volume mounted at `/var/run/secrets/kubernetes.io/serviceaccount`), the
TokenRequest subresource (`serviceaccounts/<name>/token`) that mints a pod-bound token, the
`default/kubernetes` Service, and the `kube-root-ca.crt` ConfigMap in every namespace. This module is
those pieces as pure functions so the API server wires each in with one call (see
docs/local-serviceaccounts.md for the exact hook points).

Tokens are JWTs shaped like kube-apiserver's bound tokens (same claims, same audiences and issuer), but
signed HS256 with a per-plane secret (`DIR/sa.key`, 0600) instead of RS256: only this API server ever
checks them, and the standard library has HMAC but no RSA.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

Obj = dict[str, Any]

MOUNT_PATH: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX: Final = "kube-api-access-"
ROOT_CA_CONFIGMAP: Final = "kube-root-ca.crt"
DEFAULT_SERVICE_ACCOUNT: Final = "default"
# kube-apiserver's default --service-account-issuer / --api-audiences in kubeadm and kind clusters.
ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES: Final = (ISSUER,)
# The admission plugin asks for 3607 s: the odd number tells the server the token came from a
# projected volume, so it may extend the JWT's lifetime (warning only after 3607 s) for clients that
# never re-read the file.
PROJECTED_TOKEN_SECONDS: Final = 3607
EXTENDED_TOKEN_SECONDS: Final = 365 * 24 * 3600
DEFAULT_TOKEN_SECONDS: Final = 3600
MIN_TOKEN_SECONDS: Final = 600
# go-jose's default clock-skew allowance, which kube-apiserver uses for exp and nbf.
LEEWAY_SECONDS: Final = 60
# How long a terminating pod's (or account's) tokens keep working, as in kube-apiserver.
TERMINATING_GRACE_SECONDS: Final = 60
KUBERNETES_SERVICE_IP: Final = "127.96.0.1"
KUBERNETES_SERVICE_PORT: Final = 443
MIRROR_POD_ANNOTATION: Final = "kubernetes.io/config.mirror"
ROOT_CA_DESCRIPTION: Final = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
    "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
    "distributions of Kubernetes clusters."
)
# k8s.io/apimachinery/pkg/util/rand: no vowels (no words) and no look-alike characters.
_RAND_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
_KEY_FILE: Final = "sa.key"


# --- admission -------------------------------------------------------------------------------------


class AdmissionDenied(Exception):
    """A pod create the ServiceAccount admission plugin refuses (HTTP 403 Forbidden)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def status(self) -> Obj:
        """The Status object kube-apiserver answers with."""
        return _status(403, "Forbidden", self.message)


def service_account_name(pod: Obj) -> str:
    """The account a pod runs as, as admission will default it (`spec.serviceAccount` is the old name)."""
    spec = pod.get("spec") or {}
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT)


def require_service_account(pod: Obj, namespace: str, service_account: Obj | None) -> None:
    """Refuse a pod whose service account does not exist, worded as kube-apiserver does.

    Call it only once the plane creates a `default` ServiceAccount in every namespace (see
    `default_service_account`), or pods in namespaces without one would be refused.
    """
    if service_account is not None:
        return
    name = service_account_name(pod)
    pod_name = (pod.get("metadata") or {}).get("name") or (pod.get("metadata") or {}).get("generateName")
    raise AdmissionDenied(
        f'pods "{pod_name or ""}" is forbidden: error looking up service account {namespace}/{name}: '
        f'serviceaccount "{name}" not found'
    )


def should_automount(pod: Obj, service_account: Obj | None) -> bool:
    """The pod's `automountServiceAccountToken` wins, then the ServiceAccount's, else true."""
    pod_choice = (pod.get("spec") or {}).get("automountServiceAccountToken")
    if pod_choice is not None:
        return bool(pod_choice)
    sa_choice = (service_account or {}).get("automountServiceAccountToken")
    if sa_choice is not None:
        return bool(sa_choice)
    return True


def token_volume_source() -> Obj:
    """The projected volume source exactly as the admission plugin writes it (defaultMode explicit)."""
    return {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": PROJECTED_TOKEN_SECONDS, "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
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
    }


def admit_pod(
    pod: Obj, *, namespace: str, service_account: Obj | None = None, suffix: str | None = None
) -> Obj:
    """The ServiceAccount admission plugin on pod create; returns the admitted pod (input untouched).

    Defaults `spec.serviceAccountName` (and mirrors it into the deprecated `spec.serviceAccount`, as
    the v1 API shows it) and, unless `automountServiceAccountToken` is false on the pod or on
    `service_account` (the ServiceAccount object, None when not looked up), adds the
    `kube-api-access-<5 chars>` projected volume and a read-only mount of it at
    /var/run/secrets/kubernetes.io/serviceaccount to every init container and container without a
    mount there. Mirror pods are left alone. `suffix` fixes the random name part (tests).
    """
    out = copy.deepcopy(pod)
    meta = out.setdefault("metadata", {})
    if MIRROR_POD_ANNOTATION in (meta.get("annotations") or {}):
        return out
    spec = out.setdefault("spec", {})
    name = service_account_name(out)
    spec["serviceAccountName"] = name
    spec["serviceAccount"] = name
    if not should_automount(out, service_account):
        return out
    volumes: list[Obj] = spec.get("volumes") or []
    existing = next((v for v in volumes if str(v.get("name", "")).startswith(VOLUME_PREFIX)), None)
    if existing is not None:
        volume_name = str(existing["name"])
    else:
        taken = {v.get("name") for v in volumes}
        volume_name = VOLUME_PREFIX + (suffix or _random_suffix())
        while volume_name in taken:
            volume_name = VOLUME_PREFIX + _random_suffix()
    needs_volume = False
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            mounts = container.setdefault("volumeMounts", [])
            if any(m.get("mountPath") == MOUNT_PATH for m in mounts):
                continue
            mounts.append({"name": volume_name, "readOnly": True, "mountPath": MOUNT_PATH})
            needs_volume = True
    if needs_volume and existing is None:
        volumes.append({"name": volume_name, "projected": token_volume_source()})
        spec["volumes"] = volumes
    return out


def _random_suffix() -> str:
    return "".join(secrets.choice(_RAND_ALPHABET) for _ in range(5))


def default_service_account(namespace: str) -> Obj:
    """The `default` ServiceAccount the service-account controller keeps in every namespace."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace},
    }


# --- tokens ----------------------------------------------------------------------------------------


def load_or_create_key(data_dir: str | os.PathLike[str]) -> bytes:
    """The plane's token-signing secret, `DIR/sa.key`: 32 random bytes, created once with mode 0600.

    Kept across restarts so tokens already mounted into running pods stay valid.
    """
    path = Path(data_dir) / _KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 32:
            raise ValueError(
                f"{path}: token signing key is {len(key)} bytes, expected 32; delete the file to make "
                "a new one (tokens already issued stop working)"
            ) from None
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def key_id(secret_key: bytes) -> str:
    """A stable, non-secret name of the key (the JWT `kid`), so a rotated key is recognisable."""
    digest = hashlib.sha256(b"modelops-local-sa-kid\x00" + secret_key).digest()
    return _b64(digest[:16])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sign(secret_key: bytes, header: Obj, claims: Obj) -> str:
    signing_input = _b64(_compact(header)) + "." + _b64(_compact(claims))
    mac = hmac.new(secret_key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64(mac)


def _compact(obj: Obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def issue_token(
    secret_key: bytes,
    namespace: str,
    name: str,
    uid: str,
    *,
    audiences: list[str] | tuple[str, ...] = API_AUDIENCES,
    expiration_seconds: int = DEFAULT_TOKEN_SECONDS,
    bound_pod: Obj | None = None,
    node: Obj | None = None,
    now: float | None = None,
) -> Obj:
    """A service-account token; returns a TokenRequest status (`token`, `expirationTimestamp`).

    Claims as kube-apiserver's bound tokens: `iss`, `sub` (`system:serviceaccount:<ns>:<name>`),
    `aud`, `exp`, `iat`, `nbf`, `jti` and the `kubernetes.io` claim (namespace, serviceaccount, and
    the pod and node when `bound_pod`/`node` are given). A pod-bound token asked for 3607 s carries a
    JWT valid for a year that "warns after" 3607 s, exactly like kube-apiserver's default
    `--service-account-extend-token-expiration`; `expirationTimestamp` stays the requested time, which
    is what the kubelet refreshes by.
    """
    issued = int(now if now is not None else datetime.now(UTC).timestamp())
    lifetime = expiration_seconds
    private: Obj = {
        "namespace": namespace,
        "serviceaccount": {"name": name, "uid": uid},
    }
    if bound_pod is not None:
        pmeta = bound_pod.get("metadata") or {}
        private["pod"] = {"name": pmeta.get("name", ""), "uid": pmeta.get("uid", "")}
        if expiration_seconds == PROJECTED_TOKEN_SECONDS and set(audiences) & set(API_AUDIENCES):
            private["warnafter"] = issued + expiration_seconds
            lifetime = EXTENDED_TOKEN_SECONDS
        node_name = (bound_pod.get("spec") or {}).get("nodeName")
        if node is not None:
            nmeta = node.get("metadata") or {}
            private["node"] = {"name": nmeta.get("name", ""), "uid": nmeta.get("uid", "")}
        elif node_name:
            private["node"] = {"name": node_name}
    jti = str(uuid.uuid4())
    claims: Obj = {
        "aud": list(audiences),
        "exp": issued + lifetime,
        "iat": issued,
        "iss": ISSUER,
        "jti": jti,
        "kubernetes.io": private,
        "nbf": issued,
        "sub": f"system:serviceaccount:{namespace}:{name}",
    }
    token = _sign(secret_key, {"alg": "HS256", "kid": key_id(secret_key)}, claims)
    return {"token": token, "expirationTimestamp": _rfc3339(issued + expiration_seconds)}


@dataclass(frozen=True)
class Identity:
    """Who made a request: what authorization (RBAC) and the audit log see."""

    username: str
    groups: tuple[str, ...]
    namespace: str = ""
    service_account: str = ""
    uid: str = ""
    pod_name: str = ""
    pod_uid: str = ""
    node_name: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)

    def user_info(self) -> Obj:
        """The `user` block of an audit event / SubjectAccessReview."""
        info: Obj = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            info["uid"] = self.uid
        if self.extra:
            info["extra"] = {k: list(v) for k, v in self.extra.items()}
        return info


# The kubeconfig user of `modelops local`: a cluster admin, as kind's kubeconfig user is.
ADMIN: Final = Identity(
    "kubernetes-admin", ("kubeadm:cluster-admins", "system:masters", "system:authenticated")
)


def verify_token(
    secret_key: bytes,
    token: str,
    now: float,
    *,
    audiences: list[str] | tuple[str, ...] = API_AUDIENCES,
) -> Identity | None:
    """The identity of a service-account token this plane issued; None when it is not valid now.

    Checks the signature, issuer, audience (must share one with `audiences`), `nbf`/`exp` (60 s
    leeway) and that `sub` agrees with the `kubernetes.io` claim. Whether the bound pod and the
    account still exist is the caller's check (`still_bound`). Never raises on malformed input.
    """
    try:
        head_b64, claims_b64, sig_b64 = token.split(".")
        header = json.loads(_unb64(head_b64))
        if header.get("alg") != "HS256":
            return None
        expected = hmac.new(secret_key, f"{head_b64}.{claims_b64}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(sig_b64)):
            return None
        claims = json.loads(_unb64(claims_b64))
        if claims.get("iss") != ISSUER:
            return None
        aud = claims.get("aud")
        aud_list = [aud] if isinstance(aud, str) else list(aud or [])
        if not set(aud_list) & set(audiences):
            return None
        if now - LEEWAY_SECONDS > float(claims["exp"]) or now + LEEWAY_SECONDS < float(claims["nbf"]):
            return None
        private = claims["kubernetes.io"]
        namespace = str(private["namespace"])
        sa = private["serviceaccount"]
        if claims.get("sub") != f"system:serviceaccount:{namespace}:{sa['name']}":
            return None
        pod = private.get("pod") or {}
        node = private.get("node") or {}
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeError):
        return None
    extra: dict[str, list[str]] = {}
    if pod:
        extra["authentication.kubernetes.io/pod-name"] = [str(pod.get("name", ""))]
        extra["authentication.kubernetes.io/pod-uid"] = [str(pod.get("uid", ""))]
    if node:
        extra["authentication.kubernetes.io/node-name"] = [str(node.get("name", ""))]
        if node.get("uid"):
            extra["authentication.kubernetes.io/node-uid"] = [str(node["uid"])]
    if claims.get("jti"):
        extra["authentication.kubernetes.io/credential-id"] = [f"JTI={claims['jti']}"]
    return Identity(
        username=f"system:serviceaccount:{namespace}:{sa['name']}",
        groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        namespace=namespace,
        service_account=str(sa["name"]),
        uid=str(sa.get("uid", "")),
        pod_name=str(pod.get("name", "")),
        pod_uid=str(pod.get("uid", "")),
        node_name=str(node.get("name", "")),
        extra=extra,
    )


def still_bound(
    identity: Identity, service_account: Obj | None, pod: Obj | None, *, now: float | None = None
) -> bool:
    """Whether the objects a token names still exist with the same uids, as kube-apiserver requires.

    `service_account` is the stored ServiceAccount `identity.namespace/identity.service_account`,
    `pod` the stored pod `identity.namespace/identity.pod_name` (ignored for tokens bound to no pod);
    pass None for one that does not exist. A token of a deleted-and-recreated object is refused, and
    (given `now`) so is one whose account or pod has been terminating for more than 60 s: the grace
    kube-apiserver leaves a pod to finish talking to the API while it shuts down.
    """
    if service_account is None or (service_account.get("metadata") or {}).get("uid") != identity.uid:
        return False
    if _deleted_long_ago(service_account, now):
        return False
    if not identity.pod_name:
        return True
    if pod is None or (pod.get("metadata") or {}).get("uid") != identity.pod_uid:
        return False
    return not _deleted_long_ago(pod, now)


def _deleted_long_ago(obj: Obj, now: float | None) -> bool:
    stamp = (obj.get("metadata") or {}).get("deletionTimestamp")
    if now is None or not stamp:
        return False
    try:
        deleted = datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return False
    return deleted < now - TERMINATING_GRACE_SECONDS


def authenticate(authorization: str, *, admin_token: str, secret_key: bytes, now: float) -> Identity | None:
    """The identity behind an `Authorization` header: the kubeconfig's token or a service-account token.

    None means 401. The caller should then check `still_bound` for service-account identities.
    """
    given = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
    if not given:
        return None
    if hmac.compare_digest(given.encode(), admin_token.encode()):
        return ADMIN
    if given.count(".") != 2:
        return None
    return verify_token(secret_key, given, now)


def _status(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    status: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        status["details"] = details
    return status


def token_request(
    body: Obj,
    sa_obj: Obj | None,
    key: bytes,
    now: float,
    *,
    bound_object: Obj | None = None,
    node: Obj | None = None,
    namespace: str = "",
    name: str = "",
) -> tuple[int, Obj]:
    """`POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: (HTTP status, response object).

    `sa_obj` is the stored ServiceAccount (None: 404). When `body.spec.boundObjectRef` names a Pod
    (or Secret/Node), the caller looks it up and passes it as `bound_object` (None: 404); `node` is
    the pod's Node when known, for the node claim. Answers 201 with the TokenRequest (spec defaulted,
    status filled) or a Status worded like kube-apiserver's.
    """
    meta = (sa_obj or {}).get("metadata") or {}
    namespace = namespace or str(meta.get("namespace") or "")
    name = name or str(meta.get("name") or "")
    if sa_obj is None:
        return 404, _status(
            404,
            "NotFound",
            f'serviceaccounts "{name}" not found',
            {"name": name, "kind": "serviceaccounts"},
        )
    if not isinstance(body, dict) or body.get("kind", "TokenRequest") != "TokenRequest":
        return 400, _status(
            400, "BadRequest", "the body must be a TokenRequest (apiVersion authentication.k8s.io/v1)"
        )
    spec = dict(body.get("spec") or {})
    causes: list[Obj] = []
    seconds = spec.get("expirationSeconds", DEFAULT_TOKEN_SECONDS)
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        causes.append(_cause("spec.expirationSeconds", seconds, "must be an integer number of seconds"))
    elif seconds < MIN_TOKEN_SECONDS:
        causes.append(
            _cause("spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes")
        )
    elif seconds > 1 << 32:
        causes.append(
            _cause("spec.expirationSeconds", seconds, "may not specify a duration larger than 2^32 seconds")
        )
    audiences = spec.get("audiences") or list(API_AUDIENCES)
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        causes.append(_cause("spec.audiences", audiences, "must be a list of non-empty strings"))
    ref = spec.get("boundObjectRef")
    if ref is not None:
        kind = (ref or {}).get("kind")
        if kind not in ("Pod", "Secret", "Node"):
            causes.append(
                _cause(
                    "spec.boundObjectRef.kind",
                    kind,
                    'supported values: "Pod", "Node", "Secret"',
                    "Unsupported value",
                )
            )
        if (ref or {}).get("apiVersion", "v1") != "v1":
            causes.append(
                _cause(
                    "spec.boundObjectRef.apiVersion",
                    ref.get("apiVersion"),
                    'supported values: "v1"',
                    "Unsupported value",
                )
            )
    if causes:
        message = f'TokenRequest.authentication.k8s.io "{name}" is invalid: ' + ", ".join(
            c["message"] for c in causes
        )
        return 422, _status(
            422,
            "Invalid",
            message,
            {"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest", "causes": causes},
        )
    pod: Obj | None = None
    if ref is not None:
        kind = str(ref["kind"])
        plural = kind.lower() + "s"
        if bound_object is None:
            return 404, _status(
                404,
                "NotFound",
                f'{plural} "{ref.get("name", "")}" not found',
                {"name": ref.get("name", ""), "kind": plural},
            )
        actual_uid = (bound_object.get("metadata") or {}).get("uid")
        if ref.get("uid") and ref["uid"] != actual_uid:
            return 409, _status(
                409,
                "Conflict",
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
                "The object might have been deleted and then recreated",
            )
        if kind == "Pod":
            pod = bound_object
            if service_account_name(pod) != name:
                return 400, _status(
                    400,
                    "BadRequest",
                    f'cannot bind token for serviceaccount "{name}" to pod running with different '
                    "serviceaccount name.",
                )
        ref = {**ref, "apiVersion": "v1", "uid": actual_uid}
        spec["boundObjectRef"] = ref
    spec["audiences"] = audiences
    spec["expirationSeconds"] = seconds
    status = issue_token(
        key,
        namespace,
        name,
        str(meta.get("uid") or ""),
        audiences=audiences,
        expiration_seconds=seconds,
        bound_pod=pod,
        node=node,
        now=now,
    )
    response: Obj = {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
        "spec": spec,
        "status": status,
    }
    return 201, response


def _cause(path: str, value: Any, detail: str, kind: str = "Invalid value") -> Obj:
    shown = json.dumps(value) if not isinstance(value, int) or isinstance(value, bool) else str(value)
    return {"reason": "FieldValueInvalid", "message": f"{path}: {kind}: {shown}: {detail}", "field": path}


# --- objects the control plane publishes -------------------------------------------------------------


def kubernetes_service_objects(apiserver_host: str, port: int) -> list[Obj]:
    """`default/kubernetes`: Service, Endpoints and EndpointSlice, as kube-apiserver maintains them.

    The Service has the fixed ClusterIP 127.96.0.1 (never handed out: the allocator starts at .10) and
    port 443 named `https`; the Endpoints point at the real listener `apiserver_host:port`, so the
    local service proxy forwards TLS untouched to the API server, whose certificate must then also
    name the Service address (`required_sans()`). The Service has no selector, so the endpoints
    controller leaves the Endpoints alone. Create them at startup and re-apply the Endpoints whenever
    the port changes (a restart with `--port 0`).
    """
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": KUBERNETES_SERVICE_IP,
            "clusterIPs": [KUBERNETES_SERVICE_IP],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "None",
            "ports": [
                {"name": "https", "port": KUBERNETES_SERVICE_PORT, "protocol": "TCP", "targetPort": port}
            ],
        },
    }
    endpoints: Obj = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [
            {
                "addresses": [{"ip": apiserver_host}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        ],
    }
    endpoint_slice: Obj = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [apiserver_host], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    return [service, endpoints, endpoint_slice]


def required_sans() -> list[str]:
    """Subject alternative names the serving certificate needs beyond IP:127.0.0.1, DNS:localhost.

    Clients inside pods reach the API server as `https://127.96.0.1:443` (KUBERNETES_SERVICE_HOST)
    or `https://kubernetes.default.svc`; the proxy forwards the TLS stream unchanged, so the
    certificate the client checks is the API server's own. Same list as kube-apiserver's
    self-signed certificate. In openssl's `subjectAltName=` syntax.
    """
    return [
        f"IP:{KUBERNETES_SERVICE_IP}",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]


def missing_sans(cert_path: str | os.PathLike[str]) -> list[str]:
    """Which of `required_sans()` a PEM certificate lacks (all of them when it cannot be read).

    A plane directory made before the Service existed has a certificate without them; the API
    server should then make a new serving certificate (same CA, so kubeconfigs stay valid).
    Uses the openssl CLI, as the certificate generation does.
    """
    try:
        done = subprocess.run(
            ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", os.fspath(cert_path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return required_sans()
    present = {
        entry.strip().replace("IP Address:", "IP:")
        for line in done.stdout.splitlines()[1:]
        for entry in line.split(",")
    }
    return [san for san in required_sans() if san not in present]


def root_ca_configmap(ca_pem: str, namespace: str) -> Obj:
    """`kube-root-ca.crt` as the root-CA publisher (kube-controller-manager) writes it in a namespace."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ROOT_CA_CONFIGMAP,
            "namespace": namespace,
            "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION},
        },
        "data": {"ca.crt": ca_pem},
    }
