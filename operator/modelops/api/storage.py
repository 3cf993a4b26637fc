"""Storage locations and the credentials to reach them: one grammar for every URI the API accepts.

Datasets, artifact sources, backup destinations and the model store all name their data the same way,
so a user learns one form and every pod kind reaches it through one worker library
(`modelops_worker.storage`). This module is the contract of that: the URI patterns the CRDs check at
apply, the keys of a credentials Secret, how the Secret reaches a pod (files, never argv), and the
reasons and exit codes the worker reports. No I/O here: the operator imports it.

URIs (the scheme picks the backend):

- `pvc://<claim>/<path>`: a file (or directory) on a PersistentVolumeClaim of the object's namespace,
  mounted into the pod as today;
- `s3://<bucket>/<key>`: Amazon S3 or any S3-compatible store (MinIO, Ceph RGW, R2, GCS's S3 API),
  the endpoint and region from the credentials Secret;
- `gs://<bucket>/<key>`: Google Cloud Storage; `az://<container>/<path>`: Azure Blob Storage (the
  account from the Secret); `https://<host>/<path>`: a plain HTTPS server (read only, no listing).

A *prefix* (a dataset of shards, a backup destination) is the same form ending in `/`, or a bare
bucket (`s3://bucket`).

Credentials: `credentialsSecret: {name}` names a Secret in the object's namespace whose keys are the
`KEY_*` constants below (the AWS names S3 tools already use). The Secret is mounted read-only into the
pod as files (mode 0400) at a directory the worker is told through `ENV_CREDENTIALS_DIR`; its values
are never in argv, the environment of other containers, logs, status or events. Without a Secret the
worker uses the pod's own identity: the service account (`serviceAccountName`) with IRSA / EKS Pod
Identity (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN` injected by the webhook), GKE workload
identity or Azure workload identity, or the node's instance metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from modelops.api.common import rules

# runconfig's EXIT_BAD_CONFIG and EXIT_BAD_DATA (runconfig imports the kinds, which import this module;
# a unit test holds the two equal).
EXIT_BAD_CONFIG = 64
EXIT_BAD_DATA = 65

Scheme = Literal["pvc", "s3", "gs", "az", "https"]
SCHEMES: tuple[Scheme, ...] = ("pvc", "s3", "gs", "az", "https")
OBJECT_STORE_SCHEMES: tuple[Scheme, ...] = ("s3", "gs", "az", "https")

# -- URI grammar ---------------------------------------------------------------------------------------

# A key or path: not absolute, no control characters, no surrounding whitespace (as RELATIVE_PATH).
_KEY = r"[^/ \x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^/ \x00-\x1f\x7f])?"
_CLAIM = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
# S3 bucket names: 3-63 lowercase letters, digits, '.' and '-' (no '..', checked by a rule).
_S3_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
# GCS buckets also allow '_'; Azure containers are 3-63 lowercase letters, digits and '-'.
_GS_BUCKET = r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]"
_AZ_CONTAINER = r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]"
_HTTPS_HOST = r"[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?"

_OBJECT_FORMS = (
    rf"pvc://{_CLAIM}/{_KEY}",
    rf"s3://{_S3_BUCKET}/{_KEY}",
    rf"gs://{_GS_BUCKET}/{_KEY}",
    rf"az://{_AZ_CONTAINER}/{_KEY}",
    rf"https://{_HTTPS_HOST}/{_KEY}",
)
OBJECT_URI_PATTERN = "^(" + "|".join(_OBJECT_FORMS) + ")$"
"""One object (or one file on a claim): `<scheme>://<bucket or claim>/<key>`, the key not ending in '/'."""

# An artifact: one object, or a directory (a Hugging Face model) whose key may end in '/'.
_DIR_KEY = r"[^/ \x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^ \x00-\x1f\x7f])?"
ARTIFACT_URI_PATTERN = "^(" + "|".join(f.replace(_KEY, _DIR_KEY) for f in _OBJECT_FORMS) + ")$"
"""An object or a directory: `<scheme>://<bucket or claim>/<key>`, the key may end in '/'."""

# A prefix: the bucket alone, or a key that may end in '/'.
_PREFIX_KEY = r"([^/ \x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^ \x00-\x1f\x7f])?)?"
_PREFIX_FORMS = (
    rf"pvc://{_CLAIM}(/{_PREFIX_KEY})?",
    rf"s3://{_S3_BUCKET}(/{_PREFIX_KEY})?",
    rf"gs://{_GS_BUCKET}(/{_PREFIX_KEY})?",
    rf"az://{_AZ_CONTAINER}(/{_PREFIX_KEY})?",
)
PREFIX_URI_PATTERN = "^(" + "|".join(_PREFIX_FORMS) + ")$"
"""A directory of a claim or a prefix of a bucket (https has no listing, so no prefixes)."""


def uri_rules(field: str, example: str) -> dict[str, Any]:
    """CEL rules of a URI field: no '..' segments, no '..' in an S3 bucket, each naming the field."""
    return rules(
        (
            "!self.matches('^[a-z0-9]+://[^/]*/(.*/)?[.][.](/|$)')",
            f"{field} must not contain '..' segments: give the object's own key, e.g. {example}",
        ),
        (
            "!self.matches('^s3://[^/]*[.][.]')",
            f"{field}: an S3 bucket name has no two adjacent periods",
        ),
    )


def credentials_rule(owner: str, uri_field: str) -> tuple[str, str]:
    """The CEL rule on the object holding `uri` and `credentialsSecret`: a Secret needs an object store."""
    return (
        "!has(self.credentialsSecret) || (has(self.uri) && !self.uri.startsWith('pvc://'))",
        f"{owner}.credentialsSecret applies only to an object storage {uri_field} (s3://, gs://, az://, "
        "https://); a pvc:// claim needs no credentials",
    )


CREDENTIALS_SECRET_DESCRIPTION = (
    "Secret (same namespace) with the object store's credentials, mounted read-only as files into the "
    "pod: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, optionally AWS_SESSION_TOKEN, AWS_ENDPOINT_URL "
    "(an S3-compatible endpoint such as https://minio.example:9000), AWS_REGION and ca.crt (PEM CA "
    "bundle of a self-signed endpoint); for gs:// GOOGLE_SERVICE_ACCOUNT_KEY (JSON); for az:// "
    "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN. Without it "
    "the pod's own identity is used (its service account with IRSA / workload identity)."
)


@dataclass(frozen=True)
class ParsedUri:
    """A URI split into scheme, bucket (or claim, container, host) and key (may be empty for a prefix)."""

    scheme: Scheme
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}" if self.key else f"{self.scheme}://{self.bucket}"

    @property
    def is_object_store(self) -> bool:
        return self.scheme != "pvc"


def parse_uri(uri: str) -> ParsedUri:
    """Split a URI the API accepted; ValueError naming the accepted forms for anything else."""
    match = re.match(r"^([a-z0-9]+)://([^/]+)(?:/(.*))?$", uri)
    if not match or match.group(1) not in SCHEMES:
        raise ValueError(
            f"{uri!r} is not a storage URI: use pvc://<claim>/<path>, s3://<bucket>/<key>, gs://<bucket>/<key>, "
            "az://<container>/<path> or https://<host>/<path>"
        )
    scheme: Scheme = match.group(1)  # type: ignore[assignment]
    return ParsedUri(scheme, match.group(2), match.group(3) or "")


# -- the credentials Secret and how pods see it ---------------------------------------------------------

KEY_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
KEY_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
KEY_SESSION_TOKEN = "AWS_SESSION_TOKEN"
KEY_ENDPOINT = "AWS_ENDPOINT_URL"
KEY_REGION = "AWS_REGION"
KEY_CA_BUNDLE = "ca.crt"
KEY_GOOGLE_SERVICE_ACCOUNT = "GOOGLE_SERVICE_ACCOUNT_KEY"
KEY_AZURE_ACCOUNT_NAME = "AZURE_STORAGE_ACCOUNT_NAME"
KEY_AZURE_ACCOUNT_KEY = "AZURE_STORAGE_ACCOUNT_KEY"
KEY_AZURE_SAS_TOKEN = "AZURE_STORAGE_SAS_TOKEN"
CREDENTIAL_KEYS = (
    KEY_ACCESS_KEY_ID,
    KEY_SECRET_ACCESS_KEY,
    KEY_SESSION_TOKEN,
    KEY_ENDPOINT,
    KEY_REGION,
    KEY_CA_BUNDLE,
    KEY_GOOGLE_SERVICE_ACCOUNT,
    KEY_AZURE_ACCOUNT_NAME,
    KEY_AZURE_ACCOUNT_KEY,
    KEY_AZURE_SAS_TOKEN,
)

ENV_CREDENTIALS_DIR = "MODELOPS_STORAGE_CREDENTIALS_DIR"
"""A directory holding the Secret's keys as files (one file per key). Unset or empty: the pod's identity."""
ENV_SECRET_NAME_PREFIX = "MODELOPS_STORAGE_SECRET_NAME_"
"""+ the role in upper case (DEFAULT, DESTINATION, RESTORE): the name of the Secret mounted for that role,
so messages can name it (a name, never a value)."""
ENV_CLAIMS_DIR = "MODELOPS_STORAGE_CLAIMS_DIR"
"""Where pvc://<claim>/... URIs are found: `<dir>/<claim>/...` (the builders mount claims there)."""
ENV_CACHE_DIR = "MODELOPS_STORAGE_CACHE_DIR"
"""The pod's scratch directory for downloaded data (a restarted pod re-uses what verifies)."""
CREDENTIALS_MOUNT = "/var/run/modelops/storage-credentials"
CLAIMS_MOUNT = "/var/run/modelops/claims"
CREDENTIALS_FILE_MODE = 0o400

