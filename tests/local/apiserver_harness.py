"""Starting and driving a real local API server process from tests (kubectl, raw HTTPS).

Test modules import from here (`from apiserver_harness import ...`), never from `conftest`: with
several conftest.py files in one pytest run, `import conftest` finds whichever was imported first.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KUBECTL = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "kubectl"


@dataclass
class ApiServer:
    dir: Path
    kubeconfig: Path
    url: str
    token: str
    ca: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def request(
        self,
        path: str,
        token: str | None = "",
        method: str = "GET",
        body: bytes | str | object | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        """A raw HTTP request; `token=""` means the server's own token, None means no token.

        A body that is not bytes/str is sent as JSON.
        """
        data = None
        if body is not None:
            data = (
                body
                if isinstance(body, bytes)
                else (body if isinstance(body, str) else json.dumps(body)).encode()
            )
        req = urllib.request.Request(self.url + path, method=method, data=data)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token or self.token}")
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_apiserver(directory: Path, *extra: str) -> ApiServer:
    """Start an API server in `directory` and wait until it answers /readyz."""
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = directory / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    log = (directory / "apiserver.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelops_local.apiserver", "--dir", str(directory), "--port", "0", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"API server did not start; see {directory / 'apiserver.log'}")
        time.sleep(0.05)
    config = yaml.safe_load(kubeconfig.read_text())
    server = ApiServer(
        dir=directory,
        kubeconfig=kubeconfig,
        url=config["clusters"][0]["cluster"]["server"],
        token=config["users"][0]["user"]["token"],
        ca=directory / "ca.crt",
        process=proc,
    )
    while server.request("/readyz", token=None)[0] != 200:
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError("API server never became ready")
        time.sleep(0.05)
    return server


def run_kubectl(
    server: ApiServer, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl against `server`."""
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), HOME=str(server.dir))
    result = subprocess.run(
        [str(KUBECTL), *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


Kubectl = Callable[..., subprocess.CompletedProcess[str]]
