"""Generate the Python modules of the OIP v2 gRPC protocol from its .proto (grpcio-tools).

    .venv/bin/python scripts/gen_grpc_stubs.py          # rewrite the committed modules
    .venv/bin/python scripts/gen_grpc_stubs.py --check  # exit 1 when they drift from the .proto

The .proto lives beside its generated modules in `modelops_worker/serve/grpc_gen/` and is compiled with
`images/worker` as the include root, so the generated service module imports its messages by their
package path (`from modelops_worker.serve.grpc_gen import grpc_predict_v2_pb2`), not as a top-level
module. The output depends on the grpcio-tools version, which is pinned in pyproject's dev extra.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "images" / "worker"
PACKAGE = Path("modelops_worker") / "serve" / "grpc_gen"
PROTO = PACKAGE / "grpc_predict_v2.proto"
OUTPUTS = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Compile the .proto into `out_root/<package>/`; returns the generated files."""
    from grpc_tools import protoc  # dev extra: grpcio-tools

    (out_root / PACKAGE).mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(ROOT / PROTO),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {ROOT / PROTO}")
    return [out_root / PACKAGE / name for name in OUTPUTS]


def drift() -> list[str]:
    """The committed generated modules that differ from a fresh compilation of the .proto."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        return [
            str(PACKAGE / f.name)
            for f in fresh
            if not (ROOT / PACKAGE / f.name).exists() or not filecmp.cmp(f, ROOT / PACKAGE / f.name, False)
        ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only report drift (exit 1), write nothing")
    args = ap.parse_args()
    if args.check:
        stale = drift()
        for name in stale:
            print(f"{name} is stale: run `make grpc-stubs`", file=sys.stderr)
        return 1 if stale else 0
    with tempfile.TemporaryDirectory() as tmp:
        for f in generate(Path(tmp)):
            shutil.copyfile(f, ROOT / PACKAGE / f.name)
            print(f"wrote {PACKAGE / f.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
