"""Where the operator gets its credentials: --kubeconfig wins, then KUBECONFIG (the same entrypoint in and out of a cluster)."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest
import yaml

from modelops.controllers.login import connection_info


def write_kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_explicit_kubeconfig_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = write_kubeconfig(tmp_path / "env", "http://127.0.0.1:1111", "env-token")
    explicit = write_kubeconfig(tmp_path / "explicit", "http://127.0.0.1:2222", "explicit-token")
    monkeypatch.setenv("KUBECONFIG", str(env))
    info = connection_info(str(explicit))
    assert info.server == "http://127.0.0.1:2222"
    assert (info.scheme, info.token) == ("Bearer", "explicit-token")


def test_kubeconfig_from_the_environment_without_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "env", "http://127.0.0.1:1111", "t")))
    assert connection_info(None).server == "http://127.0.0.1:1111"


def test_missing_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(kopf.LoginError, match=r"--kubeconfig .*no such file"):
        connection_info(str(tmp_path / "nope"))


def test_unusable_kubeconfig_says_what_to_do(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n")
    with pytest.raises(kopf.LoginError, match="pass --kubeconfig PATH, set KUBECONFIG"):
        connection_info(str(broken))


def test_in_a_pod_the_service_account_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What the kubelet gives every pod: the API server's address in env, token and CA in a mounted dir.
    (tmp_path / "token").write_text("pod-token")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr("modelops.controllers.login.SERVICE_ACCOUNT_DIR", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    info = connection_info(None)
    assert info.server == "https://10.96.0.1:443"
    assert info.token == "pod-token" and (info.scheme or "").lower() == "bearer"
    assert info.ca_path == str(tmp_path / "ca.crt")
    assert not info.insecure
