"""The console's informers against a real API server (the local plane's), driven with the real kubectl.

A page reads the modelops kinds from informers (list once, then watch): what kubectl creates,
changes and deletes must show there within a moment, without another list.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops.console.reader import Reader

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".tools" / "bin" / "kubectl"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("reader")
    log = (directory / "apiserver.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "modelops_local.apiserver", "--dir", str(directory)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        config = directory / "kubeconfig"
        deadline = time.monotonic() + 60
        while not config.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert config.exists(), (directory / "apiserver.log").read_text()[-3000:]
        kubectl(config, "apply", "-f", str(REPO / "crds"))
        yield config
    finally:
        process.terminate()
        process.wait(timeout=15)


def kubectl(config: Path, *args: str, input: str | None = None) -> str:
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(config), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def job(name: str, label: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "labels": {"seen": label}},
        "spec": {"model": {"architecture": "mlp"}, "dataset": {"builtin": "digits"}},
    }


def test_the_informer_follows_creates_changes_and_deletes(kubeconfig: Path) -> None:
    async def until(reader: Reader, check: Any) -> Any:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            value = check(await reader.modelops("trainingjobs", "default"))
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError("the informer did not catch up within 30 s")

    async def go() -> None:
        reader = Reader(str(kubeconfig))
        assert await reader.modelops("trainingjobs") == []
        assert await reader.modelops("tuningjobs") == []  # not served here: no section, no error
        kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(job("watched", "one")))
        await until(reader, lambda items: [o for o in items if o["metadata"]["name"] == "watched"])
        kubectl(kubeconfig, "label", "trainingjob", "watched", "seen=two", "--overwrite")
        await until(
            reader,
            lambda items: [o for o in items if (o["metadata"].get("labels") or {}).get("seen") == "two"],
        )
        found = await reader.modelops_object("trainingjobs", "default", "watched")
        assert found is not None and found["metadata"]["labels"]["seen"] == "two"
        kubectl(kubeconfig, "delete", "trainingjob", "watched")
        await until(reader, lambda items: not items)
        assert await reader.modelops_object("trainingjobs", "default", "watched") is None
        assert reader.stale() is None
        reader.close()

    asyncio.run(go())
