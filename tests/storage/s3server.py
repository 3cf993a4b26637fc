"""A real S3-compatible server on loopback for the tests: moto's standalone server, IAM auth enforced.

moto pins botocore, which clashes with the kubernetes client, so it lives in its own virtual
environment (`.cache/moto-venv-<hash>/`, git-ignored, keyed by the package list so a change rebuilds
it), built by the first test that needs it and reused after that. Building needs PyPI; when it cannot
be built the test fails with pip's output, it never skips.

`S3Server.start()` runs `moto_server` on 127.0.0.1 (a free port), sets up, before auth is switched on:

- the IAM user `modelops` with an access key and a policy allowing s3:* on `modelops-*` buckets only,
- the IAM user `reader`: s3:GetObject and s3:ListBucket on those buckets, nothing else,
- the bucket `modelops-test` (and any given) with a bucket policy naming the two users,

then switches IAM auth on (`/moto-api/reset-auth` 0, what `INITIAL_NO_AUTH_ACTION_COUNT` does at
start): every later request must be SigV4-signed by a known key and allowed by the user's policies, so
wrong credentials are refused for real (InvalidAccessKeyId / SignatureDoesNotMatch, 403) and the
reader cannot write (AccessDenied). moto stores the bucket policy but evaluates identity policies only.

API (reused by tests/storage, tests/e2e and the model store's tests):

    server = S3Server.start()                     # or the `s3` session fixture in conftest.py
    server.endpoint                               # "http://127.0.0.1:<port>"
    server.bucket                                 # "modelops-test"
    server.admin / server.reader                  # Credentials(access_key_id, secret_access_key)
    server.secret_data(server.admin)              # {AWS_ACCESS_KEY_ID: ..., AWS_ENDPOINT_URL: ...}
    server.write_secret_dir(path, server.admin)   # the Secret as a mounted directory of files
    server.put(key, data) / server.get(key) / server.delete(key) / server.keys(prefix)
    server.create_bucket(name)                    # another bucket (name must start with modelops-)
    server.stop()
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("moto[server]==5.2.6",)
_KEY = hashlib.sha256("\n".join(PACKAGES).encode()).hexdigest()[:12]
VENV = REPO / ".cache" / f"moto-venv-{_KEY}"
DEFAULT_BUCKET = "modelops-test"
REGION = "us-east-1"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


def moto_python() -> Path:
    """The side venv's python with moto[server]; built on first use under a file lock (pytest.fail
    with pip's output when it cannot be built)."""
    py = VENV / "bin" / "python"
    stamp = VENV / ".modelops-stamp"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    lock_path = VENV.parent / f"moto-venv-{_KEY}.lock"
    lock_path.touch()
    with open(lock_path) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if py.exists() and stamp.exists():
            return py
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        for cmd in (
            [sys.executable, "-m", "venv", "--clear", str(VENV)],
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PACKAGES],
        ):
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if out.returncode != 0:
                pytest.fail(
                    f"cannot build the moto side venv {VENV} ({' '.join(cmd[:4])} ... exited "
                    f"{out.returncode}); it needs PyPI:\n{(out.stdout + out.stderr)[-4000:]}"
                )
        stamp.write_text("\n".join(PACKAGES))
        return py


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Runs inside the moto venv (boto3 comes with moto[server]): users, keys, policies, buckets.
_SETUP = r"""
import json, sys
import boto3
endpoint, buckets = sys.argv[1], sys.argv[2:]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
s3 = boto3.client("s3", **kw)
out = {}
full = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",
        "Resource": ["arn:aws:s3:::modelops-*", "arn:aws:s3:::modelops-*/*"]}]}
read = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": ["arn:aws:s3:::modelops-*", "arn:aws:s3:::modelops-*/*"]}]}
for user, policy in (("modelops", full), ("reader", read)):
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName=user, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    out[user] = [key["AccessKeyId"], key["SecretAccessKey"]]
for bucket in buckets:
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "ModelopsReadWrite", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::123456789012:user/modelops"},
         "Action": "s3:*", "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]},
        {"Sid": "ReaderReadOnly", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::123456789012:user/reader"},
         "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]},
    ]}))
print(json.dumps(out))
"""


