"""The CUDA worker's `deps` stage, the part of images/worker/Dockerfile.cuda CI builds: everything the
worker needs but PyPI's CUDA torch (whose wheels weigh several GB and need a GPU to be of use).

What it must hold for the full image to work on a GPU node: the GPU build of onnxruntime (with its CUDA
execution provider, which `modelops-worker serve` picks for format onnx on a GPU) and not the CPU one
beside it (both install the module `onnxruntime`), the worker's other dependencies importable on the
image's Python, and no torch yet (the next stage installs PyPI's CUDA build).
"""

from __future__ import annotations

import json

from imagetools import BuiltImage, podman

PROBE = """
import importlib.metadata as m, json, onnxruntime, numpy, sklearn, pyarrow, grpc, onnx, kopf, pydantic
names = {d.metadata["Name"].lower() for d in m.distributions()}
print(json.dumps({
    "providers": onnxruntime.get_available_providers(),
    "onnxruntime": "onnxruntime" in names,
    "onnxruntime_gpu": "onnxruntime-gpu" in names,
    "torch": "torch" in names,
}))
"""


def test_the_cuda_deps_stage_has_the_gpu_onnxruntime_and_no_torch(images: dict[str, BuiltImage]) -> None:
    reference = images["worker-cuda-deps"].reference
    out = podman("run", "--rm", "--network", "none", reference, "/opt/modelops/bin/python", "-c", PROBE)
    found = json.loads(out.stdout)
    assert found["onnxruntime_gpu"] and not found["onnxruntime"], found
    assert "CUDAExecutionProvider" in found["providers"], found
    assert not found["torch"], found
