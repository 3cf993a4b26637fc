"""How the operator finds its cluster: --kubeconfig, else KUBECONFIG, else in-cluster, else ~/.kube/config.

kopf's own login (through the kubernetes client) tries the in-cluster service account first, so an
explicit --kubeconfig inside a pod would be ignored; this order makes the explicit choice win. The
kubernetes client does the parsing, so exec plugins, client certificates and token files work as they
do for kubectl.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import kopf
import kubernetes

# The kubernetes client is untyped; these are the two loaders we call, with the signatures we use.
_load_kube_config: Callable[..., None] = kubernetes.config.load_kube_config
_InClusterConfigLoader: Callable[..., Any] = kubernetes.config.incluster_config.InClusterConfigLoader

# Where the kubelet mounts the pod's service account (token, ca.crt), as the kubernetes client expects.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def connection_info(kubeconfig: str | None, *, trust_env: bool = False) -> kopf.ConnectionInfo:
    config = kubernetes.client.Configuration()
    # The local plane makes this path work for Python processes too (its sitecustomize maps mount
    # paths), so the operator never needs to know where it runs.
    service_account = SERVICE_ACCOUNT_DIR
    try:
        if kubeconfig:
            if not os.path.exists(kubeconfig):
                raise kopf.LoginError(
                    f"--kubeconfig {kubeconfig}: no such file; pass the path of an existing kubeconfig"
                )
            _load_kube_config(config_file=kubeconfig, client_configuration=config)
        elif os.environ.get("KUBECONFIG"):
            # Passed explicitly: the client reads the variable once at import. A list of paths
            # (separated by ':') is merged as kubectl does.
            _load_kube_config(config_file=os.environ["KUBECONFIG"], client_configuration=config)
        elif os.path.exists(os.path.join(service_account, "token")):
            # Re-read at every login: kopf logs in again on a 401, which is how a rotated
            # (bound, expiring) service account token is picked up.
            _InClusterConfigLoader(
                token_filename=os.path.join(service_account, "token"),
                cert_filename=os.path.join(service_account, "ca.crt"),
                try_refresh_token=False,
            ).load_and_set(config)
        else:
            _load_kube_config(client_configuration=config)
    except kubernetes.config.ConfigException as error:
        raise kopf.LoginError(
            f"cannot load cluster credentials ({error}); pass --kubeconfig PATH, set KUBECONFIG, "
            "or run in a pod with a service account"
        ) from error

    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
        trust_env=trust_env,
    )
