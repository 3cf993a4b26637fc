"""The `modelops` command as a newcomer first meets it."""

from __future__ import annotations

import subprocess
import sys

import yaml

from modelops.api import KINDS


def modelops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelops", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_help_lists_every_command() -> None:
    done = modelops("--help")
    assert done.returncode == 0
    for command in ("operator", "local", "demo", "crds"):
        assert command in done.stdout


def test_operator_help_documents_how_to_reach_the_cluster() -> None:
    done = modelops("operator", "--help")
    assert done.returncode == 0, done.stderr
    for flag in ("--kubeconfig", "--namespace", "--health-port", "--metrics-port"):
        assert flag in done.stdout


def test_local_help_names_up_down_status() -> None:
    done = modelops("local", "--help")
    assert done.returncode == 0, done.stderr
    for action in ("up", "down", "status"):
        assert action in done.stdout


def test_crds_prints_applicable_definitions() -> None:
    done = modelops("crds")
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert sorted(d["spec"]["names"]["kind"] for d in docs) == sorted(i.kind for i in KINDS)


def test_unknown_command_fails_with_usage() -> None:
    done = modelops("frobnicate")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr
