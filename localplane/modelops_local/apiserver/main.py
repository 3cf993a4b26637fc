"""Process entry: token, listening socket, and the kubeconfig written once the server is ready."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import logging
import os
import secrets
import signal
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import yaml
from aiohttp import web

from .server import Server

log = logging.getLogger("modelops_local.apiserver")
# Pods reach the server through the `default/kubernetes` Service (127.96.0.1:443, proxied unchanged),
# so the certificate names that address and the Service's DNS names too, like kube-apiserver's own.
SANS = (
    "IP:127.0.0.1,DNS:localhost,IP:127.96.0.1,DNS:kubernetes,DNS:kubernetes.default,"
    "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
)


def _token(data_dir: Path) -> str:
    """The bearer token, created once (0600) and kept across restarts so kubeconfigs stay valid."""
    path = data_dir / "token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token


def _tls(data_dir: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1, made once with the openssl CLI.

    TLS is not optional in practice: client-go (kubectl, helm) does not send a bearer token over plain
    HTTP, so the kubeconfig carries the CA as `certificate-authority-data`.
    """
    ca, cert, key = data_dir / "ca.crt", data_dir / "apiserver.crt", data_dir / "apiserver.key"
    marker = data_dir / "apiserver.san"
    if ca.exists() and cert.exists() and key.exists() and marker.exists() and marker.read_text() == SANS:
        return ca, cert, key
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        t = Path(tmp)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = [
            "openssl",
            "req",
            "-x509",
            *ec,
            "-keyout",
            str(t / "ca.key"),
            "-out",
            str(t / "ca.crt"),
            "-days",
            "3650",
            "-subj",
            "/CN=modelops-local-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]
        subprocess.run(run, check=True, capture_output=True)
        subprocess.run(
            [
                "openssl",
                "req",
                *ec,
                "-keyout",
                str(t / "s.key"),
                "-out",
                str(t / "s.csr"),
                "-subj",
                "/CN=modelops-local-apiserver",
            ],
            check=True,
            capture_output=True,
        )
        (t / "ext").write_text(
            f"subjectAltName={SANS}\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
        subprocess.run(["openssl", "x509", "-req", "-in", str(t / "s.csr"), "-CA", str(t / "ca.crt"),
                        "-CAkey", str(t / "ca.key"), "-CAcreateserial", "-out", str(t / "s.crt"), "-days", "3650",
                        "-extfile", str(t / "ext")], check=True, capture_output=True)  # fmt: skip
        os.chmod(t / "s.key", 0o600)
        os.replace(t / "s.key", key)
        os.replace(t / "s.crt", cert)
        os.replace(t / "ca.crt", ca)
        marker.write_text(SANS)
    return ca, cert, key


def write_kubeconfig(data_dir: Path, url: str, token: str, ca: Path | None = None) -> Path:
    cluster: dict[str, str] = {"server": url}
    if ca is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "modelops-local", "cluster": cluster}],
        "users": [{"name": "modelops-local", "user": {"token": token}}],
        "contexts": [
            {"name": "modelops-local", "context": {"cluster": "modelops-local", "user": "modelops-local",
                                                   "namespace": "default"}}
        ],
        "current-context": "modelops-local",
        "preferences": {},
    }  # fmt: skip
    path = data_dir / "kubeconfig"
    tmp = data_dir / f".kubeconfig.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    os.replace(tmp, path)
    return path


def _listen(data_dir: Path, port: int) -> socket.socket:
    """Bind 127.0.0.1:port; with port 0, first try the port of the previous run, so that components
    still holding the old kubeconfig reconnect to a restarted server."""
    remembered = data_dir / "apiserver.port"
    candidates = [port]
    if port == 0 and remembered.exists():
        with contextlib.suppress(ValueError):
            candidates.insert(0, int(remembered.read_text().strip()))
    for candidate in candidates:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            sock.close()
            if candidate == candidates[-1]:
                raise
            continue
        remembered.write_text(str(sock.getsockname()[1]))
        return sock
    raise OSError("no port to listen on")  # pragma: no cover - the loop returns or raises


async def serve(data_dir: Path, port: int, history: int, plain_http: bool = False) -> None:
    from modelops_local import statedir

    # state.db and its WAL/SHM hold every Secret: 0600 in a 0700 directory, also an older plane's.
    statedir.secure(data_dir)
    token = _token(data_dir)
    server = Server(data_dir, token, history=history)
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    sock = _listen(data_dir, port)
    ca: Path | None = None
    context: ssl.SSLContext | None = None
    if plain_http:
        log.warning("serving plain HTTP: kubectl and helm will not send the bearer token")
    else:
        try:
            ca, cert, key = _tls(data_dir)
        except FileNotFoundError as exc:
            raise SystemExit(
                "the openssl command is needed to make the API server's TLS certificate: install it "
                "(apt-get install openssl), or run with --plain-http (kubectl and helm then send no token)"
            ) from exc
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"openssl failed to make the TLS certificate: {exc.stderr!r}") from exc
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    # Every stored object is a tree of dicts that lives as long as the process: keep it out of the
    # cyclic garbage collector's full passes, which otherwise grow with the number of objects.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    site = web.SockSite(runner, sock, ssl_context=context)
    await site.start()
    actual = sock.getsockname()[1]
    url = f"{'http' if plain_http else 'https'}://127.0.0.1:{actual}"
    server.publish("127.0.0.1", actual, ca.read_text() if ca is not None else None)
    write_kubeconfig(data_dir, url, token, ca)
    log.info("serving on %s; kubeconfig %s", url, data_dir / "kubeconfig")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelops_local.apiserver", description=__doc__)
    parser.add_argument(
        "--dir", required=True, type=Path, help="state directory (state.db, kubeconfig, logs)"
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--watch-history", type=int, default=10000,
                        help="watch events kept for resuming; older resourceVersions get 410 Expired")  # fmt: skip
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="no TLS (only clients that send tokens over HTTP, e.g. the Python client, work)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.dir.resolve(), args.port, args.watch_history, args.plain_http))


if __name__ == "__main__":
    main()