# -- what the worker reports ---------------------------------------------------------------------------

REASON_ACCESS_DENIED = "StorageAccessDenied"  # 401/403, bad or missing credentials, a bucket policy
REASON_BUCKET_NOT_FOUND = "BucketNotFound"  # the bucket (container, claim) does not exist
REASON_OBJECT_NOT_FOUND = "ObjectNotFound"  # the bucket exists, the key does not
REASON_UNREACHABLE = "StorageUnreachable"  # network, DNS, TLS, 5xx after the retries: retryable
REASON_INVALID_CONFIG = "InvalidStorageConfig"  # a malformed URI, endpoint, CA bundle, Secret file
REASON_DIGEST_MISMATCH = "DigestMismatch"  # the bytes are not the ones expected (nothing was kept)

EXIT_STORAGE_UNAVAILABLE = 75  # EX_TEMPFAIL: the store could not be reached; retrying may help.

EXIT_CODES: dict[str, int] = {
    REASON_ACCESS_DENIED: EXIT_BAD_CONFIG,
    REASON_BUCKET_NOT_FOUND: EXIT_BAD_CONFIG,
    REASON_INVALID_CONFIG: EXIT_BAD_CONFIG,
    REASON_OBJECT_NOT_FOUND: EXIT_BAD_DATA,
    REASON_DIGEST_MISMATCH: EXIT_BAD_DATA,
    REASON_UNREACHABLE: EXIT_STORAGE_UNAVAILABLE,
}
"""Permanent reasons exit 64/65 (no retry loop: the condition says what to fix); unreachable exits 75."""

PERMANENT_REASONS = frozenset(r for r, code in EXIT_CODES.items() if code != EXIT_STORAGE_UNAVAILABLE)

WHAT_TO_DO: dict[str, str] = {
    REASON_ACCESS_DENIED: "check the credentials Secret (its AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the "
    "service account's role when no Secret is named) and that the bucket policy allows this access",
    REASON_BUCKET_NOT_FOUND: "check the bucket name in the URI and the endpoint/region in the credentials "
    "Secret (AWS_ENDPOINT_URL, AWS_REGION), or create the bucket",
    REASON_OBJECT_NOT_FOUND: "check the key in the URI (keys are case-sensitive) or upload the object",
    REASON_UNREACHABLE: "the store did not answer after retries with backoff; check AWS_ENDPOINT_URL, the "
    "network path and the CA bundle (ca.crt); the next attempt retries",
    REASON_INVALID_CONFIG: "fix the URI or the credentials Secret's keys as the message says",
    REASON_DIGEST_MISMATCH: "the object is not the one registered: restore it or register the new one",
}
"""What a user should do about each reason, for conditions the controllers write."""
