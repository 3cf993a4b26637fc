"""Benchmark of `modelops-worker verify` on a 100 MB artifact against `sha256sum` (not a test).

    .venv/bin/python bench/verify_bench.py [--runs 5] [--mb 100]

Exports a real TorchScript MLP of about --mb megabytes (the worker's own export, so it carries its
description and loads like a trained model), then times, with the page cache warm (one untimed read
first, as on a node that just wrote or already verified the file):

- `sha256sum FILE` (coreutils), the reference;
- digest: `verify.sha256_file` alone (the streamed digest, 1 MiB chunks);
- verify: `verify.verify` in-process (digest + torch.jit.load + smoke inference), what the issue's
  target compares (≤ 2x sha256sum);
- process: `modelops-worker verify ...` as the verification pod runs it, including the interpreter
  start and `import torch`, which no file size changes.

Medians and ranges over --runs runs are printed as Markdown table rows.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from modelops.api.trainingjob import ModelSpec
from modelops_worker import export, models, verify

FEATURES, CLASSES = 64, 10


def make_artifact(directory: Path, megabytes: int) -> Path:
    """A TorchScript MLP whose weights are about `megabytes` MB (float32)."""
    layers = 3
    # params ~ 64*h + (layers-1)*h*h + 10*h; solve for h.
    target = megabytes * 1_000_000 / 4
    hidden = int((target / (layers - 1)) ** 0.5)
    spec = ModelSpec.model_validate({"architecture": "mlp", "hiddenSize": hidden, "layers": layers})
    torch.manual_seed(0)
    model = models.build(spec, FEATURES, CLASSES, torch.zeros(FEATURES), torch.ones(FEATURES), None)
    description = {"spec": spec.to_wire(), "numFeatures": FEATURES, "numClasses": CLASSES}
    export.export(model, "torchscript", description, {"name": "bench"}, directory)
    return directory / export.ARTIFACT


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def row(name: str, times: list[float], reference: float | None) -> str:
    med = statistics.median(times)
    ratio = f"{med / reference:.2f}x" if reference else "1.00x"
    return (
        f"| {name} | {med * 1000:.0f} ms | {min(times) * 1000:.0f} to {max(times) * 1000:.0f} ms | {ratio} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sha256sum = shutil.which("sha256sum")
    if sha256sum is None:
        print("sha256sum not found", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as tmp:
        path = make_artifact(Path(tmp), args.mb)
        size = path.stat().st_size
        digest = hashlib.sha256(path.read_bytes()).hexdigest()  # also warms the page cache
        env = {**os.environ, "MODELOPS_TERMINATION_LOG": str(Path(tmp) / "tl"), "OMP_NUM_THREADS": "1"}
        worker = str(Path(sys.executable).with_name("modelops-worker"))

        def run_sha256sum() -> None:
            subprocess.run([sha256sum, str(path)], check=True, capture_output=True)

        def run_process() -> None:
            cmd = [worker, "verify", "--artifact", str(path), "--sha256", digest, "--format", "torchscript"]
            subprocess.run(cmd, check=True, capture_output=True, env=env)

        verify.verify(path, digest, "torchscript")  # warm torch's lazy initialisation once
        ref = timed(run_sha256sum, args.runs)
        digest_only = timed(lambda: verify.sha256_file(path), args.runs)
        full = timed(lambda: verify.verify(path, digest, "torchscript"), args.runs)
        process = timed(run_process, args.runs)
        reference = statistics.median(ref)
        print(
            f"artifact: {size / 1e6:.1f} MB TorchScript MLP, {args.runs} runs, page cache warm, torch {torch.__version__}"
        )
        print("| measure | median | range | vs sha256sum |")
        print("|---|---|---|---|")
        print(row("`sha256sum FILE`", ref, None))
        print(row("digest (`verify.sha256_file`, streamed)", digest_only, reference))
        print(row("verify in-process (digest + load + smoke inference)", full, reference))
        print(
            row("`modelops-worker verify` process (with Python start and `import torch`)", process, reference)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
