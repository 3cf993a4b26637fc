"""`modelops operator` as a command: help, and mistakes that must end it at once with a clear message."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from modelops.cli import main

MODELOPS = str(Path(sys.executable).parent / "modelops")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MODELOPS, "operator", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["operator", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--kubeconfig",
        "--namespace",
        "--health-port",
        "--metrics-port",
        "--bind-address",
        "--log-format",
        "--verbose",
    ):
        assert option in out


def test_missing_kubeconfig_ends_with_exit_2_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["operator", "--kubeconfig", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "--kubeconfig" in err and "no such file" in err


def test_port_in_use_ends_with_exit_1_and_the_flag_to_change(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run("--kubeconfig", str(kubeconfig), "--bind-address", "127.0.0.1", "--health-port", port)
    assert result.returncode == 1
    assert "--health-port" in result.stderr and port in result.stderr
