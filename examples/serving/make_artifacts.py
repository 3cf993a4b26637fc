"""Produce the artifacts the manifests in examples/serving/ serve: models that are not our classifiers.

    python examples/serving/make_artifacts.py DIR

writes into DIR (copy it onto the claim the ModelVersions name, e.g. `models`):

- `two-inputs.pt`: TorchScript, inputs `features` FP32 [n, 4] and `mask` BOOL [n, 4], outputs
  `score` FP32 [n, 1] and `kept` INT64 [n] (a model returning a tuple: named outputs);
- `regression.pt`: TorchScript regression, input `x` FP32 [n, 8], output `y` FP32 [n, 1];
- `cnn.pt`: TorchScript image-shaped CNN, input `image` FP32 [n, 3, 32, 32], output `logits` [n, 10];
- `two-inputs.onnx`: the two-input model exported with `torch.onnx.export` (inputs and outputs read
  from the graph at verification; dynamic batch dimension).

Seeded: the same command writes the same weights, so the tests can compute expected answers in-process.
Prints the sha256 of each file (a ModelVersion's optional `spec.sha256`). The test suite
(tests/e2e/test_runtimes_e2e.py) runs this very script.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch


class TwoInputs(torch.nn.Module):
    """A score from masked features, and how many features the mask kept."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept = features * mask.to(features.dtype)
        return self.linear(kept), mask.to(torch.int64).sum(dim=1)


class Regression(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(4)
        self.head = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv(image)))
        return self.head(x.flatten(1))  # type: ignore[no-any-return]


def build() -> dict[str, torch.nn.Module]:
    torch.manual_seed(13)
    return {"two-inputs": TwoInputs().eval(), "regression": Regression().eval(), "cnn": SmallCNN().eval()}


def write(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    models = build()
    out: dict[str, Path] = {}
    for name, module in models.items():
        path = directory / f"{name}.pt"
        torch.jit.save(torch.jit.script(module), str(path))
        out[name] = path
    onnx_path = directory / "two-inputs.onnx"
    example = (torch.zeros(2, 4), torch.ones(2, 4, dtype=torch.bool))
    torch.onnx.export(
        models["two-inputs"],
        example,
        str(onnx_path),
        input_names=["features", "mask"],
        output_names=["score", "kept"],
        dynamic_axes={"features": {0: "n"}, "mask": {0: "n"}, "score": {0: "n"}, "kept": {0: "n"}},
        dynamo=False,  # the TorchScript-based exporter: needs only the `onnx` package
    )
    out["two-inputs-onnx"] = onnx_path
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 64
    for name, path in write(Path(argv[0])).items():
        print(f"{name}\t{path}\t{hashlib.sha256(path.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