class S3Server:
    """A running moto server; see the module docstring for the API."""

    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, admin: Credentials, reader: Credentials, log: Path
    ) -> None:
        self.proc = proc
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.bucket = DEFAULT_BUCKET
        self.admin = admin
        self.reader = reader
        self.log = log
        self._stores: dict[str, Any] = {}

    @classmethod
    def start(cls, buckets: tuple[str, ...] = (DEFAULT_BUCKET,), log_dir: Path | None = None) -> S3Server:
        py = moto_python()
        port = _free_port()
        log = (log_dir or REPO / ".cache") / f"moto-{port}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        # Unlimited unauthenticated requests for the setup; reset-auth switches enforcement on.
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "inf"
        env["MOTO_ALLOW_NONEXISTENT_REGION"] = "true"
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [str(py.parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"moto_server did not start on port {port}:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        out = subprocess.run(
            [str(py), "-c", _SETUP, f"http://127.0.0.1:{port}", *buckets],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        if out.returncode != 0:
            proc.kill()
            pytest.fail(f"moto setup failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
        keys = json.loads(out.stdout.strip().splitlines()[-1])
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form body would reach moto empty
        )
        urllib.request.urlopen(req, timeout=10).read()
        return cls(proc, port, Credentials(*keys["modelops"]), Credentials(*keys["reader"]), log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    # -- credentials as the operator hands them to pods

    def secret_data(self, creds: Credentials | None = None, **extra: str) -> dict[str, str]:
        """The keys of a credentials Secret for this server (docs/storage.md)."""
        creds = creds or self.admin
        return {
            "AWS_ACCESS_KEY_ID": creds.access_key_id,
            "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            **extra,
        }

    def write_secret_dir(self, path: Path, creds: Credentials | None = None, **extra: str) -> Path:
        """The Secret as the kubelet mounts it: one 0400 file per key."""
        path.mkdir(parents=True, exist_ok=True)
        for key, value in self.secret_data(creds, **extra).items():
            f = path / key
            f.write_text(value)
            f.chmod(0o400)
        return path

    # -- data, through the admin user (obstore, the library under test's own client, for set-up)

    def _store(self, bucket: str) -> Any:
        if bucket not in self._stores:
            from obstore.store import S3Store

            self._stores[bucket] = S3Store(
                bucket,
                config={
                    "access_key_id": self.admin.access_key_id,
                    "secret_access_key": self.admin.secret_access_key,
                    "endpoint": self.endpoint,
                    "region": REGION,
                    "virtual_hosted_style_request": False,
                },
                client_options={"allow_http": True},
            )
        return self._stores[bucket]

    def put(self, key: str, data: bytes, bucket: str | None = None) -> None:
        import obstore

        obstore.put(self._store(bucket or self.bucket), key, data)

    def get(self, key: str, bucket: str | None = None) -> bytes:
        import obstore

        return bytes(obstore.get(self._store(bucket or self.bucket), key).bytes())

    def delete(self, key: str, bucket: str | None = None) -> None:
        import obstore

        obstore.delete(self._store(bucket or self.bucket), key)

    def keys(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        import obstore

        out: list[str] = []
        for batch in obstore.list(self._store(bucket or self.bucket), prefix or None):
            out += [str(m["path"]) for m in batch]
        return sorted(out)

    def create_bucket(self, name: str) -> None:
        """Another bucket, created by the admin user (signed; IAM allows modelops-* buckets)."""
        py = moto_python()
        code = (
            "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', "
            "aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3]).create_bucket(Bucket=sys.argv[4])"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        out = subprocess.run(
            [
                str(py),
                "-c",
                code,
                self.endpoint,
                self.admin.access_key_id,
                self.admin.secret_access_key,
                name,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if out.returncode != 0:
            pytest.fail(f"cannot create bucket {name}: {out.stderr[-2000:]}")
