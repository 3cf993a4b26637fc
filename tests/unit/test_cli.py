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


def test_local_and_demo_say_which_extra_to_install_where_the_plane_is_absent() -> None:
    """As in the operator image: `modelops_local` is registered as an entry point but not installed."""
    for command in ("local", "demo"):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.modules['modelops_local'] = None\n"
                "from modelops.cli import main; sys.exit(main(sys.argv[1:]))",
                command,
                "--help",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stdout
        assert f"modelops {command}: the local plane is not installed" in done.stderr
        assert 'pip install "modelops[local]"' in done.stderr


def test_the_plane_has_its_own_command_too() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelops_local.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for action in ("up", "down", "status", "demo"):
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
